-- A webhook costs one round trip to PostgreSQL: the process knows the tenant of a hook token
-- from an earlier delivery, and the statement that remembers the delivery also reads the
-- profile's link, tells an echo of the bridge's own write and stores the job. The tenant's
-- settings_version (bumped by every change of its row) tells that statement whether the
-- tenant the delivery was judged by is still the tenant's current settings; when it is not,
-- nothing is done and the delivery is judged again with the row read anew.
ALTER TABLE tenants ADD COLUMN settings_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION bump_settings_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.settings_version := OLD.settings_version + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER tenants_settings_version BEFORE UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION bump_settings_version();

-- One delivery of tenant p_tenant, judged by its settings p_version, for Copernica profile
-- p_cp_id: 'stale' (the settings changed: nothing done), 'replay' (remembered before: nothing
-- done), 'kept' (remembered; p_payload NULL: nothing to store), 'echo' (remembered; the
-- profile's live link names p_claimed and agrees on p_fingerprints, the keyed hashes of every
-- mapped field the delivery carries: the bridge's own write) or 'stored' (remembered, and its
-- job stored: keyed by the linked contact, whose id joins the payload, else by the profile; the
-- keys of bridge.sync.engine.salesforce_key and copernica_key).
CREATE FUNCTION take_webhook_delivery(
    p_tenant bigint, p_version bigint, p_delivery bytea, p_seconds float8, p_cp_id text,
    p_claimed text, p_fingerprints jsonb, p_kind text, p_payload jsonb, p_max_attempts integer,
    p_window float8
) RETURNS text
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$  -- (its plans outlive a growing table: 0014)
DECLARE
    link links%ROWTYPE;
BEGIN
    PERFORM 1 FROM tenants WHERE id = p_tenant AND settings_version = p_version;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    INSERT INTO webhook_deliveries (tenant_id, delivery, expires_at)
    VALUES (p_tenant, p_delivery, now() + make_interval(secs => p_seconds))
    ON CONFLICT (tenant_id, delivery) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE webhook_deliveries.expires_at < now();
    IF NOT FOUND THEN
        RETURN 'replay';
    END IF;
    IF p_payload IS NULL THEN
        RETURN 'kept';
    END IF;
    SELECT * INTO link FROM links WHERE tenant_id = p_tenant AND copernica_id = p_cp_id;
    IF NOT FOUND THEN
        PERFORM enqueue_job(p_tenant, p_kind, 'cp:' || p_cp_id, p_payload, p_max_attempts, 0, 0,
                            p_window);
        RETURN 'stored';
    END IF;
    IF p_fingerprints IS NOT NULL AND link.sf_deleted_at IS NULL
       AND link.salesforce_id = p_claimed AND link.agreed @> p_fingerprints THEN
        RETURN 'echo';
    END IF;
    PERFORM enqueue_job(p_tenant, p_kind, 'sf:' || link.salesforce_id,
                        p_payload || jsonb_build_object('sf_id', link.salesforce_id),
                        p_max_attempts, 0, 0, p_window);
    RETURN 'stored';
END
$$;
