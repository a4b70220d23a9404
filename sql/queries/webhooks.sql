-- name: claim_webhook_delivery
-- Remember a delivery until $3 seconds from now; no row back: the same delivery was accepted
-- before and its time is not up yet (a replay).
INSERT INTO webhook_deliveries (tenant_id, delivery, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (tenant_id, delivery) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE webhook_deliveries.expires_at < now()
RETURNING 1;

-- name: forget_expired_webhook_deliveries
DELETE FROM webhook_deliveries WHERE expires_at < now();

-- name: set_copernica_account
UPDATE tenants SET copernica_account = $2 WHERE id = $1;
