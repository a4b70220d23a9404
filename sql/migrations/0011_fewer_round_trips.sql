-- A claim in one round trip (bridge/sync/jobs.py, JobQueue.claim): the tenant whose turn it is,
-- then its jobs, each in a statement of its own inside one function call. The function is
-- VOLATILE, so in READ COMMITTED each statement reads with a fresh snapshot: the jobs are picked
-- after the tenant's claim lock is held and see every claim committed before it (the rule of one
-- writer per record and the per-tenant limits depend on that). The locks last until the call
-- ends.
--
-- claim_batch(kind, limit, lease seconds, worker, tenant or NULL for any, real-time batches a
-- tenant may run, batches of runs a tenant may run): up to `limit` ready jobs of one tenant and
-- of one priority, its most urgent.
--
-- The turn: the tenant with the most urgent ready job (real-time changes before the work of
-- runs), then the one served longest ago; none that runs as many batches of the kind and priority
-- as it may (a tenant's real-time changes do not wait for its own full sync's batches, and a full
-- sync leaves the other workers to real-time changes; a dead process's batches do not count: they
-- are claimable once their lease ends). Each tenant's most urgent job is read from an index, in
-- two probes (waiting and due; running with an expired lease), without the rule of one writer per
-- record: the pick applies the whole rule (below), and a tenant it finds nothing for (it reached its limit as we took its lock, its jobs wait for
-- their records' running ones) is skipped for the next in turn. A lock per tenant and kind makes
-- claimers that look at once take different tenants, in turn order (the filter runs lazily, up
-- to the first lock it gets); when every one is being claimed by others, it waits for the first
-- in turn, but only while it holds no lock of its own (two claimers that each held one and waited
-- for the other's would deadlock). The tenant's turn moves to the back.
-- The rule of which jobs are ready moves from the view claimable_jobs (0004, 0008) into
-- claim_batch, in two parts read in the claim's order from their own indexes, so that a claim
-- stops after the jobs it takes instead of reading (and sorting) a full sync's whole backlog.
DROP VIEW claimable_jobs;
-- in the order of a claim, ties by id (a run queues its jobs with one timestamp)
CREATE INDEX jobs_tenant_due ON jobs (tenant_id, kind, priority, run_at, id) WHERE state = 'waiting';
DROP INDEX jobs_tenant_ready;

CREATE FUNCTION claim_batch(
    p_kind text, p_limit integer, p_lease float8, p_worker text, p_tenant bigint,
    p_tenant_workers integer, p_run_workers integer
) RETURNS TABLE (id bigint, tenant_id bigint, kind text, key text, payload jsonb,
                 attempts integer, max_attempts integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    tried bigint[] := '{}';
    turn record;
    claimed integer;
BEGIN
    LOOP
        WITH turns AS MATERIALIZED (
            SELECT t.id AS tenant_id, best.priority
            FROM tenants t
            CROSS JOIN LATERAL (
                SELECT min(urgent.priority) AS priority FROM (
                    (SELECT j.priority FROM jobs j
                     WHERE j.tenant_id = t.id AND j.kind = p_kind AND j.state = 'waiting'
                       AND j.run_at <= now()
                     ORDER BY j.priority LIMIT 1)
                    UNION ALL
                    (SELECT j.priority FROM jobs j
                     WHERE j.tenant_id = t.id AND j.kind = p_kind AND j.state = 'running'
                       AND j.locked_until < now()
                     ORDER BY j.priority LIMIT 1)
                ) urgent
            ) best
            LEFT JOIN job_turns turn ON turn.tenant_id = t.id AND turn.kind = p_kind
            WHERE best.priority IS NOT NULL AND (p_tenant IS NULL OR t.id = p_tenant)
              AND t.id <> ALL(tried)
              AND (SELECT count(DISTINCT j.claim) FROM jobs j
                   WHERE j.tenant_id = t.id AND j.kind = p_kind AND j.state = 'running'
                     AND j.locked_until >= now() AND j.priority = best.priority
                     AND NOT EXISTS (SELECT 1 FROM bridge_processes p
                                     WHERE p.id = j.locked_by AND p.expires_at < now()))
                  < CASE WHEN best.priority = 0 THEN p_tenant_workers ELSE p_run_workers END
            ORDER BY best.priority, turn.served_at NULLS FIRST, t.id
        )
        SELECT x.tenant_id, x.priority INTO turn FROM (
            (SELECT tenant_id, priority FROM turns
             WHERE pg_try_advisory_xact_lock(hashtext('claim:' || p_kind), tenant_id::integer) LIMIT 1)
            UNION ALL
            (SELECT tenant_id, priority FROM turns
             WHERE cardinality(tried) = 0
               AND pg_advisory_xact_lock(hashtext('claim:' || p_kind), tenant_id::integer) IS NOT NULL
             LIMIT 1)
            LIMIT 1
        ) x;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        -- The pick: counted again now that the lock is held.
        RETURN QUERY
        WITH busy AS (
            SELECT count(DISTINCT j.claim) AS batches FROM jobs j
            WHERE j.tenant_id = turn.tenant_id AND j.kind = p_kind AND j.state = 'running'
              AND j.locked_until >= now() AND j.priority = turn.priority
              AND NOT EXISTS (SELECT 1 FROM bridge_processes p
                              WHERE p.id = j.locked_by AND p.expires_at < now())
        ), candidates AS (
            -- Ready: waiting and due, or running with an expired lease (its worker died). One
            -- record, one writer: a waiting job is not ready while a job of its key runs, even
            -- one whose lease expired (that one is taken again first, alone, and only when no
            -- older job of its key runs).
            (SELECT j.id, j.run_at FROM jobs j
             WHERE j.tenant_id = turn.tenant_id AND j.kind = p_kind AND j.priority = turn.priority
               AND j.state = 'waiting' AND j.run_at <= now()
               AND NOT EXISTS (SELECT 1 FROM jobs r
                               WHERE r.tenant_id = j.tenant_id AND r.kind = j.kind
                                 AND r.key = j.key AND r.state = 'running')
             ORDER BY j.run_at, j.id LIMIT p_limit)
            UNION ALL
            (SELECT j.id, j.run_at FROM jobs j
             WHERE j.tenant_id = turn.tenant_id AND j.kind = p_kind AND j.priority = turn.priority
               AND j.state = 'running' AND j.locked_until < now()
               AND NOT EXISTS (SELECT 1 FROM jobs r
                               WHERE r.tenant_id = j.tenant_id AND r.kind = j.kind
                                 AND r.key = j.key AND r.state = 'running' AND r.id < j.id)
             ORDER BY j.run_at, j.id LIMIT p_limit)
        ), chosen AS (
            SELECT c.id FROM candidates c
            WHERE (SELECT batches FROM busy)
                  < CASE WHEN turn.priority = 0 THEN p_tenant_workers ELSE p_run_workers END
            ORDER BY c.run_at, c.id
            LIMIT p_limit
        ), picked AS (  -- locked, and looked at again as they are now (read without locks above)
            SELECT j.id FROM jobs j
            WHERE j.id IN (SELECT id FROM chosen)
              AND ((j.state = 'waiting' AND j.run_at <= now())
                   OR (j.state = 'running' AND j.locked_until < now()))
            FOR UPDATE SKIP LOCKED
        ), this_claim AS (
            SELECT nextval('job_claims') AS claim
        ), served AS (
            INSERT INTO job_turns (tenant_id, kind, served_at)
            SELECT turn.tenant_id, p_kind, clock_timestamp() WHERE EXISTS (SELECT 1 FROM picked)
            ON CONFLICT (tenant_id, kind) DO UPDATE SET served_at = excluded.served_at
        ), taken AS (
            UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1,
                            claim = (SELECT claim FROM this_claim),
                            locked_until = now() + make_interval(secs => p_lease),
                            locked_by = p_worker, updated_at = now()
            FROM picked WHERE jobs.id = picked.id
            RETURNING jobs.id, jobs.tenant_id, jobs.kind, jobs.key, jobs.payload, jobs.attempts,
                      jobs.max_attempts
        )
        SELECT * FROM taken;
        GET DIAGNOSTICS claimed = ROW_COUNT;
        IF claimed > 0 THEN
            RETURN;
        END IF;
        tried := tried || turn.tenant_id;
    END LOOP;
END
$$;

-- What a sync batch wrote, recorded in one round trip (bridge/sync/engine.py, _record): with a
-- share lock on the tenant's row, so that a switch of the synced database waits; nothing when
-- the tenant syncs another database than `database` now (database_ok false: the links would
-- point into the old one).
-- - saves: [{sf, cp, agreed, deleted_at}] in order; an older link of either record gives way
--   (one pair after the other: a later pair that shares a record wins, as it would alone);
-- - drops: the contact ids whose links go;
-- - audits: the audit rows (as write_audit takes them);
-- - synced: the records that went through: their unresolved reports are resolved and the held
--   jobs behind them go; pushed says whether Salesforce has some of them (their new status
--   follows at the next push).
CREATE FUNCTION record_batch(
    p_tenant bigint, p_database text, p_saves jsonb, p_drops text[], p_audits jsonb,
    p_synced text[]
) RETURNS TABLE (database_ok boolean, pushed boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    synced_now text;
    save record;
    resolved_pushed boolean := false;
BEGIN
    SELECT t.copernica_database INTO synced_now FROM tenants t WHERE t.id = p_tenant FOR SHARE;
    IF synced_now IS DISTINCT FROM p_database THEN
        RETURN QUERY SELECT false, false;
        RETURN;
    END IF;
    FOR save IN
        SELECT e.v ->> 'sf' AS sf, e.v ->> 'cp' AS cp, e.v -> 'agreed' AS agreed,
               (e.v ->> 'deleted_at')::timestamptz AS deleted_at
        FROM jsonb_array_elements(p_saves) WITH ORDINALITY AS e(v, n)
        ORDER BY e.n
    LOOP
        DELETE FROM links l WHERE l.tenant_id = p_tenant
          AND (l.salesforce_id = save.sf OR l.copernica_id = save.cp)
          AND NOT (l.salesforce_id = save.sf AND l.copernica_id = save.cp);
        INSERT INTO links (tenant_id, salesforce_id, copernica_id, agreed, sf_deleted_at, synced_at)
        VALUES (p_tenant, save.sf, save.cp, save.agreed, save.deleted_at, now())
        ON CONFLICT (tenant_id, salesforce_id) DO UPDATE
        SET copernica_id = excluded.copernica_id, agreed = excluded.agreed,
            sf_deleted_at = excluded.sf_deleted_at, synced_at = now();
    END LOOP;
    IF cardinality(p_drops) > 0 THEN
        DELETE FROM links l WHERE l.tenant_id = p_tenant AND l.salesforce_id = ANY(p_drops);
    END IF;
    IF jsonb_array_length(p_audits) > 0 THEN
        INSERT INTO audit_log (tenant_id, direction, salesforce_id, copernica_id, action, fields,
                               outcome, detail)
        SELECT p_tenant, d.direction, d.salesforce_id, d.copernica_id, d.action, d.fields,
               d.outcome, d.detail
        FROM jsonb_to_recordset(p_audits) AS d(direction text, salesforce_id text,
             copernica_id text, action text, fields text[], outcome text, detail jsonb);
    END IF;
    IF cardinality(p_synced) > 0 THEN
        WITH resolved AS (
            UPDATE error_reports r SET status = 'resolved', resolved_at = now(),
                                       status_pushed = (r.salesforce_id IS NULL)
            WHERE r.tenant_id = p_tenant AND r.status <> 'resolved' AND r.record_id = ANY(p_synced)
            RETURNING r.job_id, r.salesforce_id IS NOT NULL AS was_pushed
        ), gone AS (
            DELETE FROM jobs j USING resolved x
            WHERE j.id = x.job_id AND j.tenant_id = p_tenant AND j.state = 'held'
        )
        SELECT coalesce(bool_or(was_pushed), false) INTO resolved_pushed FROM resolved;
    END IF;
    RETURN QUERY SELECT true, resolved_pushed;
END
$$;

-- The one way a job is stored (bridge/sync/jobs.py, JobQueue.enqueue; a stream's delivery, a
-- webhook's change): a waiting job with the same tenant+kind+key absorbs the new payload (newer
-- keys win) and the more urgent priority (0 real time, 1 the work of a run). It is due in
-- `delay` seconds or, with a batching window of `window` seconds, when the tenant's current
-- window closes: every change of a tenant in one window is due at once and goes out in one batch
-- (the windows of tenants are staggered, so that they do not all close at the same instant).
-- Workers hear of it (NOTIFY, delivered at commit, once per transaction and kind).
CREATE FUNCTION enqueue_job(
    p_tenant bigint, p_kind text, p_key text, p_payload jsonb, p_max_attempts integer,
    p_delay float8, p_priority integer, p_window float8
) RETURNS TABLE (id bigint, inserted boolean)
LANGUAGE sql VOLATILE AS $$
    WITH job AS (
        INSERT INTO jobs (tenant_id, kind, key, payload, max_attempts, run_at, priority)
        VALUES (p_tenant, p_kind, p_key, p_payload, p_max_attempts,
                CASE WHEN p_window > 0
                     THEN to_timestamp(
                         (floor((extract(epoch FROM now()) + (p_tenant % 89) * p_window / 89)
                                / p_window) + 1) * p_window
                         - (p_tenant % 89) * p_window / 89)
                     ELSE now() + make_interval(secs => p_delay) END,
                p_priority)
        ON CONFLICT (tenant_id, kind, key) WHERE state = 'waiting'
        DO UPDATE SET payload = jobs.payload || excluded.payload,
                      run_at = least(jobs.run_at, excluded.run_at),
                      priority = least(jobs.priority, excluded.priority),
                      updated_at = now()
        RETURNING jobs.id, (jobs.xmax = 0) AS inserted
    )
    SELECT job.id, job.inserted FROM job CROSS JOIN LATERAL (SELECT pg_notify('bridge_jobs', p_kind)) n
$$;

-- A verified Copernica webhook delivery in one round trip (bridge/sync/ingest.py,
-- store_copernica): remember its key until `seconds` from now and, with a `key`, store its job
-- (enqueue_job, due when the batching window closes). False, and nothing stored: the same
-- delivery was accepted before and its time is not up yet (a replay).
CREATE FUNCTION store_webhook_delivery(
    p_tenant bigint, p_delivery bytea, p_seconds float8, p_kind text, p_key text,
    p_payload jsonb, p_max_attempts integer, p_window float8
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO webhook_deliveries (tenant_id, delivery, expires_at)
    VALUES (p_tenant, p_delivery, now() + make_interval(secs => p_seconds))
    ON CONFLICT (tenant_id, delivery) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE webhook_deliveries.expires_at < now();
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_key IS NOT NULL THEN
        PERFORM enqueue_job(p_tenant, p_kind, p_key, p_payload, p_max_attempts, 0, 0, p_window);
    END IF;
    RETURN true;
END
$$;
