-- Sync runs (progress of reconciles and full syncs) and error reports.

-- name: create_run
INSERT INTO sync_runs (tenant_id, kind, requested_by) VALUES ($1, $2, $3) RETURNING id;

-- name: start_run
UPDATE sync_runs SET state = 'running', started_at = coalesce(started_at, now()), total = $3
WHERE id = $1 AND tenant_id = $2;

-- name: run_progress
UPDATE sync_runs SET done = $3, total = coalesce($4, total), message = coalesce($5, message)
WHERE id = $1 AND tenant_id = $2;

-- name: finish_run
UPDATE sync_runs SET state = $3, message = $4, finished_at = now() WHERE id = $1 AND tenant_id = $2;

-- name: get_run
SELECT * FROM sync_runs WHERE id = $1 AND tenant_id = $2;

-- name: recent_runs
SELECT * FROM sync_runs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2;

-- name: sync_status
SELECT
    (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state IN ('waiting', 'running')) AS queue_depth,
    (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state = 'held') AS held_jobs,
    (SELECT max(finished_at) FROM sync_runs WHERE tenant_id = $1 AND state = 'done') AS last_success,
    (SELECT max(synced_at) FROM links WHERE tenant_id = $1) AS last_change,
    (SELECT count(*) FROM error_reports WHERE tenant_id = $1 AND status = 'open') AS open_errors;

-- name: stream_states
SELECT channel, replay_id, owner, updated_at FROM stream_state WHERE tenant_id = $1;

-- name: create_error_report
INSERT INTO error_reports (tenant_id, category, operation, direction, record_id, message, details, job_id,
                           platform)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id;

-- name: error_reports
SELECT * FROM error_reports WHERE tenant_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2;

-- name: error_report
SELECT * FROM error_reports WHERE id = $1 AND tenant_id = $2;

-- name: mark_report
UPDATE error_reports SET status = $3 WHERE id = $1 AND tenant_id = $2;

-- name: open_report_like
-- The same failure of the same record again: one report, pointing at the newest held job.
SELECT id, job_id FROM error_reports
WHERE tenant_id = $1 AND status = 'open' AND record_id IS NOT DISTINCT FROM $2
  AND category = $3 AND message = $4
ORDER BY id DESC LIMIT 1 FOR UPDATE;

-- name: refresh_report
UPDATE error_reports SET job_id = $3, occurred_at = now() WHERE id = $1 AND tenant_id = $2;

-- name: delete_held_job
DELETE FROM jobs WHERE id = $1 AND tenant_id = $2 AND state = 'held';

-- name: waiting_run
-- A run of tenant $1 that waits for a worker (its job is there and not held), if any.
SELECT r.id FROM sync_runs r
WHERE r.tenant_id = $1 AND r.state = 'queued'
  AND EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = r.tenant_id AND j.kind = 'reconcile'
              AND j.key = 'run-' || r.id AND j.state <> 'held')
ORDER BY r.id LIMIT 1;
