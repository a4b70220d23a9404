-- A status bar people can trust, and error reports with a life cycle.

-- When a run last recorded how far its comparison got: the sync jobs queued up to then are the
-- ones the comparison found, so "done" = compared minus those still waiting (bridge/sync/runs.py).
ALTER TABLE sync_runs ADD COLUMN progress_at timestamptz;

-- One report per record and cause, open → requeued → resolved (or open again). ``message`` is
-- the readable sentence; ``cause`` the platform's own words (masked), which tell causes apart;
-- how many times it failed, the platform's error code, and when it was resolved (the record
-- synced, or the credentials were fixed).
ALTER TABLE error_reports ADD COLUMN cause text;
ALTER TABLE error_reports ADD COLUMN attempts integer NOT NULL DEFAULT 1;
ALTER TABLE error_reports ADD COLUMN code text;
ALTER TABLE error_reports ADD COLUMN resolved_at timestamptz;
-- A batch that went through looks up the unresolved reports of its records.
CREATE INDEX error_reports_unresolved ON error_reports (tenant_id, record_id) WHERE status <> 'resolved';

-- Changes that arrived while automatic sync is off (Copernica webhooks): not stored, only
-- counted, so the status bar can say that changes wait for "Sync manually"; a run forgets them.
CREATE TABLE waiting_changes (
    tenant_id       bigint PRIMARY KEY REFERENCES tenants ON DELETE CASCADE,
    changes         integer NOT NULL DEFAULT 1,
    since           timestamptz NOT NULL DEFAULT now()
);
