-- What the sync did, for the pages that show it: per-contact history, conflicts, runs.

-- name: contact_history
-- Audit entries of one person: by Salesforce Contact Ids ($2) or Copernica profile ids ($3).
SELECT id, at, direction, salesforce_id, copernica_id, action, fields, outcome, detail
FROM audit_log
WHERE tenant_id = $1 AND (salesforce_id = ANY($2::text[]) OR copernica_id = ANY($3::text[]))
ORDER BY at DESC, id DESC LIMIT $4;

-- name: linked_profiles
-- The Copernica profiles linked to these Salesforce Contact Ids.
SELECT salesforce_id, copernica_id FROM links
WHERE tenant_id = $1 AND (salesforce_id = ANY($2::text[]) OR copernica_id = ANY($3::text[]));

-- name: recent_conflicts
SELECT id, at, direction, salesforce_id, copernica_id, action, fields, outcome, detail
FROM audit_log
WHERE tenant_id = $1 AND action = 'conflict'
ORDER BY at DESC, id DESC LIMIT $2;

-- name: run_history
SELECT id, kind, state, done, total, message, requested_by, created_at, started_at, finished_at
FROM sync_runs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2;
