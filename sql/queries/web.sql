-- The web pages: accounts (users, sessions, password resets, login throttling), config, tab, dashboard.

-- name: user_by_email
SELECT * FROM users WHERE lower(email) = lower($1);

-- name: user_by_id
SELECT * FROM users WHERE id = $1 AND tenant_id = $2;

-- name: set_password
UPDATE users SET password_hash = $3, password_changed_at = now() WHERE id = $1 AND tenant_id = $2;

-- name: create_session
INSERT INTO sessions (id_hash, user_id, tenant_id, csrf_token, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5));

-- name: live_session
-- The session behind a cookie (by hash), its user and tenant; touching it slides last_seen_at.
UPDATE sessions s SET last_seen_at = now()
FROM users u, tenants t
WHERE s.id_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
  AND u.id = s.user_id AND t.id = s.tenant_id AND u.tenant_id = s.tenant_id
RETURNING s.id_hash, s.user_id, s.tenant_id, s.csrf_token, u.email, u.role, t.slug AS tenant_slug,
          t.name AS tenant_name, t.salesforce_domain;

-- name: set_salesforce_domain
UPDATE tenants SET salesforce_domain = $2 WHERE id = $1;

-- name: user_sessions
-- The sessions of a user still open, most recently used first (the account page).
SELECT id_hash, created_at, last_seen_at, expires_at FROM sessions
WHERE user_id = $1 AND tenant_id = $2 AND revoked_at IS NULL AND expires_at > now()
ORDER BY last_seen_at DESC;

-- name: revoke_session
UPDATE sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL;

-- name: revoke_user_sessions
UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL AND id_hash <> $2;

-- name: void_password_resets
-- A new reset link, a used one or a changed password ends every link still outstanding.
UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL;

-- name: create_password_reset
INSERT INTO password_resets (token_hash, user_id, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3));

-- name: recent_password_resets
SELECT count(*) FROM password_resets WHERE user_id = $1 AND created_at > now() - make_interval(secs => $2);

-- name: use_password_reset
-- Marks the token used in the same statement that checks it: a token works once.
UPDATE password_resets SET used_at = now()
WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
RETURNING user_id;

-- name: check_password_reset
SELECT user_id FROM password_resets WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now();

-- name: user_for_reset
SELECT id, tenant_id FROM users WHERE id = $1;

-- name: lock_login_attempts
-- Attempts on one address, or from one client, take turns until their transaction ends.
-- 0x6c6f6731/2 ("log1", "log2") keep these locks apart from the bridge's other advisory locks.
SELECT pg_advisory_xact_lock(x'6c6f6731'::int, hashtext(lower($1))),
       pg_advisory_xact_lock(x'6c6f6732'::int, hashtext($2));

-- name: login_attempts
-- Counted attempts within the window: for this address from this client, from this client for
-- any address, for this address from any client; and every attempt of the last minute.
SELECT
    count(*) FILTER (WHERE email = lower($1) AND client = $2) AS pair,
    max(at) FILTER (WHERE email = lower($1) AND client = $2) AS pair_last,
    count(*) FILTER (WHERE client = $2) AS client,
    max(at) FILTER (WHERE client = $2) AS client_last,
    count(*) FILTER (WHERE email = lower($1)) AS address,
    max(at) FILTER (WHERE email = lower($1)) AS address_last,
    (SELECT count(*) FROM login_failures WHERE at > now() - interval '1 minute') AS last_minute
FROM login_failures
WHERE (email = lower($1) OR client = $2) AND at > now() - make_interval(secs => $3);

-- name: record_login_attempt
INSERT INTO login_failures (email, client) VALUES (lower($1), $2);

-- name: clear_login_failures
DELETE FROM login_failures WHERE email = lower($1) AND client = $2;

-- name: forget_old_login_failures
DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1);

-- name: tenant_webhooks
SELECT copernica_webhooks FROM tenants WHERE id = $1;

-- name: set_tenant_webhooks
UPDATE tenants SET copernica_webhooks = $2 WHERE id = $1;

-- name: record_emailing_send
INSERT INTO emailing_sends (tenant_id, product, emailing_id, content_id, content_name, target_type,
                            target_id, target_name, sent_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id;

-- name: recent_emailing_sends
SELECT * FROM emailing_sends WHERE tenant_id = $1 ORDER BY sent_at DESC, id DESC LIMIT $2;

-- name: changes_per_hour
-- Audit-log entries per hour (UTC) and direction over the last $2 hours (hours without changes
-- absent); the hours that are over are counted once (migration 0020).
SELECT * FROM changes_per_hour($1, $2);

-- name: api_usage_today
SELECT platform, calls, used, max FROM api_usage WHERE tenant_id = $1 AND day = current_date;
