-- The first schema. Customer data is not stored at rest: links, fingerprints (keyed hashes),
-- watermarks and metadata only; job payloads live only while the job waits (design.md §6).

CREATE TABLE tenants (
    id              bigserial PRIMARY KEY,
    slug            text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name            text NOT NULL,
    hook_token      text NOT NULL UNIQUE,          -- the secret part of /hooks/copernica/<token>
    direction       text NOT NULL DEFAULT 'both' CHECK (direction IN ('both', 'sf_to_cp', 'cp_to_sf')),
    apply_deletes   boolean NOT NULL DEFAULT false,
    auto_sync       boolean NOT NULL DEFAULT true,
    conflict_rule   text NOT NULL DEFAULT 'newest'
                    CHECK (conflict_rule IN ('newest', 'salesforce_wins', 'copernica_wins')),
    copernica_database text,                       -- Copernica database id
    link_field      text NOT NULL DEFAULT 'Id',    -- Copernica field holding the Salesforce Contact Id
    copernica_timezone text NOT NULL DEFAULT 'Europe/Amsterdam',
    -- keys the per-field fingerprints of links: no customer value is stored, not even as a plain hash
    fingerprint_key text NOT NULL DEFAULT encode(sha256((random()::text || clock_timestamp()::text)::bytea), 'hex'),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    email           text NOT NULL,
    password_hash   text NOT NULL,
    role            text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'user')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE sessions (
    id_hash         text PRIMARY KEY,              -- sha256 of the cookie value; the value itself is never stored
    user_id         bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE password_resets (
    token_hash      text PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);

CREATE TABLE credentials (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    platform        text NOT NULL CHECK (platform IN ('salesforce', 'copernica')),
    ciphertext      bytea NOT NULL,                -- Fernet token of a JSON object; never plaintext
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform)
);

CREATE TABLE links (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    salesforce_id   text NOT NULL,
    copernica_id    text NOT NULL,
    agreed          jsonb NOT NULL DEFAULT '{}',   -- field -> keyed hash of the value both sides agreed on
    sf_deleted_at   timestamptz,                   -- the contact is deleted; the profile was kept
    synced_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, salesforce_id)
);
CREATE UNIQUE INDEX links_copernica ON links (tenant_id, copernica_id);

CREATE TABLE jobs (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    kind            text NOT NULL,
    key             text NOT NULL,                 -- coalescing key: one waiting job per tenant+kind+key
    payload         jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'running', 'held')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 8,
    run_at          timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    locked_by       text,
    last_error      text,
    error_category  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_waiting_key ON jobs (tenant_id, kind, key) WHERE state = 'waiting';
CREATE INDEX jobs_ready ON jobs (kind, run_at) WHERE state = 'waiting';
CREATE INDEX jobs_running ON jobs (kind, locked_until) WHERE state = 'running';
CREATE INDEX jobs_held ON jobs (tenant_id) WHERE state = 'held';

CREATE TABLE stream_state (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    channel         text NOT NULL,
    replay_id       bigint,
    replay_date     text,
    owner           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel)
);

CREATE TABLE watermarks (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    name            text NOT NULL,                 -- e.g. salesforce_contacts, copernica_profiles
    value           timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE sync_runs (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    kind            text NOT NULL,                 -- full, reconcile, manual
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed')),
    done            bigint NOT NULL DEFAULT 0,
    total           bigint,
    message         text,
    requested_by    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX sync_runs_tenant ON sync_runs (tenant_id, created_at DESC);

CREATE TABLE error_reports (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    category        text NOT NULL CHECK (category IN ('auth', 'permission', 'validation', 'duplicate',
                        'not_found', 'rate_limit', 'transient', 'mapping')),
    operation       text NOT NULL,
    direction       text,
    record_id       text,
    message         text NOT NULL,
    details         text,
    job_id          bigint,                        -- the held job, if any (requeue)
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'requeued', 'resolved')),
    salesforce_id   text,                          -- the Copernica_Sync_Error__c record once pushed
    occurred_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX error_reports_tenant ON error_reports (tenant_id, occurred_at DESC);
CREATE INDEX error_reports_unpushed ON error_reports (tenant_id) WHERE salesforce_id IS NULL;

CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    at              timestamptz NOT NULL DEFAULT now(),
    direction       text NOT NULL,
    salesforce_id   text,
    copernica_id    text,
    action          text NOT NULL,                 -- create, update, delete, undelete, merge, conflict, …
    fields          text[] NOT NULL DEFAULT '{}',
    outcome         text NOT NULL,
    detail          jsonb                          -- conflicting values; erased after the retention window
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at DESC);

CREATE TABLE api_usage (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    platform        text NOT NULL CHECK (platform IN ('salesforce', 'copernica')),
    day             date NOT NULL,
    calls           bigint NOT NULL DEFAULT 0,
    used            bigint,                        -- the platform's own count (Sforce-Limit-Info)
    max             bigint,
    PRIMARY KEY (tenant_id, platform, day)
);
