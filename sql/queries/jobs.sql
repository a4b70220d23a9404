-- The durable job queue (bridge/sync/jobs.py).

-- name: enqueue_job
-- A waiting job with the same tenant+kind+key absorbs the new payload (newer keys win).
INSERT INTO jobs (tenant_id, kind, key, payload, max_attempts, run_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (tenant_id, kind, key) WHERE state = 'waiting'
DO UPDATE SET payload = jobs.payload || excluded.payload,
              run_at = least(jobs.run_at, excluded.run_at),
              updated_at = now()
RETURNING id, (xmax = 0) AS inserted;

-- name: notify_jobs
SELECT pg_notify('bridge_jobs', $1);

-- name: claim_jobs
-- Up to $2 ready jobs of kind $1, all of one tenant ($5 when given, else the tenant of the oldest
-- unlocked ready job). Which jobs are ready is the view claimable_jobs (migration 0004).
WITH first_ready AS (
    SELECT c.tenant_id FROM claimable_jobs c
    WHERE c.kind = $1 AND ($5::bigint IS NULL OR c.tenant_id = $5)
    ORDER BY c.run_at, c.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT c.id FROM claimable_jobs c
    WHERE c.kind = $1 AND c.tenant_id = (SELECT tenant_id FROM first_ready)
    ORDER BY c.run_at, c.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1,
                locked_until = now() + make_interval(secs => $3), locked_by = $4, updated_at = now()
FROM picked WHERE jobs.id = picked.id
RETURNING jobs.id, jobs.tenant_id, jobs.kind, jobs.key, jobs.payload, jobs.attempts, jobs.max_attempts;

-- name: complete_jobs
DELETE FROM jobs WHERE id = ANY($1::bigint[]) AND state = 'running' AND locked_by = $2;

-- name: lock_job
SELECT * FROM jobs WHERE id = $1 FOR UPDATE;

-- name: lock_waiting_twin
SELECT * FROM jobs WHERE tenant_id = $1 AND kind = $2 AND key = $3 AND state = 'waiting' AND id <> $4
FOR UPDATE;

-- name: retry_job
UPDATE jobs SET state = 'waiting', run_at = now() + make_interval(secs => $2),
                locked_until = NULL, locked_by = NULL, last_error = $3, error_category = $4,
                updated_at = now()
WHERE id = $1;

-- name: absorb_into_twin
-- The failed job's changes go under its newer waiting twin (newer values win), then it goes.
UPDATE jobs SET payload = $2::jsonb || payload, attempts = greatest(attempts, $3),
                run_at = greatest(run_at, now() + make_interval(secs => $4)),
                last_error = $5, error_category = $6, updated_at = now()
WHERE id = $1;

-- name: delete_job
DELETE FROM jobs WHERE id = $1;

-- name: hold_job
UPDATE jobs SET state = 'held', locked_until = NULL, locked_by = NULL,
                last_error = $2, error_category = $3, updated_at = now()
WHERE id = $1;

-- name: requeue_job
UPDATE jobs SET state = 'waiting', attempts = 0, run_at = now(), last_error = NULL,
                error_category = NULL, updated_at = now()
WHERE id = $1 AND tenant_id = $2 AND state = 'held';

-- name: extend_lease
UPDATE jobs SET locked_until = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running';

-- name: held_jobs
SELECT id, kind, key, attempts, last_error, error_category, updated_at FROM jobs
WHERE tenant_id = $1 AND state = 'held' ORDER BY updated_at DESC LIMIT $2;

-- name: job_counts
SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state;
