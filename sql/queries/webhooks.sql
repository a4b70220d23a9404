-- name: claim_webhook_delivery
-- Remember delivery $2 of tenant $1 for $3 seconds and, with a key $5, store its job (kind $4,
-- payload $6, $7 attempts, batching window $8 seconds); false: a replay, nothing stored. The
-- function of migration 0011.
SELECT store_webhook_delivery($1, $2, $3, $4, $5, $6, $7, $8);

-- name: take_webhook_deliveries
-- take_webhook_delivery (migration 0015) for many deliveries in one transaction, in order:
-- arrays $1..$11 of its arguments, position by position. `n`: the delivery's position
-- (1-based); `outcome` as the function says.
SELECT d.n, take_webhook_delivery(d.tenant, d.version, d.delivery, d.seconds, d.cp_id, d.claimed,
                                  d.fingerprints, d.kind, d.payload, d.attempts, d.window_s)
           AS outcome
FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::float8[], $5::text[], $6::text[],
            $7::jsonb[], $8::text[], $9::jsonb[], $10::integer[], $11::float8[])
     WITH ORDINALITY AS d(tenant, version, delivery, seconds, cp_id, claimed, fingerprints, kind,
                          payload, attempts, window_s, n)
ORDER BY d.n;

-- name: forget_expired_webhook_deliveries
DELETE FROM webhook_deliveries WHERE expires_at < now();

-- name: set_copernica_account
UPDATE tenants SET copernica_account = $2 WHERE id = $1;
