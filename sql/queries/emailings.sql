-- name: claim_emailing_send
-- Record a send before it goes out; no row back: this send key was used before (a retry).
INSERT INTO emailing_sends (tenant_id, product, content_id, content_name, target_type, target_id,
                            target_name, sent_by, send_key, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'sending')
ON CONFLICT (tenant_id, send_key) DO NOTHING
RETURNING id;

-- name: emailing_send_by_key
SELECT * FROM emailing_sends WHERE tenant_id = $1 AND send_key = $2;

-- name: emailing_sent
-- Copernica accepted the send; $3 is its emailing id, NULL when its reply did not say it.
UPDATE emailing_sends SET state = 'sent', emailing_id = $3, sent_at = now()
WHERE id = $1 AND tenant_id = $2;

-- name: emailing_send_unknown
-- The send may or may not have gone out (no answer): kept, so that no retry sends it again.
UPDATE emailing_sends SET state = 'unknown' WHERE id = $1 AND tenant_id = $2;

-- name: drop_emailing_send
-- Copernica refused the send: nothing went out, the form may be sent again.
DELETE FROM emailing_sends WHERE id = $1 AND tenant_id = $2 AND state = 'sending';
