-- name: claim_webhook_delivery
-- Remember delivery $2 of tenant $1 until $3 seconds from now and, with a key $5, store its job in
-- the same statement (kind $4, payload $6, $7 attempts, due when the batching window of $8
-- seconds closes: enqueue_job). False, and nothing stored: the same delivery was accepted before
-- and its time is not up yet (a replay).
WITH fresh AS (
    INSERT INTO webhook_deliveries (tenant_id, delivery, expires_at)
    VALUES ($1, $2, now() + make_interval(secs => $3))
    ON CONFLICT (tenant_id, delivery) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE webhook_deliveries.expires_at < now()
    RETURNING 1
)
SELECT count(*) > 0 AS fresh FROM fresh
LEFT JOIN LATERAL (SELECT * FROM enqueue_job($1, $4, $5, $6, $7, 0, 0, $8)
                   WHERE $5::text IS NOT NULL) AS job ON true;

-- name: forget_expired_webhook_deliveries
DELETE FROM webhook_deliveries WHERE expires_at < now();

-- name: set_copernica_account
UPDATE tenants SET copernica_account = $2 WHERE id = $1;
