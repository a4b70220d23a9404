-- Who streams which tenant's CDC changes (bridge/sync/streams.py; tables of migration 0008).

-- name: beat_heartbeat
-- Process $1 is alive for $2 seconds more (and registered, the first time).
INSERT INTO bridge_processes (id, expires_at) VALUES ($1, now() + make_interval(secs => $2))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = excluded.expires_at;

-- name: renew_stream_leases
-- Every lease of process $1 lasts $2 more seconds; the tenants it still holds.
UPDATE stream_leases SET expires_at = now() + make_interval(secs => $2)
WHERE owner = $1
RETURNING tenant_id;

-- name: live_processes
-- The processes alive now, in a fixed order.
SELECT id FROM bridge_processes WHERE expires_at > now() ORDER BY id;

-- name: forget_dead_processes
-- Processes dead for $1 seconds (the lease of a claimed job: their jobs are claimable again) go,
-- with their stream leases (expired long since).
DELETE FROM bridge_processes WHERE expires_at < now() - make_interval(secs => $1);

-- name: take_stream_leases
-- Up to $3 of the tenants $2 whose stream nobody holds (no lease, or an expired one) go to process
-- $1 for $4 seconds. Two processes taking the same one at once: the second finds it taken.
WITH free AS (
    SELECT w.id FROM unnest($2::bigint[]) AS w(id)
    LEFT JOIN stream_leases l ON l.tenant_id = w.id
    WHERE l.tenant_id IS NULL OR l.expires_at < now()
    ORDER BY random()
    LIMIT $3
)
INSERT INTO stream_leases (tenant_id, owner, expires_at)
SELECT id, $1, now() + make_interval(secs => $4) FROM free
ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE stream_leases.expires_at < now()
RETURNING tenant_id;

-- name: release_stream_leases
-- Process $1 no longer streams tenants $2: their leases go, and no one holds the streams until
-- another process takes them.
WITH gone AS (
    DELETE FROM stream_leases WHERE owner = $1 AND tenant_id = ANY($2::bigint[])
    RETURNING tenant_id
)
UPDATE stream_state SET owner = NULL, updated_at = now()
WHERE tenant_id IN (SELECT tenant_id FROM gone) AND owner = $1;

-- name: unregister_process
-- Process $1 stops: its leases go with it (and the streams it held have no owner until taken).
WITH gone AS (
    DELETE FROM bridge_processes WHERE id = $1
)
UPDATE stream_state SET owner = NULL, updated_at = now() WHERE owner = $1;

-- name: stream_owners
-- Per tenant: the process that streams it (NULL: none) and its changes waiting or being applied
-- (sync jobs, as the status bar counts them).
SELECT t.id, t.slug,
       (SELECT l.owner FROM stream_leases l WHERE l.tenant_id = t.id AND l.expires_at > now())
           AS stream_owner,
       (SELECT count(*) FROM jobs j WHERE j.tenant_id = t.id AND j.kind = 'sync'
            AND j.state IN ('waiting', 'running')) AS queue_depth
FROM tenants t ORDER BY t.id;
