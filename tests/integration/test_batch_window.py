"""The batching window against a real PostgreSQL: the changes of a tenant that arrive within one
window are due together, so they go out in one batch; an idle worker wakes when they are due."""

import asyncio
import secrets

from bridge.sync.jobs import JobQueue, Waker
from bridge.tenants import create_tenant


async def _new_tenant(pool) -> int:
    return (await create_tenant(pool, f"t-{secrets.token_hex(5)}")).id


async def _due(pool, tenant_id: int, kind: str) -> set:
    async with pool.acquire() as conn:
        return {r["run_at"] for r in await conn.fetch(
            "SELECT run_at FROM jobs WHERE tenant_id = $1 AND kind = $2", tenant_id, kind
        )}


async def test_changes_of_one_window_are_due_at_once_and_claimed_as_one_batch(pool):
    kind, tenant = f"test-{secrets.token_hex(4)}", await _new_tenant(pool)
    queue = JobQueue(pool, batch_window=2.0)
    async with pool.acquire() as conn, conn.transaction():  # one now(): inside one window
        for n in range(10):
            await queue.enqueue(tenant, kind, f"cp:{n}", {"cp_at": 1.0}, batched=True, conn=conn)
    [window_end] = await _due(pool, tenant, kind)
    assert await queue.claim(kind, 200) == []  # not before the window closes
    due = await queue.next_due(kind)
    assert due is not None and 0 < due <= 2.0
    waker = Waker(pool, poll_interval=60.0)  # the poll alone would come much later
    await asyncio.wait_for(waker.wait(kind, due), 10)
    batch = await queue.claim(kind, 200)
    assert len(batch) == 10
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT now() >= $1::timestamptz", window_end)


async def test_a_change_that_is_not_batched_is_due_at_once(pool):
    kind, tenant = f"test-{secrets.token_hex(4)}", await _new_tenant(pool)
    queue = JobQueue(pool, batch_window=2.0)
    await queue.enqueue(tenant, kind, "sf:1", {"sf_at": 1.0})
    assert [job.key for job in await queue.claim(kind, 200)] == ["sf:1"]
    assert await queue.next_due(kind) is None


async def test_windows_of_tenants_close_at_different_instants(pool):
    kind = f"test-{secrets.token_hex(4)}"
    queue = JobQueue(pool, batch_window=5.0)
    tenants = [await _new_tenant(pool) for _ in range(3)]
    ends = set()
    for tenant in tenants:
        await queue.enqueue(tenant, kind, "cp:1", {}, batched=True)
        ends |= await _due(pool, tenant, kind)
    assert len(ends) == 3  # staggered: not every tenant's batch at the same instant
