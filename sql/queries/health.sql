-- What fails now, per tenant and platform (bridge/sync/health.py; the status bar reads it).

-- name: platform_failing
-- Another failure of platform $2 seen by source $3: the episode starts now unless it runs already.
-- Attempts: $5 when the source counts them, else one more.
INSERT INTO platform_health (tenant_id, platform, source, category, attempts)
VALUES ($1, $2, $3, $4, coalesce($5, 1))
ON CONFLICT (tenant_id, platform, source) DO UPDATE
SET category = excluded.category,
    attempts = coalesce($5, platform_health.attempts + 1),
    updated_at = now();

-- name: platform_working
-- Source $2 (and platform $3 unless NULL) works again for tenant $1.
DELETE FROM platform_health
WHERE tenant_id = $1 AND source = $2 AND ($3::text IS NULL OR platform = $3);

-- name: platform_problems
-- One line per failing platform: since the first failure of any source, the highest attempt.
SELECT platform, min(failing_since) AS failing_since, max(attempts) AS attempts,
       (array_agg(category ORDER BY updated_at DESC))[1] AS category, max(updated_at) AS updated_at
FROM platform_health WHERE tenant_id = $1
GROUP BY platform ORDER BY platform;

-- name: resolve_report
-- The failure behind report $1 is over: resolved; a pushed one needs its new status in Salesforce.
UPDATE error_reports SET status = 'resolved', resolved_at = now(), status_pushed = (salesforce_id IS NULL)
WHERE id = $1 AND tenant_id = $2 AND status <> 'resolved'
RETURNING salesforce_id IS NOT NULL AS pushed;

-- name: forget_stale_health
-- A row nobody refreshed for $1 seconds (its process died, its jobs were held): not "retrying".
DELETE FROM platform_health WHERE updated_at < now() - make_interval(secs => $1);

-- name: reports_with_new_status
-- Pushed reports that changed since (resolved, or failed again): their Salesforce records want it.
SELECT * FROM error_reports
WHERE tenant_id = $1 AND NOT status_pushed AND salesforce_id IS NOT NULL ORDER BY id LIMIT $2;

-- name: mark_status_pushed
UPDATE error_reports SET status_pushed = true WHERE id = $1 AND tenant_id = $2;
