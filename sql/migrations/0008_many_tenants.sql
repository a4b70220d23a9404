-- Many tenants, many processes (bridge/sync/streams.py; claim_turn and claim_jobs in
-- sql/queries/jobs.sql).

-- The live bridge processes that stream: each beats its heartbeat every few seconds, which keeps
-- it alive for a lease more. One not beating until then is dead (its row stays a while: its
-- claimed jobs then count against no tenant's workers); a clean shutdown deletes its row.
CREATE TABLE bridge_processes (
    id              text PRIMARY KEY,                  -- host:pid (bridge.sync.jobs.worker_name)
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);

-- Which process streams a tenant's CDC changes: one lease per tenant, renewed by its owner in
-- one statement with all its others. An expired lease (its owner stopped streaming before it
-- expired) may be taken by any live process.
CREATE TABLE stream_leases (
    tenant_id       bigint PRIMARY KEY REFERENCES tenants ON DELETE CASCADE,
    owner           text NOT NULL REFERENCES bridge_processes ON DELETE CASCADE,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX stream_leases_owner ON stream_leases (owner);

-- Fair claims. A job's priority: 0 a change a platform announced (real time), 1 the work of a
-- run (full sync, reconcile); claims take the lower first (bridge.vocabulary.REAL_TIME, BULK).
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0 CHECK (priority IN (0, 1));
-- The claim (one per batch) that runs a job: a tenant's running batches are its distinct claims.
ALTER TABLE jobs ADD COLUMN claim bigint;
CREATE SEQUENCE job_claims;
CREATE INDEX jobs_tenant_ready ON jobs (tenant_id, kind, priority, run_at) WHERE state = 'waiting';
CREATE INDEX jobs_tenant_running ON jobs (tenant_id, kind, key) WHERE state = 'running';

-- When each tenant last had jobs of a kind claimed: tenants take turns.
CREATE TABLE job_turns (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    kind            text NOT NULL,
    served_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

-- claimable_jobs (0004) with the priority: the same rule of which jobs are ready.
CREATE OR REPLACE VIEW claimable_jobs AS
SELECT j.id, j.tenant_id, j.kind, j.run_at, j.priority FROM jobs j
WHERE ((j.state = 'waiting' AND j.run_at <= now())
       OR (j.state = 'running' AND j.locked_until < now()))
  AND NOT EXISTS (
      SELECT 1 FROM jobs r
      WHERE r.tenant_id = j.tenant_id AND r.kind = j.kind AND r.key = j.key
        AND r.state = 'running' AND r.id <> j.id AND (j.state = 'waiting' OR r.id < j.id));
