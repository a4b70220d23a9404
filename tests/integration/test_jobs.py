"""The durable job queue against a real PostgreSQL."""

import asyncio
import os
import secrets
import signal
import sys
import time
from collections import Counter

import pytest

from bridge.db import QUERIES, create_pool
from bridge.retry import RetryPolicy
from bridge.sync.jobs import Failure, JobQueue, Waker, run_worker


@pytest.fixture
def kind():
    """A kind of job unique to the test, so tests never claim each other's jobs."""
    return f"test-{secrets.token_hex(4)}"


async def _count(pool, kind, state=None):
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE kind = $1 AND ($2::text IS NULL OR state = $2)",
            kind,
            state,
        )


async def test_two_workers_process_1000_jobs_exactly_once(pool, database_url, tenant, kind):
    queue = JobQueue(pool)
    ids = [await queue.enqueue(tenant.id, kind, f"record-{n}", {"n": n}) for n in range(1000)]
    assert len(set(ids)) == 1000

    seen: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()
    done = asyncio.Event()

    def handler_for(name):
        async def handle(jobs):
            await asyncio.sleep(0.001)  # let the other worker in
            for job in jobs:
                seen[job.id] += 1
                by_worker[name] += 1
            if sum(seen.values()) >= 1000:
                done.set()

        return handle

    pools = [await create_pool(database_url, max_size=3) for _ in range(2)]
    tasks, wakers = [], []
    try:
        for n, worker_pool in enumerate(pools):
            worker_queue = JobQueue(worker_pool, worker=f"worker-{n}")
            waker = Waker(worker_pool, poll_interval=0.5)
            await waker.start()
            wakers.append(waker)
            tasks.append(
                asyncio.create_task(
                    run_worker(worker_queue, waker, kind, handler_for(f"worker-{n}"), batch_size=10)
                )
            )
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.sleep(0.3)  # a duplicate would show up here
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for waker in wakers:
            await waker.stop()
        for worker_pool in pools:
            await worker_pool.close()
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1, "a job was processed twice"
    assert by_worker["worker-0"] > 0 and by_worker["worker-1"] > 0
    assert await _count(pool, kind) == 0


async def test_waiting_jobs_with_one_key_coalesce(pool, tenant, kind):
    queue = JobQueue(pool)
    first = await queue.enqueue(tenant.id, kind, "003A", {"LastName": "Old", "Email": "a@x.nl"})
    second = await queue.enqueue(tenant.id, kind, "003A", {"LastName": "New"})
    other = await queue.enqueue(tenant.id, kind, "003B", {"LastName": "B"})
    assert first == second != other
    jobs = await queue.claim(kind, 10)
    payloads = {job.key: job.payload for job in jobs}
    assert payloads == {"003A": {"LastName": "New", "Email": "a@x.nl"}, "003B": {"LastName": "B"}}


async def test_a_record_never_has_two_jobs_running(pool, tenant, kind):
    queue = JobQueue(pool)
    await queue.enqueue(tenant.id, kind, "003A", {"v": 1})
    [running] = await queue.claim(kind, 10)
    await queue.enqueue(tenant.id, kind, "003A", {"v": 2})  # arrives while the first runs
    assert await queue.claim(kind, 10) == []
    await queue.complete([running])
    [next_job] = await queue.claim(kind, 10)
    assert next_job.payload == {"v": 2}


async def test_claims_are_per_tenant(pool, tenant, kind):
    from bridge.tenants import create_tenant

    other = await create_tenant(pool, f"t-{secrets.token_hex(5)}")
    queue = JobQueue(pool)
    for n in range(3):
        await queue.enqueue(tenant.id, kind, f"a{n}", {})
        await queue.enqueue(other.id, kind, f"b{n}", {})
    batch = await queue.claim(kind, 10)
    assert len(batch) == 3 and len({job.tenant_id for job in batch}) == 1
    [first_tenant] = {job.tenant_id for job in batch}
    second_tenant = other.id if first_tenant == tenant.id else tenant.id
    rest = await queue.claim(kind, 10, tenant_id=second_tenant)
    assert [job.tenant_id for job in rest] == [second_tenant] * 3


async def test_back_off_schedule_then_hold(pool, tenant, kind):
    queue = JobQueue(pool, retry=RetryPolicy(max_attempts=3, base=10.0, cap=1000.0, jitter=0.0))
    job_id = await queue.enqueue(tenant.id, kind, "003A", {"x": 1})
    delays = []
    for attempt in (1, 2, 3):
        [job] = await queue.claim(kind)
        assert job.attempts == attempt
        outcome = await queue.fail(job, Failure("Salesforce answered 503", "transient"))
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT state, extract(epoch FROM run_at - now()) AS wait, last_error "
                "FROM jobs WHERE id = $1",
                job_id,
            )
            if outcome == "retry":
                delays.append(round(float(row["wait"])))
                await conn.execute("UPDATE jobs SET run_at = now() WHERE id = $1", job_id)
    assert delays == [10, 20]
    assert outcome == "held"
    assert row["state"] == "held" and row["last_error"] == "Salesforce answered 503"
    assert await queue.claim(kind) == []  # held jobs are kept, not retried
    [held] = await queue.held(tenant.id)
    assert held["id"] == job_id and held["error_category"] == "transient"

    assert await queue.requeue(job_id, tenant.id)
    [again] = await queue.claim(kind)
    assert again.id == job_id and again.attempts == 1


async def test_permanent_failure_holds_at_once_and_requeue_is_tenant_bound(pool, tenant, kind):
    from bridge.tenants import create_tenant

    queue = JobQueue(pool)
    job_id = await queue.enqueue(tenant.id, kind, "003A", {})
    [job] = await queue.claim(kind)
    assert (
        await queue.fail(job, Failure("LastName missing", "validation", permanent=True)) == "held"
    )
    stranger = await create_tenant(pool, f"t-{secrets.token_hex(5)}")
    assert not await queue.requeue(job_id, stranger.id)
    assert await _count(pool, kind, "held") == 1


async def test_a_requeue_racing_a_new_change_of_the_record_merges_into_it(pool, tenant, kind):
    queue = JobQueue(pool)
    held_id = await queue.enqueue(tenant.id, kind, "cp:1", {"old": 1})
    [job] = await queue.claim(kind)
    await queue.fail(job, Failure("LastName missing", "mapping", permanent=True))
    racing = await pool.acquire()
    try:
        change = racing.transaction()
        await change.start()  # a new change of the record, not committed yet: invisible
        await racing.execute(QUERIES["enqueue_job"], tenant.id, kind, "cp:1", {"new": 2}, 8, 0.0, 0, 0.0)
        requeue = asyncio.create_task(queue.requeue(held_id, tenant.id))
        async with pool.acquire() as conn:  # the requeue's update waits on the new row's key
            await wait_until(conn, "SELECT count(*) > 0 FROM pg_locks WHERE NOT granted")
        await change.commit()
        assert await asyncio.wait_for(requeue, 10)
    finally:
        await pool.release(racing)
    [merged] = await queue.claim(kind)
    assert merged.payload == {"old": 1, "new": 2} and merged.id != held_id
    assert await _count(pool, kind, "held") == 0


async def wait_until(conn, sql: str) -> None:
    while not await conn.fetchval(sql):  # noqa: ASYNC110 - polls PostgreSQL, nothing to await
        await asyncio.sleep(0.01)


async def test_a_held_job_keeps_no_customer_value(pool, tenant, kind):
    queue = JobQueue(pool)
    values = {"sf.Email": ["ann@example.com", 1.0], "sf_record": {"Id": "003A", "LastName": "Ann"}}
    job_id = await queue.enqueue(tenant.id, kind, "sf:003A", {"sf_id": "003A", **values})
    [job] = await queue.claim(kind)
    await queue.fail(job, Failure("LastName missing", "validation", permanent=True))
    async with pool.acquire() as conn:
        payload = await conn.fetchval("SELECT payload FROM jobs WHERE id = $1", job_id)
    assert "ann" not in str(payload).lower()  # held for days maybe: the values are read again
    assert payload["sf_id"] == "003A" and payload["sf_read"] is True


async def test_retry_after_is_honoured(pool, tenant, kind):
    queue = JobQueue(pool, retry=RetryPolicy(base=1.0, jitter=0.0))
    job_id = await queue.enqueue(tenant.id, kind, "k", {})
    [job] = await queue.claim(kind)
    await queue.fail(job, Failure("429", "rate_limit", retry_after=120))
    async with pool.acquire() as conn:
        wait = await conn.fetchval(
            "SELECT extract(epoch FROM run_at - now()) FROM jobs WHERE id = $1", job_id
        )
    assert 118 < float(wait) <= 120


async def test_failed_job_merges_into_a_newer_waiting_change(pool, tenant, kind):
    queue = JobQueue(pool, retry=RetryPolicy(base=0.0, jitter=0.0))
    await queue.enqueue(tenant.id, kind, "003A", {"Email": "a@x.nl", "Title": "CEO"})
    [job] = await queue.claim(kind)
    await queue.enqueue(tenant.id, kind, "003A", {"Title": "CTO"})
    await queue.fail(job, Failure("timeout"))
    [merged] = await queue.claim(kind, 10)
    assert merged.payload == {"Email": "a@x.nl", "Title": "CTO"}
    assert await _count(pool, kind) == 1


WORKER_SCRIPT = """
import asyncio, sys
from bridge.db import QUERIES, create_pool
from bridge.sync.jobs import JobQueue

async def main():
    pool = await create_pool(sys.argv[1])
    queue = JobQueue(pool, lease=1.0, worker="doomed")
    jobs = await queue.claim(sys.argv[2], 5)
    print(",".join(str(j.id) for j in jobs), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_job_of_a_killed_worker_is_claimed_after_its_lease(pool, database_url, tenant, kind):
    queue = JobQueue(pool)
    job_id = await queue.enqueue(tenant.id, kind, "003A", {"x": 1})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER_SCRIPT,
        database_url,
        kind,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == str(job_id)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert await queue.claim(kind) == []  # the lease is still running
    await asyncio.sleep(1.2)
    [job] = await queue.claim(kind)
    assert job.id == job_id and job.attempts == 2 and job.payload == {"x": 1}


async def test_a_late_worker_cannot_complete_or_fail_a_job_it_lost(pool, tenant, kind):
    slow = JobQueue(pool, lease=0.2, worker="slow")
    fast = JobQueue(pool, worker="fast")
    await slow.enqueue(tenant.id, kind, "003A", {})
    [job] = await slow.claim(kind)
    await asyncio.sleep(0.3)
    [taken] = await fast.claim(kind)
    assert await slow.fail(job, Failure("late")) == "lost"
    await slow.complete([job])
    assert await _count(pool, kind, "running") == 1
    await fast.complete([taken])
    assert await _count(pool, kind) == 0


async def test_notify_wakes_an_idle_worker_quickly(pool, tenant, kind):
    queue = JobQueue(pool)
    waker = Waker(pool, poll_interval=30.0)  # polling alone would take 30 s
    await waker.start()
    handled = asyncio.Event()
    woke_at = []

    async def handle(jobs):
        woke_at.append(time.perf_counter())
        handled.set()

    task = asyncio.create_task(run_worker(queue, waker, kind, handle))
    try:
        await asyncio.sleep(0.3)  # the worker found nothing and sleeps
        started = time.perf_counter()
        await queue.enqueue(tenant.id, kind, "k", {})
        await asyncio.wait_for(handled.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await waker.stop()
    assert woke_at[0] - started < 10  # NOTIFY, not the 30 s poll (speed is for the benchmarks)


async def test_a_crashing_handler_means_retry_not_loss(pool, tenant, kind):
    queue = JobQueue(pool, retry=RetryPolicy(base=0.05, jitter=0.0))
    waker = Waker(pool, poll_interval=0.05)
    await waker.start()
    calls = []

    async def handle(jobs):
        calls.append([j.attempts for j in jobs])
        if len(calls) == 1:
            raise RuntimeError("boom")

    job_id = await queue.enqueue(tenant.id, kind, "k", {})
    task = asyncio.create_task(run_worker(queue, waker, kind, handle))
    try:
        # Done means the job's row is gone (the second, successful call completed it).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with pool.acquire() as conn:
                if not await conn.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_id):
                    break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await waker.stop()
    assert calls == [[1], [2]]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_id) == 0


async def test_a_dead_workers_job_and_its_waiting_twin_never_run_together(pool, tenant, kind):
    dead = JobQueue(pool, lease=0.2, worker="dead")
    alive = JobQueue(pool, worker="alive")
    await dead.enqueue(tenant.id, kind, "003A", {"v": 1})
    [lost] = await dead.claim(kind)
    await alive.enqueue(tenant.id, kind, "003A", {"v": 2})  # arrives while it "runs"
    await asyncio.sleep(0.3)  # the dead worker's lease runs out
    first = await alive.claim(kind, 10)
    second = await alive.claim(kind, 10)  # e.g. the other worker, at the same moment
    assert [job.id for job in first] == [lost.id] and second == []
    await alive.complete(first)
    [twin] = await alive.claim(kind, 10)
    assert twin.payload == {"v": 2}
