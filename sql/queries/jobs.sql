-- The durable job queue (bridge/sync/jobs.py).

-- name: enqueue_job
-- Store job ($1 tenant, $2 kind, $3 key, $4 payload, $5 attempts) or merge it into the waiting one
-- with its key; due in $6 seconds, or when the batching window of $8 seconds closes; priority $7.
-- The function of migration 0013.
SELECT * FROM enqueue_job($1, $2, $3, $4, $5, $6, $7, $8);

-- name: notify_jobs
SELECT pg_notify('bridge_jobs', $1);

-- name: claim_batch
-- Up to $2 ready jobs of kind $1 of the tenant whose turn it is ($5: that tenant only), of its most
-- urgent priority, under a lease of $3 seconds for worker $4; at most $6 real-time batches and $7
-- batches of runs per tenant at once. One round trip: the function of migration 0017, with the
-- settings version of the jobs' tenant (the worker reads its settings again when it changed),
-- looked up by key: a join let the planner, which knows nothing of the function's rows, read
-- every tenant. When it claims nothing, one row of nothing but `due`: the seconds until the first
-- waiting job of kind $1 that is not due yet is due (NULL: none waits), so that an idle worker
-- knows how long it may sleep without asking again (a job stored meanwhile notifies it).
WITH c AS (SELECT * FROM claim_batch($1, $2, $3, $4, $5, $6, $7))
SELECT c.*, (SELECT t.settings_version FROM tenants t WHERE t.id = c.tenant_id) AS settings_version,
       NULL::float8 AS due
FROM c
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT extract(epoch FROM min(run_at) - now())::float8 FROM jobs
        WHERE kind = $1 AND state = 'waiting' AND run_at > now())
WHERE NOT EXISTS (SELECT FROM c);

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
                error_platform = $5, updated_at = now()
WHERE id = $1;

-- name: absorb_into_twin
-- The failed job's changes go under its newer waiting twin (newer values win), then it goes.
UPDATE jobs SET payload = $2::jsonb || payload, attempts = greatest(attempts, $3),
                run_at = greatest(run_at, now() + make_interval(secs => $4)),
                last_error = $5, error_category = $6, error_platform = $7, updated_at = now()
WHERE id = $1;

-- name: delete_job
DELETE FROM jobs WHERE id = $1;

-- name: hold_job
-- A held job may wait for days: its payload $5 keeps no customer value (they are read again).
UPDATE jobs SET state = 'held', locked_until = NULL, locked_by = NULL, payload = $5,
                last_error = $2, error_category = $3, error_platform = $4, updated_at = now()
WHERE id = $1;

-- name: requeue_job
UPDATE jobs SET state = 'waiting', attempts = 0, run_at = now(), last_error = NULL,
                error_category = NULL, error_platform = NULL, updated_at = now()
WHERE id = $1 AND tenant_id = $2 AND state = 'held';

-- name: extend_lease
UPDATE jobs SET locked_until = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND locked_by = $2 AND state = 'running';

-- name: held_jobs
SELECT id, kind, key, attempts, last_error, error_category, updated_at FROM jobs
WHERE tenant_id = $1 AND state = 'held' ORDER BY updated_at DESC LIMIT $2;

-- name: job_counts
SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state;

-- name: release_jobs
-- Hand claimed jobs $1 of worker $2 back untried (the process stops): waiting at once, the attempt
-- not counted. One whose record has a newer waiting change merges into it (newer values win).
WITH mine AS (
    SELECT id, tenant_id, kind, key, payload FROM jobs
    WHERE id = ANY($1::bigint[]) AND state = 'running' AND locked_by = $2
    FOR UPDATE
), merged AS (
    UPDATE jobs w SET payload = m.payload || w.payload, updated_at = now()
    FROM mine m
    WHERE w.tenant_id = m.tenant_id AND w.kind = m.kind AND w.key = m.key AND w.state = 'waiting'
    RETURNING m.id
), gone AS (
    DELETE FROM jobs WHERE id IN (SELECT id FROM merged)
)
UPDATE jobs SET state = 'waiting', attempts = greatest(attempts - 1, 0), run_at = now(),
                locked_until = NULL, locked_by = NULL, updated_at = now()
WHERE id IN (SELECT id FROM mine) AND id NOT IN (SELECT id FROM merged);

-- name: lock_fixable_jobs
-- Held jobs of tenant $1 that failed for a category in $2 on platform $3 or on none (requeue_fixed).
SELECT id, kind, key, payload FROM jobs
WHERE tenant_id = $1 AND state = 'held' AND error_category = ANY($2::text[])
  AND (error_platform = $3 OR error_platform IS NULL)
ORDER BY id
FOR UPDATE;

-- name: resolve_fixed_reports
-- The open reports of what requeue_fixed fixed: of the jobs $4, or of a category in $2 on platform
-- $3 or on none. Pushed ones need their new status in Salesforce (status_pushed false).
UPDATE error_reports SET status = 'resolved', resolved_at = now(), status_pushed = (salesforce_id IS NULL)
WHERE tenant_id = $1 AND status <> 'resolved'
  AND (job_id = ANY($4::bigint[])
       OR (category = ANY($2::text[]) AND (platform = $3 OR platform IS NULL)))
RETURNING id, salesforce_id IS NOT NULL AS pushed;

-- name: outgrown_statistics
-- Of the tables a first full sync grows from nothing (its jobs, then its links), those more
-- than twice as big (and 1,000 rows bigger) as when PostgreSQL last counted them. A statement's
-- plan, kept per connection, was made for the size last counted: for a table thought empty,
-- a scan of it all, which a key look-up in a table of 40,000 rows pays with 3-10 ms instead
-- of 0.3. ANALYZE counts again, and every plan that used the table is made anew.
SELECT c.relname::text AS name FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid IN ('jobs'::regclass, 'links'::regclass)
  AND s.n_live_tup > 2 * greatest(c.reltuples, 0) + 1000;

-- name: take_statistics_turn
-- Whether this process may count table $1 now: no other is counting it (x'636f756e', "coun",
-- keeps this lock apart from the bridge's other advisory locks). Every process looks at the same
-- moment; without it each would count the table, one after the other.
SELECT pg_try_advisory_xact_lock(x'636f756e'::int, hashtext($1));

-- name: analyze_jobs
ANALYZE jobs;

-- name: analyze_links
ANALYZE links;
