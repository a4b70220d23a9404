-- Self-healing (bridge/supervise.py, bridge/sync/health.py, jobs.requeue_fixed).

-- Which platform a job's or a report's failure came from (NULL: neither, e.g. a crash), so that
-- saving one platform's working credentials brings back exactly the jobs that platform held.
ALTER TABLE jobs ADD COLUMN error_platform text CHECK (error_platform IN ('salesforce', 'copernica'));
ALTER TABLE error_reports ADD COLUMN platform text CHECK (platform IN ('salesforce', 'copernica'));

-- A pushed report whose status changed since (resolved when its cause was fixed): the
-- Copernica_Sync_Error__c record in Salesforce gets the new status at the next push.
ALTER TABLE error_reports ADD COLUMN status_pushed boolean NOT NULL DEFAULT true;
CREATE INDEX error_reports_status_unpushed ON error_reports (tenant_id) WHERE NOT status_pushed;

-- What the status bar says while a platform fails for a tenant: "Salesforce failing since
-- 10:02, retrying (attempt 4)". One row per tenant, platform and source (the CDC stream, the
-- sync jobs); the row goes when that source works again. Categories only, no messages: the
-- status bar is seen by every user of the tenant.
CREATE TABLE platform_health (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    platform        text NOT NULL CHECK (platform IN ('salesforce', 'copernica')),
    source          text NOT NULL CHECK (source IN ('stream', 'jobs')),
    category        text NOT NULL,
    failing_since   timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 1,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform, source)
);
