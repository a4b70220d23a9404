-- name: claim_webhook_delivery
-- Remember delivery $2 of tenant $1 for $3 seconds and, with a key $5, store its job (kind $4,
-- payload $6, $7 attempts, batching window $8 seconds); false: a replay, nothing stored. The
-- function of migration 0011.
SELECT store_webhook_delivery($1, $2, $3, $4, $5, $6, $7, $8);

-- name: forget_expired_webhook_deliveries
DELETE FROM webhook_deliveries WHERE expires_at < now();

-- name: set_copernica_account
UPDATE tenants SET copernica_account = $2 WHERE id = $1;
