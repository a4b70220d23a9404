"""A look of the status bar (every second, in every open tab and dashboard) reads what it shows,
not the tenant's history: not the audit log, nor every link and every run the tenant has; nor
does the dashboard's chart count 48 hours of the audit log at every view."""

from __future__ import annotations

from bridge.db import QUERIES, create_pool
from bridge.sync import runs
from bridge.tenants import create_tenant

READ = """SELECT relname, seq_scan, coalesce(idx_scan, 0) AS idx_scan,
                 seq_tup_read + coalesce(idx_tup_fetch, 0) AS rows_read
          FROM pg_stat_xact_user_tables WHERE relname = ANY($1::text[])"""


async def test_the_status_bar_reads_no_history(new_database) -> None:
    url = await new_database()
    pool = await create_pool(url, max_size=2)
    try:
        tenant = await create_tenant(pool, "history")
        async with pool.acquire() as conn:
            await conn.execute(  # a year of hourly runs, and 20,000 linked contacts
                "INSERT INTO sync_runs (tenant_id, kind, state, requested_by, created_at,"
                " started_at, finished_at) SELECT $1, 'reconcile', 'done', 'schedule',"
                " now() - make_interval(hours => g), now() - make_interval(hours => g),"
                " now() - make_interval(hours => g) + interval '1 minute'"
                " FROM generate_series(2, 8760) g", tenant.id
            )
            await conn.execute(
                "INSERT INTO links (tenant_id, salesforce_id, copernica_id)"
                " SELECT $1, '003G' || g, g::text FROM generate_series(1, 20000) g", tenant.id
            )
            run_id = await conn.fetchval(QUERIES["create_run"], tenant.id, "full", "admin")
            await conn.execute(QUERIES["start_run"], run_id, tenant.id, 20000)
            await conn.execute(  # what the full sync wrote
                "INSERT INTO audit_log (tenant_id, direction, salesforce_id, copernica_id, action,"
                " fields, outcome) SELECT $1, 'sf_to_cp', '003G' || g, g::text, 'create',"
                " ARRAY['Email'], 'ok' FROM generate_series(1, 20000) g", tenant.id
            )
            await conn.execute(QUERIES["finish_run"], run_id, tenant.id, "done", "done")
            await conn.execute("ANALYZE")
        # A connection of its own: pg_stat_xact_* tell what its transaction read (a connection
        # also counts what it read before, until its counts are sent on).
        look = await create_pool(url, min_size=1, max_size=1)
        try:
            async with look.acquire() as conn, conn.transaction():
                status = await runs.status(conn, tenant.id)
                finished = await conn.fetchval(QUERIES["last_run_finished"], tenant.id)  # the tab's
                read = {r["relname"]: r for r in await conn.fetch(
                    READ, ["audit_log", "error_reports", "links", "sync_runs"]
                )}
        finally:
            await look.close()
        assert "20,000 updated in Copernica, 0 in Salesforce, no errors" in status["lines"]["run"]
        assert status["last_success"] is not None and finished is not None
        audit = read.get("audit_log")
        assert audit is None or audit["seq_scan"] + audit["idx_scan"] == 0  # not at all
        for table in ("links", "sync_runs"):  # the latest run and the latest done one: a few rows
            assert table not in read or read[table]["rows_read"] < 100, dict(read[table])
    finally:
        await pool.close()


SPREAD = """INSERT INTO audit_log (tenant_id, at, direction, action, outcome)
            SELECT $1, now() - (g * interval '47 hours' / $2),
                   CASE WHEN g % 3 = 0 THEN 'cp_to_sf' ELSE 'sf_to_cp' END, 'update', 'ok'
            FROM generate_series(1, $2) g"""
COUNTED = """SELECT date_trunc('hour', at, 'UTC') AS hour, direction, count(*) AS changes
             FROM audit_log WHERE tenant_id = $1
               AND at >= date_trunc('hour', now(), 'UTC') - interval '47 hours'
             GROUP BY 1, 2"""


async def test_the_chart_counts_an_hour_that_is_over_once(new_database) -> None:
    url = await new_database()
    pool = await create_pool(url, max_size=2)
    try:
        tenant = await create_tenant(pool, "busy")
        other = await create_tenant(pool, "other")
        async with pool.acquire() as conn:
            await conn.execute(SPREAD, tenant.id, 30000)  # two days of changes
            await conn.execute(SPREAD, other.id, 500)
            await conn.execute("ANALYZE")

        async def view() -> tuple[set[tuple], int]:
            """The chart's rows, and how many audit-log rows its view read."""
            look = await create_pool(url, min_size=1, max_size=1)
            try:
                async with look.acquire() as conn, conn.transaction():
                    rows = await conn.fetch(QUERIES["changes_per_hour"], tenant.id, 48)
                    read = await conn.fetchrow(READ, ["audit_log"])
            finally:
                await look.close()
            return {tuple(r) for r in rows}, read["rows_read"] if read else 0

        async def expected() -> tuple[set[tuple], int]:
            """What counting the audit log says, and its rows since the hours a view counts
            afresh (the current one, and the last one in its first ten minutes)."""
            async with pool.acquire() as conn:
                rows = {tuple(r) for r in await conn.fetch(COUNTED, tenant.id)}
                recent = await conn.fetchval(
                    "SELECT count(*) FROM audit_log WHERE tenant_id = $1"
                    " AND at >= date_trunc('hour', now() - interval '10 minutes', 'UTC')", tenant.id
                )
            return rows, recent

        first, _ = await view()
        assert first == (await expected())[0]
        async with pool.acquire() as conn:  # changes meanwhile show at the next view
            await conn.execute(
                "INSERT INTO audit_log (tenant_id, direction, action, outcome)"
                " SELECT $1, 'sf_to_cp', 'update', 'ok' FROM generate_series(1, 3)", tenant.id
            )
        second, read = await view()
        counted, recent = await expected()
        assert second == counted and second != first
        assert read <= recent < 30000 / 10, (read, recent)  # not the two days again
    finally:
        await pool.close()
