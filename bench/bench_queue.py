"""The job queue as a first full sync grows it: milliseconds per claim of a batch and per record
of a batch's links, by the size of the tables, on one connection that made its plans while the
tables were empty (as a worker's pooled connection does when a tenant's first full sync starts).

A claim or a record that grows with the table makes a full sync slow down as it goes (and holds
the tenant's claim lock for as long); flat is what the queue must be. The jobs are put in the
table directly (as a full sync's scan stores them, many at once); claims, completions and
records are the bridge's own statements (``claim_batch``, ``complete_jobs``, ``record_batch``).
Numbers only, no assertions.
"""

from __future__ import annotations

import statistics
import time

from bench.harness import Postgres
from bridge.cli import run_loop
from bridge.db import QUERIES, Conn, create_pool
from bridge.tenants import create_tenant
from bridge.vocabulary import SYNC

STEPS = 5  # sizes measured
JOBS_PER_STEP = 8_000  # jobs added before each measure (of which the claims take 1,000)
LINKS_PER_STEP = 2_000  # links recorded between measures
BATCH = 50


async def claims(conn: Conn, tenant: int) -> list[tuple[int, float]]:
    """(jobs waiting, ms per claim of BATCH) at each step."""
    for _ in range(8):  # plans made on the empty table
        await conn.fetch(QUERIES["claim_batch"], SYNC, BATCH, 60.0, "bench", None, 2, 1)
    rows = []
    for step in range(STEPS):
        await conn.execute(
            "INSERT INTO jobs (tenant_id, kind, key, payload, max_attempts, priority)"
            " SELECT $1, $2, 'sf:' || $3 || ':' || g, '{}'::jsonb, 5, 1"
            " FROM generate_series(1, $4) g",
            tenant, SYNC, str(step), JOBS_PER_STEP,
        )
        times = []
        for _ in range(20):
            started = time.perf_counter()
            taken = await conn.fetch(QUERIES["claim_batch"], SYNC, BATCH, 60.0, "bench", None, 2, 1)
            times.append((time.perf_counter() - started) * 1000)
            await conn.execute(QUERIES["complete_jobs"], [job["id"] for job in taken], "bench")
        waiting = await conn.fetchval("SELECT count(*) FROM jobs WHERE state = 'waiting'")
        rows.append((waiting, statistics.median(times)))
    return rows


async def records(conn: Conn, tenant: int, database: str) -> list[tuple[int, float]]:
    """(links, ms per record of BATCH saved links) at each step."""
    rows, made = [], 0
    for _ in range(STEPS):
        times = []
        for _ in range(LINKS_PER_STEP // BATCH):
            saves = [{"sf": f"003B{made + n:014d}", "cp": str(made + n), "agreed": {"Email": "x"}}
                     for n in range(BATCH)]
            made += BATCH
            started = time.perf_counter()
            await conn.fetch(QUERIES["record_batch"], tenant, database, saves, [], [], [])
            times.append((time.perf_counter() - started) * 1000)
        rows.append((made, statistics.median(times[-10:])))
    return rows


async def run() -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    postgres = Postgres()
    await postgres.start()
    try:
        pool = await create_pool(await postgres.new_database(), max_size=1)  # one connection
        try:
            tenant = await create_tenant(pool, "bench")
            database = "1"
            async with pool.acquire() as conn:
                await conn.execute("UPDATE tenants SET copernica_database = $2 WHERE id = $1",
                                   tenant.id, database)
                return await claims(conn, tenant.id), await records(conn, tenant.id, database)
        finally:
            await pool.close()
    finally:
        await postgres.stop()


def main() -> None:
    claimed, recorded = run_loop(run())
    print(f"Job queue as a first full sync grows it (batches of {BATCH}; median ms)")
    print(f"{'jobs waiting':>14}{'claim':>10}    {'links':>10}{'record':>10}")
    for (waiting, claim), (links, record) in zip(claimed, recorded, strict=True):
        print(f"{waiting:>14}{claim:>10.2f}    {links:>10}{record:>10.2f}")


if __name__ == "__main__":
    main()
