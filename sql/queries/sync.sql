-- The sync engine: links, audit log, stream state, watermarks, API usage.

-- name: links_of
-- The links of contacts $2 and of profiles $3.
SELECT * FROM links WHERE tenant_id = $1
  AND (salesforce_id = ANY($2::text[]) OR copernica_id = ANY($3::text[]));

-- name: record_batch
-- What a sync batch wrote: links $3 saved, links of contacts $4 dropped, audits $5, reports of
-- records $6 resolved, if tenant $1 still syncs database $2 (the function of migration 0011).
SELECT * FROM record_batch($1, $2, $3, $4, $5, $6);

-- name: links_page
SELECT salesforce_id, copernica_id FROM links
WHERE tenant_id = $1 AND salesforce_id > $2 ORDER BY salesforce_id LIMIT $3;

-- name: write_audit
INSERT INTO audit_log (tenant_id, direction, salesforce_id, copernica_id, action, fields, outcome, detail)
SELECT $1, d.direction, d.salesforce_id, d.copernica_id, d.action, d.fields, d.outcome, d.detail
FROM jsonb_to_recordset($2::jsonb) AS d(direction text, salesforce_id text, copernica_id text,
                                        action text, fields text[], outcome text, detail jsonb);

-- name: erase_old_audit_values
UPDATE audit_log SET detail = NULL WHERE detail IS NOT NULL AND at < now() - make_interval(days => $1);

-- name: get_replay
SELECT replay_id, replay_date FROM stream_state WHERE tenant_id = $1 AND channel = $2;

-- name: ingest_changes
-- A delivery of tenant $1's change stream in one statement, judged by settings version $2 (NULL:
-- none): ingest_stream_delivery (migration 0016); NULL when the settings changed meanwhile.
SELECT ingest_stream_delivery($1, $2, $3, $4, $5, $6, $7, $8, $9) AS queued;

-- name: set_stream_owner
INSERT INTO stream_state (tenant_id, channel, owner, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (tenant_id, channel) DO UPDATE SET owner = excluded.owner, updated_at = now();

-- name: get_watermark
SELECT value FROM watermarks WHERE tenant_id = $1 AND name = $2;

-- name: set_watermark
INSERT INTO watermarks (tenant_id, name, value) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value, updated_at = now();

-- name: add_usage
INSERT INTO api_usage (tenant_id, platform, day, calls, used, max)
VALUES ($1, $2, current_date, $3, $4, $5)
ON CONFLICT (tenant_id, platform, day) DO UPDATE
SET calls = api_usage.calls + excluded.calls,
    used = coalesce(excluded.used, api_usage.used), max = coalesce(excluded.max, api_usage.max);

-- name: syncable_tenants
SELECT t.* FROM tenants t
WHERE EXISTS (SELECT 1 FROM credentials c WHERE c.tenant_id = t.id AND c.platform = 'salesforce')
  AND EXISTS (SELECT 1 FROM credentials c WHERE c.tenant_id = t.id AND c.platform = 'copernica')
  AND t.copernica_database IS NOT NULL;

-- name: credentials_version
-- When a tenant's credentials for platform $2 were last saved (NULL: never).
SELECT updated_at FROM credentials WHERE tenant_id = $1 AND platform = $2;

-- name: last_run_of_kind
SELECT max(created_at) FROM sync_runs WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2);

-- name: tenant_jobs_pending
-- pending: 1 while a job of kind $2 of tenant $1 with an id up to $3 (NULL: any) waits or runs
-- (looked up, not counted: a run asks every quarter second while its backlog drains), else 0;
-- held: how many are held.
SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = $1 AND kind = $2
                                AND id <= coalesce($3::bigint, id)
                                AND state IN ('waiting', 'running') LIMIT 1) AS one) AS pending,
       (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = $2 AND state = 'held') AS held;

-- name: last_job_id
-- The id of the newest job stored so far, of any tenant.
SELECT last_value FROM jobs_id_seq;

-- name: unpushed_error_reports
SELECT * FROM error_reports WHERE tenant_id = $1 AND salesforce_id IS NULL ORDER BY id LIMIT $2;

-- name: mark_report_pushed
UPDATE error_reports SET salesforce_id = $3 WHERE id = $1 AND tenant_id = $2;

-- name: reset_sync_state
-- The demo starts with empty sandboxes: forget what was synced with the previous ones.
WITH l AS (DELETE FROM links WHERE tenant_id = $1),
     j AS (DELETE FROM jobs WHERE tenant_id = $1),
     s AS (DELETE FROM stream_state WHERE tenant_id = $1),
     w AS (DELETE FROM watermarks WHERE tenant_id = $1)
DELETE FROM sync_runs WHERE tenant_id = $1;

-- name: ping
SELECT 1;

-- name: try_scheduler_lock
SELECT pg_try_advisory_xact_lock($1);

-- name: sends_for_statistics
SELECT * FROM emailing_sends
WHERE tenant_id = $1 AND sent_at > now() - make_interval(days => $2) AND emailing_id IS NOT NULL
ORDER BY sent_at;

-- name: stream_owner
SELECT owner FROM stream_state WHERE tenant_id = $1 AND channel = $2;

-- name: tenant_database
-- The Copernica database tenant $1 syncs now (checked right before a delete).
SELECT copernica_database FROM tenants WHERE id = $1;

-- name: lock_tenant_database
-- The same, with a share lock on the tenant's row until the transaction ends: a switch of the
-- synced database (which updates the row) waits for the writes that hold it.
SELECT copernica_database FROM tenants WHERE id = $1 FOR SHARE;

-- name: count_links
SELECT count(*) FROM links WHERE tenant_id = $1;

-- name: lock_tenant_for_switch
-- The synced database, the tenant's row locked for the switch (waits for deletes in flight).
SELECT copernica_database FROM tenants WHERE id = $1 FOR UPDATE;

-- name: drop_all_links
-- A switch of the synced database: the links into the old one go; returns how many.
WITH gone AS (DELETE FROM links WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM gone;

-- name: forget_watermark
DELETE FROM watermarks WHERE tenant_id = $1 AND name = $2;
