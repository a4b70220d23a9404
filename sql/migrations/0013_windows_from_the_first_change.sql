-- enqueue_job as in 0011, with two changes.
-- - A tenant's batching window opens with its first waiting change and closes `window` seconds
--   later; the changes that come meanwhile join it. Windows aligned to the clock (0011) cut a
--   burst at every boundary: a burst of 0.6 s touched 4 windows of 0.2 s, one Salesforce call
--   each, where 3 do. Windows of tenants still close at different instants: when each opened.
-- - A job that is not due yet says when it will be: the notification's payload is the kind, then
--   a space and the Unix time the job is due. A worker woken by every webhook of a window would
--   claim nothing (the window is still open) and ask when to look again, a few hundred times a
--   second in a burst; the waker instead wakes its workers once, when the window closes
--   (bridge/sync/jobs.py, Waker).
CREATE OR REPLACE FUNCTION enqueue_job(
    p_tenant bigint, p_kind text, p_key text, p_payload jsonb, p_max_attempts integer,
    p_delay float8, p_priority integer, p_window float8
) RETURNS TABLE (id bigint, inserted boolean)
LANGUAGE sql VOLATILE AS $$
    WITH job AS (
        INSERT INTO jobs (tenant_id, kind, key, payload, max_attempts, run_at, priority)
        VALUES (p_tenant, p_kind, p_key, p_payload, p_max_attempts,
                CASE WHEN p_window > 0
                     THEN coalesce(
                         (SELECT min(w.run_at) FROM jobs w
                          WHERE w.tenant_id = p_tenant AND w.kind = p_kind AND w.state = 'waiting'
                            AND w.priority = 0 AND w.run_at > now()
                            AND w.run_at <= now() + make_interval(secs => p_window)),
                         now() + make_interval(secs => p_window))
                     ELSE now() + make_interval(secs => p_delay) END,
                p_priority)
        ON CONFLICT (tenant_id, kind, key) WHERE state = 'waiting'
        DO UPDATE SET payload = jobs.payload || excluded.payload,
                      run_at = least(jobs.run_at, excluded.run_at),
                      priority = least(jobs.priority, excluded.priority),
                      updated_at = now()
        RETURNING jobs.id, (jobs.xmax = 0) AS inserted, jobs.run_at
    )
    SELECT job.id, job.inserted FROM job CROSS JOIN LATERAL (
        SELECT pg_notify('bridge_jobs', CASE WHEN job.run_at > now()
                                             THEN p_kind || ' ' || extract(epoch FROM job.run_at)
                                             ELSE p_kind END)
    ) n
$$;
