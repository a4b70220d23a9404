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


async def test_processes_that_find_a_table_outgrown_at_once_count_it_once(new_database) -> None:
    url = await new_database()
    pool = await create_pool(url, max_size=4)

    async def count() -> list[str]:  # what one process's look at the statistics counts
        async with pool.acquire() as conn:
            return await count_outgrown_tables(conn)

    try:
        tenant = await create_tenant(pool, "growing")
        async with pool.acquire() as conn:
            await conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
            await conn.execute(
                "INSERT INTO jobs (tenant_id, kind, key, payload, max_attempts, priority)"
                " SELECT $1, 'sync', 'sf:' || g, '{}'::jsonb, 5, 1"
                " FROM generate_series(1, 1500) g", tenant.id
            )
            deadline = time.monotonic() + 30  # PostgreSQL's table counts follow within a second
            while not await conn.fetchval(  # noqa: ASYNC110 - polls PostgreSQL
                "SELECT n_live_tup >= 1500 FROM pg_stat_user_tables WHERE relname = 'jobs'"
            ) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        async with pool.acquire() as holder, holder.transaction():
            # Holds the table as a count does, so that the first process is still counting
            # when the second one looks.
            await holder.execute("LOCK TABLE jobs IN SHARE UPDATE EXCLUSIVE MODE")
            first = asyncio.create_task(count())
            while not first.done() and not await holder.fetchval(  # noqa: ASYNC110 - polls
                "SELECT count(*) > 0 FROM pg_locks WHERE relation = 'jobs'::regclass"
                " AND NOT granted"
            ):
                await asyncio.sleep(0.01)
            assert await asyncio.wait_for(count(), 30) == []  # not again, and no waiting for it
        assert await first == ["jobs"]
    finally:
        await pool.close()
