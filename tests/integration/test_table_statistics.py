"""The tables a first full sync grows from nothing are counted anew as they outgrow PostgreSQL's
statistics, so that the plans made while they were empty (a scan of the whole table) are made
again as key look-ups."""

from __future__ import annotations

import asyncio
import time

from bridge.db import create_pool
from bridge.sync.jobs import count_outgrown_tables
from bridge.tenants import create_tenant


async def test_a_table_that_outgrew_its_statistics_is_counted_anew_once(new_database) -> None:
    url = await new_database()  # of its own: the session's tables hold other tests' rows
    pool = await create_pool(url, max_size=2)
    try:
        tenant = await create_tenant(pool, "growing")
        async with pool.acquire() as conn:
            for table in ("jobs", "links"):  # the bridge's counts are measured, not autovacuum's
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            assert await count_outgrown_tables(conn) == []  # empty, nothing to count
            await conn.execute(
                "INSERT INTO links (tenant_id, salesforce_id, copernica_id)"
                " SELECT $1, '003G' || g, g::text FROM generate_series(1, 1500) g", tenant.id
            )
            await conn.execute(
                "INSERT INTO jobs (tenant_id, kind, key, payload, max_attempts, priority)"
                " SELECT $1, 'sync', 'sf:' || g, '{}'::jsonb, 5, 1"
                " FROM generate_series(1, 1500) g", tenant.id
            )
        counted: set[str] = set()
        deadline = time.monotonic() + 30  # PostgreSQL's table counts follow within a second or so
        async with pool.acquire() as conn:
            while counted != {"jobs", "links"} and time.monotonic() < deadline:
                counted |= set(await count_outgrown_tables(conn))
                await asyncio.sleep(0.1)
            assert counted == {"jobs", "links"}
            assert await count_outgrown_tables(conn) == []  # counted: not outgrown any more
            sizes = await conn.fetch(
                "SELECT relname, reltuples FROM pg_class WHERE relname IN ('jobs', 'links')"
            )
        assert {r["relname"]: r["reltuples"] for r in sizes} == {"jobs": 1500, "links": 1500}
    finally:
        await pool.close()

