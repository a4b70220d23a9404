"""Fair claims against a real PostgreSQL: real-time changes before the work of runs, tenants in
turn, and no tenant with more than its share of workers."""

import asyncio
import contextlib
import secrets
import time

import pytest

from bridge.db import QUERIES, create_pool
from bridge.sync.jobs import JobQueue
from bridge.tenants import create_tenant
from bridge.vocabulary import BULK, REAL_TIME


@pytest.fixture
def kind():
    """A kind of job unique to the test, so tests never claim each other's jobs."""
    return f"test-{secrets.token_hex(4)}"


async def _new_tenant(pool) -> int:
    return (await create_tenant(pool, f"t-{secrets.token_hex(5)}")).id


async def test_a_real_time_change_goes_before_another_tenants_full_sync_backlog(pool, kind):
    busy, other = await _new_tenant(pool), await _new_tenant(pool)
    queue = JobQueue(pool)
    await queue.enqueue_many(busy, kind, [(f"sf:{n}", {"n": n}) for n in range(5000)])
    await queue.enqueue(other, kind, "sf:rt", {"sf_at": 1.0})
    started = time.monotonic()
    first = await queue.claim(kind, 200)
    took = time.monotonic() - started
    assert [(job.tenant_id, job.key) for job in first] == [(other, "sf:rt")]
    print(f"\nclaim beside a backlog of 5,000: {took * 1000:.0f} ms")


async def test_a_tenants_backlog_delays_another_tenant_by_one_batch_at_most(pool, kind):
    busy, other = await _new_tenant(pool), await _new_tenant(pool)
    queue = JobQueue(pool)
    for n in range(1000):  # a burst of real-time changes: the same priority as the other's
        await queue.enqueue(busy, kind, f"sf:{n}", {"n": n})
    batch = await queue.claim(kind, 200)
    assert {job.tenant_id for job in batch} == {busy}
    await queue.enqueue(other, kind, "sf:late", {})  # arrives while the burst drains
    await queue.complete(batch)
    [next_job] = await queue.claim(kind, 200)
    assert (next_job.tenant_id, next_job.key) == (other, "sf:late")
    again = await queue.claim(kind, 200)
    assert {job.tenant_id for job in again} == {busy} and len(again) == 200


async def test_inside_one_tenant_real_time_changes_go_before_its_full_sync(pool, kind):
    tenant = await _new_tenant(pool)
    queue = JobQueue(pool)
    await queue.enqueue_many(tenant, kind, [(f"sf:{n}", {}) for n in range(500)])
    await queue.enqueue(tenant, kind, "cp:hook", {"cp_at": 1.0})
    # a full sync's job of a record that then changes in real time is real time now
    await queue.enqueue(tenant, kind, "sf:250", {"sf_at": 2.0})
    batch = await queue.claim(kind, 10)
    assert {job.key for job in batch} == {"cp:hook", "sf:250"}  # not held up by a bulk batch
    assert len(await queue.claim(kind, 10)) == 10  # then the full sync's work
    async with pool.acquire() as conn:
        priorities = dict(await conn.fetch(
            "SELECT key, priority FROM jobs WHERE tenant_id = $1 AND key = ANY($2::text[])",
            tenant, ["cp:hook", "sf:250", "sf:499"],
        ))
    assert priorities == {"cp:hook": REAL_TIME, "sf:250": REAL_TIME, "sf:499": BULK}


@pytest.mark.parametrize("priority", [REAL_TIME, BULK])
async def test_one_tenant_never_has_more_workers_than_its_limit(database_url, pool, kind, priority):
    heavy, light = await _new_tenant(pool), await _new_tenant(pool)
    for tenant in (heavy, light):
        await JobQueue(pool).enqueue_many(
            tenant, kind, [(f"sf:{n}", {}) for n in range(2000)], priority=priority
        )
    limit = 2 if priority == REAL_TIME else 1
    pools = [await create_pool(database_url, max_size=4) for _ in range(3)]
    try:
        # twelve workers in three processes claim at the same moment, again and again
        queues = [
            JobQueue(p, worker=f"process-{n}", tenant_workers=2, run_workers=1)
            for n, p in enumerate(pools) for _ in range(4)
        ]
        for _ in range(5):
            batches = list(zip(
                queues, await asyncio.gather(*(q.claim(kind, 20) for q in queues)), strict=True
            ))
            while batch := await queues[0].claim(kind, 20):  # whatever the race left over
                batches.append((queues[0], batch))
            per_tenant = {heavy: 0, light: 0}
            for _, batch in batches:
                if batch:
                    per_tenant[batch[0].tenant_id] += 1
            assert per_tenant == {heavy: limit, light: limit}, per_tenant
            await asyncio.gather(*(q.complete(batch) for q, batch in batches))
    finally:
        for p in pools:
            await p.close()


async def test_a_dead_process_s_batches_do_not_count_against_the_tenant(pool, kind):
    tenant = await _new_tenant(pool)
    await JobQueue(pool).enqueue_many(tenant, kind, [(f"sf:{n}", {}) for n in range(100)])
    dead = JobQueue(pool, worker=f"dead-{kind}", run_workers=1)
    alive = JobQueue(pool, worker=f"alive-{kind}", run_workers=1)
    assert len(await dead.claim(kind, 10)) == 10
    assert await alive.claim(kind, 10) == []  # the tenant's full sync has its worker
    async with pool.acquire() as conn:  # that process stopped beating its heartbeat
        await conn.execute(
            "INSERT INTO bridge_processes (id, expires_at) VALUES ($1, now() - interval '1 s')",
            dead.worker,
        )
    assert len(await alive.claim(kind, 10)) == 10  # its batches wait for their leases alone


async def test_a_tenants_real_time_change_does_not_wait_for_its_own_full_sync(pool, kind):
    tenant = await _new_tenant(pool)
    queue = JobQueue(pool, tenant_workers=2, run_workers=1)
    await queue.enqueue_many(tenant, kind, [(f"sf:{n}", {}) for n in range(100)])
    assert len(await queue.claim(kind, 10)) == 10
    assert await queue.claim(kind, 10) == []  # the full sync stays at its one worker
    for n in range(2):
        await queue.enqueue(tenant, kind, f"sf:rt{n}", {"sf_at": 1.0})
        [change] = await queue.claim(kind, 1)  # beside the full-sync batch
        assert change.key == f"sf:rt{n}"
    await queue.enqueue(tenant, kind, "sf:rt2", {"sf_at": 1.0})
    assert await queue.claim(kind, 1) == []  # two batches of real-time changes run already


WAITED_TOO_LONG = 30.0  # seconds: a claim that waits for the open claim waits until it ends


@contextlib.asynccontextmanager
async def _claiming(pool, kind):
    """Another worker in the middle of claiming a run's batch: its transaction stays open (as a
    claim of 200 jobs does for 10-40 ms on a busy database) while the block runs."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch(QUERIES["claim_batch"], kind, 200, 60.0, "slow", None, 2, 1)
            assert rows[0]["id"] is not None, "the other worker claimed nothing"
            yield
        finally:
            await transaction.rollback()


async def test_a_tenants_real_time_change_is_claimed_while_its_run_batch_is_being_claimed(
    pool, kind
):
    tenant = await _new_tenant(pool)
    queue = JobQueue(pool, tenant_workers=2, run_workers=1)
    await queue.enqueue_many(tenant, kind, [(f"sf:{n}", {}) for n in range(500)])
    async with _claiming(pool, kind):
        await queue.enqueue(tenant, kind, "sf:rt", {"sf_at": 1.0})
        [change] = await asyncio.wait_for(queue.claim(kind, 10), WAITED_TOO_LONG)
        assert change.key == "sf:rt"


async def test_a_worker_does_not_wait_for_another_workers_claim_of_a_run_batch(pool, kind):
    busy, other = await _new_tenant(pool), await _new_tenant(pool)
    queue = JobQueue(pool, tenant_workers=2, run_workers=1)
    await queue.enqueue_many(busy, kind, [(f"sf:{n}", {}) for n in range(500)])
    async with _claiming(pool, kind):
        # free at once for what comes next, not held until the other claim is done
        assert await asyncio.wait_for(queue.claim(kind, 10), WAITED_TOO_LONG) == []
        await queue.enqueue(other, kind, "sf:rt", {"sf_at": 1.0})
        [change] = await asyncio.wait_for(queue.claim(kind, 10), WAITED_TOO_LONG)
        assert (change.tenant_id, change.key) == (other, "sf:rt")


async def test_a_claim_looks_at_the_tenants_with_work_not_at_every_tenant(new_database, kind):
    url = await new_database()  # of its own: the thousand tenants stay out of the other tests
    pool = await create_pool(url, max_size=2)
    try:
        async with pool.acquire() as conn:  # a hosting operator's many quiet tenants
            await conn.execute(
                "INSERT INTO tenants (slug, name, hook_token) SELECT $1 || g, $1 || g, md5($1 || g)"
                " FROM generate_series(1, 1000) g", f"quiet-{kind}-"
            )
        busy = await _new_tenant(pool)
        await JobQueue(pool).enqueue(busy, kind, "sf:rt", {"sf_at": 1.0})
        # A connection of its own: pg_stat_xact_* tell what its transaction read.
        look = await create_pool(url, min_size=1, max_size=1)
        try:
            async with look.acquire() as conn, conn.transaction():
                [job] = await conn.fetch(QUERIES["claim_batch"], kind, 10, 60.0, "w", None, 2, 1)
                read = await conn.fetchval(
                    "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0)"
                    " FROM pg_stat_xact_user_tables WHERE relname = 'tenants'"
                )
        finally:
            await look.close()
        assert job["tenant_id"] == busy
        assert read < 10, read  # the job's tenant, not the thousand without work
    finally:
        await pool.close()
