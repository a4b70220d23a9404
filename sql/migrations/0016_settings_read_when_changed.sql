-- A process reads a tenant's settings again only when they changed, not for every batch and
-- every change event: a claim answers the settings_version of the tenant of its jobs (the
-- claim_batch query), and a stream delivery is stored only when the settings it was judged by
-- are still the tenant's (ingest_stream_delivery). So that a version stands for the
-- credentials too, saving (or re-encrypting) them bumps it, as a change of the row does (0015).
CREATE FUNCTION bump_settings_version_of_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the row's own trigger makes it OLD + 1; a tenant being deleted has no row left to bump
    UPDATE tenants SET settings_version = settings_version + 1
    WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END;
    RETURN NULL;
END
$$;

CREATE TRIGGER credentials_settings_version AFTER INSERT OR UPDATE OR DELETE ON credentials
    FOR EACH ROW EXECUTE FUNCTION bump_settings_version_of_credentials();

-- A delivery of tenant p_tenant's change stream, judged by its settings p_version (NULL: no
-- judgement, as for the stream's own bookkeeping): its jobs of kind p_kind (p_jobs: [{key,
-- payload}], keys unique; due now, real time, p_attempts attempts: enqueue_job) and the replay
-- marker of channel p_channel (replay id p_replay_id of date p_replay_date; never moved back) by
-- owner p_owner. Returns the number of jobs queued, or NULL when the settings changed since
-- p_version was read: then nothing is done. The marker never moves without the jobs it covers.
CREATE FUNCTION ingest_stream_delivery(
    p_tenant bigint, p_version bigint, p_kind text, p_jobs jsonb, p_attempts integer,
    p_channel text, p_replay_id bigint, p_replay_date text, p_owner text
) RETURNS integer
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$  -- (its plans outlive a growing table: 0014)
DECLARE
    queued integer;
BEGIN
    IF p_version IS NOT NULL THEN
        PERFORM 1 FROM tenants WHERE id = p_tenant AND settings_version = p_version;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    INSERT INTO stream_state (tenant_id, channel, replay_id, replay_date, owner, updated_at)
    VALUES (p_tenant, p_channel, p_replay_id, p_replay_date, p_owner, now())
    ON CONFLICT (tenant_id, channel) DO UPDATE
    SET replay_id = greatest(stream_state.replay_id, excluded.replay_id),
        replay_date = CASE WHEN excluded.replay_id >= coalesce(stream_state.replay_id, -1)
                           THEN excluded.replay_date ELSE stream_state.replay_date END,
        owner = excluded.owner, updated_at = now();
    SELECT count(*) INTO queued
    FROM jsonb_to_recordset(p_jobs) AS j(key text, payload jsonb)
    CROSS JOIN LATERAL enqueue_job(p_tenant, p_kind, j.key, j.payload, p_attempts, 0, 0, 0) AS e;
    RETURN queued;
END
$$;
