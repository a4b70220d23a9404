-- Working against the real Salesforce and Copernica: the Copernica account whose webhooks a
-- tenant accepts, the deliveries seen (to refuse replays), and emailing sends recorded before
-- their outcome is known, so that no retry can send one twice.

-- the account id of ``GET identity``, learned when Copernica access is saved; webhooks must carry it
-- in X-Copernica-ID
ALTER TABLE tenants ADD COLUMN copernica_account text;

-- one row per webhook delivery accepted (a hash of its Digest, Date and Signature), kept while
-- its Date is still acceptable: the same delivery sent again in that window is a replay
CREATE TABLE webhook_deliveries (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    delivery        bytea NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, delivery)
);
CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries (expires_at);

-- A send is recorded (state 'sending', keyed by the form's one-time send key) before the POST,
-- and marked 'sent' right after it, with Copernica's emailing id when its reply named one.
ALTER TABLE emailing_sends ALTER COLUMN emailing_id DROP NOT NULL;
ALTER TABLE emailing_sends ADD COLUMN send_key text;
ALTER TABLE emailing_sends ADD COLUMN state text NOT NULL DEFAULT 'sent'
    CHECK (state IN ('sending', 'sent', 'unknown'));
CREATE UNIQUE INDEX emailing_sends_key ON emailing_sends (tenant_id, send_key);
