-- Tenants, users and credentials.

-- name: create_tenant
INSERT INTO tenants (slug, name, hook_token) VALUES ($1, $2, $3) RETURNING *;

-- name: list_tenants
SELECT t.*, (SELECT count(*) FROM users u WHERE u.tenant_id = t.id) AS users
FROM tenants t ORDER BY t.id;

-- name: tenant_by_slug
SELECT * FROM tenants WHERE slug = $1;

-- name: create_user
INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, $2, $3, $4) RETURNING id;

-- name: store_credentials
INSERT INTO credentials (tenant_id, platform, ciphertext) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, platform) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = now();

-- name: load_credentials
SELECT ciphertext FROM credentials WHERE tenant_id = $1 AND platform = $2;

-- name: all_credentials_for_update
SELECT tenant_id, platform, ciphertext FROM credentials ORDER BY tenant_id, platform FOR UPDATE;

-- name: replace_credentials
UPDATE credentials SET ciphertext = $3, updated_at = now() WHERE tenant_id = $1 AND platform = $2;

-- name: tenant_by_id
SELECT * FROM tenants WHERE id = $1;

-- name: tenant_and_credentials_saved
-- The tenant and when its credentials of each platform were saved (NULL: never), in one look.
SELECT t.*,
       (SELECT updated_at FROM credentials c
        WHERE c.tenant_id = t.id AND c.platform = 'salesforce') AS salesforce_saved_at,
       (SELECT updated_at FROM credentials c
        WHERE c.tenant_id = t.id AND c.platform = 'copernica') AS copernica_saved_at
FROM tenants t WHERE t.id = $1;

-- name: update_tenant_settings
UPDATE tenants SET name = $2, direction = $3, apply_deletes = $4, auto_sync = $5,
                   conflict_rule = $6, copernica_database = $7, link_field = $8,
                   copernica_timezone = $9
WHERE id = $1 RETURNING *;

-- name: tenant_by_hook_token
SELECT * FROM tenants WHERE hook_token = $1;

-- name: lock_tenant_settings
-- The settings version of tenant $1, its row locked against changes until the transaction ends.
SELECT settings_version FROM tenants WHERE id = $1 FOR SHARE;

