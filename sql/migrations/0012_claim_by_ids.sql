-- claim_batch as in 0011, but the jobs it chose are locked by their ids, looked up once: as
-- `id IN (chosen)` the planner, misled by the statistics of a jobs table that had just grown from
-- nothing (a first full sync), joined every waiting job of the tenant against the choice made again
-- for each of them: with 2,000 queued a claim took 6 s of PostgreSQL's CPU, holding the tenant's
-- claim lock, and the other claimers waited behind it.
CREATE OR REPLACE FUNCTION claim_batch(
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
            WHERE j.id = ANY (ARRAY(SELECT id FROM chosen))
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
