-- The dashboard's chart counted 48 hours of the audit log at every view: 320 ms of PostgreSQL
-- for a tenant with a million changes in two days (six a second), seconds for a busier one. An
-- hour that is over is now counted once, at the first view after it, into audit_hours; a view
-- counts only the hours since (the one going on, mostly). The watermark 'audit_hours' says up to
-- when the hours are counted.
CREATE TABLE audit_hours (
    tenant_id       bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    hour            timestamptz NOT NULL,          -- its start, a whole hour of UTC
    direction       text NOT NULL,
    changes         bigint NOT NULL,
    PRIMARY KEY (tenant_id, hour, direction)
);

-- changes_per_hour(tenant, hours): the audit-log entries per hour (UTC) and direction over the
-- last `hours` hours, the current one included; hours without changes are absent.
CREATE FUNCTION changes_per_hour(p_tenant bigint, p_hours integer)
RETURNS TABLE (hour timestamptz, direction text, changes bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    shown timestamptz := date_trunc('hour', now(), 'UTC') - make_interval(hours => p_hours - 1);
    -- An entry's time is when its transaction began, which may commit a little after the hour:
    -- an hour is counted for good ten minutes after its end.
    settled timestamptz := date_trunc('hour', now() - interval '10 minutes', 'UTC');
    counted timestamptz;
BEGIN
    INSERT INTO watermarks (tenant_id, name, value) VALUES (p_tenant, 'audit_hours', shown)
    ON CONFLICT (tenant_id, name) DO NOTHING;
    SELECT greatest(w.value, shown) INTO counted FROM watermarks w
    WHERE w.tenant_id = p_tenant AND w.name = 'audit_hours' FOR UPDATE;  -- one counter at a time
    IF counted < settled THEN
        INSERT INTO audit_hours (tenant_id, hour, direction, changes)
        SELECT p_tenant, date_trunc('hour', a.at, 'UTC'), a.direction, count(*)
        FROM audit_log a WHERE a.tenant_id = p_tenant AND a.at >= counted AND a.at < settled
        GROUP BY 2, 3
        ON CONFLICT ON CONSTRAINT audit_hours_pkey DO UPDATE SET changes = excluded.changes;
        UPDATE watermarks w SET value = settled, updated_at = now()
        WHERE w.tenant_id = p_tenant AND w.name = 'audit_hours';
        DELETE FROM audit_hours h WHERE h.tenant_id = p_tenant AND h.hour < shown;
        counted := settled;
    END IF;
    RETURN QUERY
        SELECT h.hour, h.direction, h.changes FROM audit_hours h
        WHERE h.tenant_id = p_tenant AND h.hour >= shown AND h.hour < counted
        UNION ALL
        SELECT date_trunc('hour', a.at, 'UTC'), a.direction, count(*) FROM audit_log a
        WHERE a.tenant_id = p_tenant AND a.at >= counted
        GROUP BY 1, 2;
END $$;
