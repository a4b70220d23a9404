"""The housekeeping that erases the details of audit rows past the retention window reads the
rows that still keep one, not the whole history the bridge ever wrote."""

from __future__ import annotations

from bridge.db import QUERIES, create_pool
from bridge.tenants import create_tenant


async def test_the_audit_retention_reads_only_rows_that_keep_a_detail(new_database) -> None:
    url = await new_database()
    pool = await create_pool(url, max_size=2)
    try:
        tenant = await create_tenant(pool, "history")
        async with pool.acquire() as conn:
            await conn.execute(  # months of writes, their details erased long ago, and a conflict
                "INSERT INTO audit_log (tenant_id, direction, salesforce_id, copernica_id, action,"
                " fields, outcome, detail, at)"
                " SELECT $1, 'sf_to_cp', '003G' || g, g::text, 'update', ARRAY['Email'], 'ok',"
                " CASE WHEN g = 1 THEN '{\"Email\": \"ann@example.com\"}'::jsonb END,"
                " now() - make_interval(days => 31, secs => g)"
                " FROM generate_series(1, 100000) g", tenant.id
            )
            await conn.execute("ANALYZE audit_log")
            plan = await conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                + QUERIES["erase_old_audit_values"].replace("$1", "30")
            )
            left = await conn.fetchval("SELECT count(*) FROM audit_log WHERE detail IS NOT NULL")
        pages = plan[0]["Plan"]["Shared Hit Blocks"] + plan[0]["Plan"]["Shared Read Blocks"]
        assert left == 0  # the conflict's values are erased
        assert pages < 50, pages  # not the ~1,600 pages of the whole log
    finally:
        await pool.close()
