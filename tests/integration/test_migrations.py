import asyncio
import os
import re
import sys

import asyncpg
import pytest

from bridge.db import migrate, migrations, pending_migrations
from bridge.errors import ConfigError
from bridge.vocabulary import CATEGORIES, CONFLICT_RULES, DIRECTIONS, JOB_STATES, PLATFORMS


async def _schema(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY 1, 2"
    )
    return [(r[0], r[1]) for r in rows]


async def test_migrating_twice_changes_nothing(new_database):
    url = await new_database(migrated=False)
    conn = await asyncpg.connect(url)
    try:
        assert await pending_migrations(conn) == [m.name for m in migrations()]
        first = await migrate(conn)
        schema = await _schema(conn)
        recorded = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        second = await migrate(conn)
        assert first == [m.name for m in migrations()]
        assert second == []
        assert await _schema(conn) == schema
        assert await conn.fetch("SELECT version, applied_at FROM schema_migrations") == recorded
        assert await pending_migrations(conn) == []
        tables = {t for t, _ in schema}
        assert {
            "tenants",
            "users",
            "sessions",
            "password_resets",
            "credentials",
            "links",
            "jobs",
            "stream_state",
            "watermarks",
            "sync_runs",
            "error_reports",
            "audit_log",
        } <= tables
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once_both_succeed(new_database):
    url = await new_database(migrated=False)
    env = {**os.environ, "DATABASE_URL": url}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.cli",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outputs = sorted(out.decode().strip() for out, _ in results)
    assert outputs[0].startswith("applied: 0001_init")
    assert outputs[1] == "database is up to date"
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(migrations())
    finally:
        await conn.close()


def test_an_installation_without_migrations_fails_loudly(tmp_path):
    with pytest.raises(ConfigError, match="no migrations found"):
        migrations(tmp_path)


async def test_error_reports_take_every_category_and_no_other(pool, tenant):
    async with pool.acquire() as conn:
        for category in CATEGORIES:
            await conn.execute(
                "INSERT INTO error_reports (tenant_id, category, operation, message)"
                " VALUES ($1, $2, 'update', 'x')",
                tenant.id, category,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO error_reports (tenant_id, category, operation, message)"
                " VALUES ($1, 'misc', 'update', 'x')",
                tenant.id,
            )


async def test_the_schema_checks_the_words_of_the_vocabulary(pool):
    """Every CHECK (column IN (...)) on a word of bridge.vocabulary lists exactly its words."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT conrelid::regclass::text AS tab, pg_get_constraintdef(oid) AS def"
            " FROM pg_constraint WHERE contype = 'c'"
        )
    checks = {}
    for row in rows:
        column = re.match(r"CHECK \(+\(?(\w+)", row["def"])
        if column:
            checks[(row["tab"], column.group(1))] = set(re.findall(r"'(\w+)'", row["def"]))
    assert checks[("tenants", "direction")] == set(DIRECTIONS)
    assert checks[("tenants", "conflict_rule")] == set(CONFLICT_RULES)
    assert checks[("jobs", "state")] == set(JOB_STATES)
    assert checks[("error_reports", "category")] == set(CATEGORIES)
    assert checks[("api_usage", "platform")] == set(PLATFORMS)
