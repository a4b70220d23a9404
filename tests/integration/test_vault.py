import pytest
from cryptography.fernet import Fernet

from bridge.db import create_pool
from bridge.security.vault import Vault, VaultError, demo_keys
from bridge.tenants import create_tenant

SECRET = {"username": "admin@acme.example", "password": "hunter2-very-secret", "token": "TOK123XYZ"}


async def test_credentials_table_never_holds_plaintext(pool, tenant):
    vault = Vault([Fernet.generate_key().decode()])
    async with pool.acquire() as conn:
        await vault.store(conn, tenant.id, "salesforce", SECRET)
        raw = await conn.fetchrow("SELECT * FROM credentials WHERE tenant_id = $1", tenant.id)
        assert await vault.load(conn, tenant.id, "salesforce") == SECRET
    dump = " ".join(str(v) for v in raw.values()) + bytes(raw["ciphertext"]).decode("latin-1")
    for value in SECRET.values():
        assert value not in dump


async def test_rotation_moves_everything_to_the_current_key(new_database):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    pool = await create_pool(await new_database())
    try:
        one, two = [await create_tenant(pool, name) for name in ("one", "two")]
        async with pool.acquire() as conn:
            await Vault([old]).store(conn, one.id, "copernica", {"api_token": "abc"})
            await Vault([old]).store(conn, two.id, "salesforce", {"password": "pw"})
        assert await Vault([new, old]).rotate(pool) == 2
        async with pool.acquire() as conn:
            assert await Vault([new]).load(conn, one.id, "copernica") == {"api_token": "abc"}
            assert await Vault([new]).load(conn, two.id, "salesforce") == {"password": "pw"}
            with pytest.raises(VaultError, match="rotate-keys"):
                await Vault([old]).load(conn, one.id, "copernica")
    finally:
        await pool.close()


async def test_rotation_with_a_missing_key_changes_nothing(new_database):
    lost, current = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    pool = await create_pool(await new_database())
    try:
        tenant = await create_tenant(pool, "lost-key")
        async with pool.acquire() as conn:
            await Vault([lost]).store(conn, tenant.id, "copernica", {"api_token": "abc"})
        with pytest.raises(VaultError, match="nothing was changed"):
            await Vault([current]).rotate(pool)
        async with pool.acquire() as conn:
            assert await Vault([lost]).load(conn, tenant.id, "copernica") == {"api_token": "abc"}
    finally:
        await pool.close()


def test_demo_key_is_generated_once_and_private(tmp_path):
    first = demo_keys(tmp_path)
    assert demo_keys(tmp_path) == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    Fernet(first[0].encode())
