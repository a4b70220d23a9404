-- name: claim_webhook_delivery
-- Remember delivery $2 of tenant $1 for $3 seconds and, with a key $5, store its job (kind $4,
-- payload $6, $7 attempts, batching window $8 seconds); false: a replay, nothing stored. The
-- function of migration 0011.
SELECT store_webhook_delivery($1, $2, $3, $4, $5, $6, $7, $8);

-- name: claim_webhook_deliveries
-- claim_webhook_delivery for many deliveries in one transaction, in order: arrays $1..$8 of its
-- arguments, position by position. `n`: the delivery's position (1-based); `fresh` as above.
SELECT d.n, store_webhook_delivery(d.tenant, d.delivery, d.seconds, d.kind, d.key, d.payload,
                                   d.attempts, d.window_s) AS fresh
FROM unnest($1::bigint[], $2::bytea[], $3::float8[], $4::text[], $5::text[], $6::jsonb[],
            $7::integer[], $8::float8[])
     WITH ORDINALITY AS d(tenant, delivery, seconds, kind, key, payload, attempts, window_s, n)
ORDER BY d.n;

-- name: forget_expired_webhook_deliveries
DELETE FROM webhook_deliveries WHERE expires_at < now();

-- name: set_copernica_account
UPDATE tenants SET copernica_account = $2 WHERE id = $1;
