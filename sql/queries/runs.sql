-- Sync runs (progress of reconciles and full syncs) and error reports.

-- name: create_run
INSERT INTO sync_runs (tenant_id, kind, requested_by) VALUES ($1, $2, $3) RETURNING id;

-- name: start_run
UPDATE sync_runs SET state = 'running', started_at = coalesce(started_at, now()), total = $3
WHERE id = $1 AND tenant_id = $2;

-- name: run_progress
-- progress_at: the sync jobs the comparison queued so far are those created up to now (run_pending).
UPDATE sync_runs SET done = $3, total = coalesce($4, total), message = coalesce($5, message),
                     progress_at = now()
WHERE id = $1 AND tenant_id = $2;

-- name: finish_run
-- Run $1 of tenant $2 ends in state $3 ('done' or 'failed'); a done one keeps its summary, counted
-- once here (migration 0019), not at every look of the status bar.
UPDATE sync_runs SET state = $3, message = $4, finished_at = now(),
    summary = CASE WHEN $3 = 'done' THEN run_summary(tenant_id, started_at, now()) END
WHERE id = $1 AND tenant_id = $2;

-- name: last_run_finished
-- When the tenant's latest run ended (NULL: none did): the record counts may have moved since.
SELECT max(finished_at) FROM sync_runs WHERE tenant_id = $1;

-- name: get_run
SELECT * FROM sync_runs WHERE id = $1 AND tenant_id = $2;

-- name: recent_runs
SELECT * FROM sync_runs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2;

-- name: sync_status
-- Waiting changes are sync jobs only: the daily statistics job, error pushes and the run's own job
-- are no changes. Retrying: failed at least once, waiting for their next attempt.
SELECT
    (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'sync'
        AND state IN ('waiting', 'running')) AS waiting,
    (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'sync' AND state = 'waiting'
        AND last_error IS NOT NULL) AS retrying,
    (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state = 'held') AS held_jobs,
    (SELECT auto_sync FROM tenants WHERE id = $1) AS auto_sync,
    (SELECT direction FROM tenants WHERE id = $1) AS direction,
    (SELECT changes FROM waiting_changes WHERE tenant_id = $1) AS held_back,
    (SELECT since FROM waiting_changes WHERE tenant_id = $1) AS held_back_since,
    (SELECT max(finished_at) FROM sync_runs WHERE tenant_id = $1 AND state = 'done') AS last_success,
    (SELECT count(*) FROM error_reports WHERE tenant_id = $1 AND status = 'open') AS open_errors;

-- name: note_waiting_change
-- Profile $2 changed at $3 while automatic sync is off: one more waits for "Sync manually" - unless
-- it is the echo of a run's write (a run is under way, or the link is not older than the change).
INSERT INTO waiting_changes (tenant_id)
SELECT $1
WHERE NOT EXISTS (SELECT 1 FROM sync_runs WHERE tenant_id = $1 AND state IN ('queued', 'running'))
  AND NOT EXISTS (SELECT 1 FROM links WHERE tenant_id = $1 AND copernica_id = $2
                  AND synced_at >= $3::timestamptz)
ON CONFLICT (tenant_id) DO UPDATE SET changes = waiting_changes.changes + 1;

-- name: forget_waiting_changes
-- A run compares everything that changed: what waited is in it.
DELETE FROM waiting_changes WHERE tenant_id = $1;

-- name: run_pending
-- Of the sync jobs the comparison of a run queued up to $2 (its progress_at), those not applied
-- yet: the work of runs (priority 1), not the real-time changes that arrive meanwhile.
SELECT count(*) FROM jobs
WHERE tenant_id = $1 AND kind = 'sync' AND state IN ('waiting', 'running') AND priority = 1
  AND created_at <= $2;

-- name: stream_states
SELECT channel, replay_id, owner, updated_at FROM stream_state WHERE tenant_id = $1;

-- name: create_error_report
INSERT INTO error_reports (tenant_id, category, operation, direction, record_id, message, details, job_id,
                           platform, cause, code, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id;

-- name: error_reports
SELECT * FROM error_reports WHERE tenant_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2;

-- name: error_report
SELECT * FROM error_reports WHERE id = $1 AND tenant_id = $2;

-- name: mark_requeued
-- Its job was requeued: unless it failed again meanwhile (occurred_at moved on from $3).
UPDATE error_reports SET status = 'requeued'
WHERE id = $1 AND tenant_id = $2 AND status = 'open' AND occurred_at = $3;

-- name: open_report_like
-- The same cause of the same record again (open, or requeued and failing anew): one report.
SELECT id, job_id, attempts FROM error_reports
WHERE tenant_id = $1 AND status <> 'resolved' AND record_id IS NOT DISTINCT FROM $2
  AND category = $3 AND coalesce(cause, message) = $4
ORDER BY id DESC LIMIT 1 FOR UPDATE;

-- name: refresh_report
-- It failed again: open again, pointing at the newest held job, its attempts added; a pushed
-- report's Salesforce record wants the new text and status.
UPDATE error_reports SET job_id = $3, occurred_at = now(), status = 'open', message = $4,
                         attempts = attempts + $5, code = coalesce($6, code),
                         status_pushed = (salesforce_id IS NULL)
WHERE id = $1 AND tenant_id = $2;

-- name: delete_held_job
DELETE FROM jobs WHERE id = $1 AND tenant_id = $2 AND state = 'held';

-- name: waiting_run
-- A run of tenant $1 that waits for a worker (its job is there and not held), if any.
SELECT r.id FROM sync_runs r
WHERE r.tenant_id = $1 AND r.state = 'queued'
  AND EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = r.tenant_id AND j.kind = 'reconcile'
              AND j.key = 'run-' || r.id AND j.state <> 'held')
ORDER BY r.id LIMIT 1;
