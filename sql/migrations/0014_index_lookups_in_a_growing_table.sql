-- claim_batch and record_batch find jobs and links by their keys. PL/pgSQL keeps the plans it
-- made at a function's first calls in a session; in a first full sync those were made while
-- `jobs` and `links` were nearly empty, where reading the whole table is the cheapest plan, and
-- the plans stayed while the tables grew: a claim took 48 ms with 8,000 jobs waiting and 280 ms
-- with 40,000 (holding the tenant's claim lock), a batch's record 3 ms at the start and 65 ms at
-- 10,000 links, so a full sync slowed down as it went and the other claimers waited. Planned
-- without sequential scans, and record_batch looking up the links a save replaces by whole
-- unique keys (as in 0011 otherwise), both stay flat at any size (`python -m bench queue`).
ALTER FUNCTION claim_batch(text, integer, float8, text, bigint, integer, integer) SET enable_seqscan = off;

CREATE OR REPLACE FUNCTION record_batch(
    p_tenant bigint, p_database text, p_saves jsonb, p_drops text[], p_audits jsonb,
    p_synced text[]
) RETURNS TABLE (database_ok boolean, pushed boolean)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
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
        -- Two look-ups by a whole unique key: one statement with `sf OR cp` was planned, while
        -- `links` was small, as a scan of all the tenant's links.
        DELETE FROM links l WHERE l.tenant_id = p_tenant AND l.salesforce_id = save.sf
          AND l.copernica_id <> save.cp;
        DELETE FROM links l WHERE l.tenant_id = p_tenant AND l.copernica_id = save.cp
          AND l.salesforce_id <> save.sf;
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
