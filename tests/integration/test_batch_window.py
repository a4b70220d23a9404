"""The batching window against a real PostgreSQL: the changes of a tenant that arrive within one
window are due together, so they go out in one batch; an idle worker wakes when they are due."""

import asyncio
import secrets
from datetime import timedelta

from bridge.sync.jobs import JobQueue, Waker, run_worker
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
    jobs, due = await queue.claim_or_next_due(kind, 200)
    assert jobs == []  # not before the window closes, and it says when
    assert due is not None and 0 < due <= 2.0
    waker = Waker(pool, poll_interval=60.0)  # the poll alone would come much later
    await asyncio.wait_for(waker.wait(kind, due), 10)
    batch = await queue.claim(kind, 200)
    assert len(batch) == 10
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT now() >= $1::timestamptz", window_end)


class CountingQueue(JobQueue):
    """The queue, counting the claims its workers make (each also tells a worker that found
    nothing when to look again)."""

    claims = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.idle = asyncio.Event()

    async def claim_or_next_due(self, kind, limit=1, *, tenant_id=None):
        self.claims += 1
        jobs, due = await super().claim_or_next_due(kind, limit, tenant_id=tenant_id)
        if not jobs:
            self.idle.set()
        return jobs, due


async def test_a_window_of_changes_wakes_its_worker_once_when_it_closes(pool):
    """Each change of a window notifies; the idle worker is not woken by each (to claim nothing
    while the window is open) but once, when the window closes, and takes them all."""
    kind, tenant = f"test-{secrets.token_hex(4)}", await _new_tenant(pool)
    queue = CountingQueue(pool, batch_window=3.0)
    waker = Waker(pool, poll_interval=60.0)  # the poll alone would come much later
    await waker.start()
    batches: list[int] = []
    done = asyncio.Event()

    async def handle(jobs):
        batches.append(len(jobs))
        if sum(batches) == 10:
            done.set()

    task = asyncio.create_task(run_worker(queue, waker, kind, handle, batch_size=200))
    try:
        await asyncio.wait_for(queue.idle.wait(), 30)  # it found nothing and goes to sleep
        for n in range(10):  # as webhooks come: one transaction, one notification each
            await queue.enqueue(tenant, kind, f"cp:{n}", {"cp_at": 1.0}, batched=True)
            await asyncio.sleep(0.05)
        windows = len(await _due(pool, tenant, kind))
        await asyncio.wait_for(done.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await waker.stop()
    assert len(batches) == windows  # one batch per window (the changes may straddle two)
    # one claim as it started; per window, the one that took it and one that found nothing more;
    # one for a window that closed just as the worker woke by itself
    assert queue.claims <= 2 * windows + 2


async def test_a_change_that_is_not_batched_is_due_at_once(pool):
    kind, tenant = f"test-{secrets.token_hex(4)}", await _new_tenant(pool)
    queue = JobQueue(pool, batch_window=2.0)
    await queue.enqueue(tenant, kind, "sf:1", {"sf_at": 1.0})
    assert [job.key for job in await queue.claim(kind, 200)] == ["sf:1"]
    assert await queue.claim_or_next_due(kind, 200) == ([], None)  # and nothing waits


async def test_a_window_opens_with_the_first_change_and_later_ones_join_it(pool):
    kind, tenant = f"test-{secrets.token_hex(4)}", await _new_tenant(pool)
    queue = JobQueue(pool, batch_window=5.0)
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT now()")
        await queue.enqueue(tenant, kind, "cp:1", {}, batched=True, conn=conn)
        after = await conn.fetchval("SELECT now()")
        await queue.enqueue(tenant, kind, "cp:2", {}, batched=True, conn=conn)  # a webhook later
    [end] = await _due(pool, tenant, kind)
    assert before + timedelta(seconds=5) <= end <= after + timedelta(seconds=5)


async def test_windows_of_tenants_close_at_different_instants(pool):
    kind = f"test-{secrets.token_hex(4)}"
    queue = JobQueue(pool, batch_window=5.0)
    tenants = [await _new_tenant(pool) for _ in range(3)]
    ends = set()
    for tenant in tenants:
        await queue.enqueue(tenant, kind, "cp:1", {}, batched=True)
        ends |= await _due(pool, tenant, kind)
    assert len(ends) == 3  # each opened with its first change: not every batch at one instant
