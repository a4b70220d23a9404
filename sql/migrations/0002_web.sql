-- The web pages: login throttling, the Copernica webhooks the config page registered, and the
-- emailings sent from the Salesforce tab (ids and counts only, no customer data).

CREATE TABLE login_failures (
    id              bigserial PRIMARY KEY,
    email           text NOT NULL,                 -- lower-cased address typed at the login form
    client          text NOT NULL,                 -- the client's IP address
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email ON login_failures (email, at);
CREATE INDEX login_failures_pair ON login_failures (email, client, at);

-- trigger -> webhook id, plus the database they watch: {"database": "12", "create": 3, ...}
ALTER TABLE tenants ADD COLUMN copernica_webhooks jsonb NOT NULL DEFAULT '{}';

CREATE TABLE emailing_sends (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    product         text NOT NULL CHECK (product IN ('ms', 'publisher')),
    emailing_id     bigint NOT NULL,               -- Copernica's emailing id
    content_id      bigint NOT NULL,               -- template (ms) or document (publisher)
    content_name    text NOT NULL,
    target_type     text NOT NULL CHECK (target_type IN ('database', 'view')),
    target_id       bigint NOT NULL,
    target_name     text NOT NULL,
    sent_by         text,
    sent_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX emailing_sends_tenant ON emailing_sends (tenant_id, sent_at DESC);
