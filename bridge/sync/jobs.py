"""The durable job queue: a PostgreSQL table, claimed with ``FOR UPDATE SKIP LOCKED``.

- ``enqueue`` coalesces: a waiting job with the same tenant + kind + key absorbs the new payload.
- ``claim`` takes up to N ready jobs of one tenant and kind under a lease; a job whose lease
  expired (its worker died) is ready again. Claims are fair: real-time changes before the work
  of runs (``priority``), tenants in turn, and no tenant with more than ``tenant_workers``
  batches of a kind running at once, across all processes, of which at most ``run_workers`` do
  the work of runs (so a full sync leaves workers free for real-time changes).
- ``fail`` retries with the shared back-off policy, or holds the job after its last attempt;
  held jobs stay visible and can be requeued. Completed jobs are deleted (their payload may hold
  customer values, which the bridge does not keep at rest).
- ``enqueue`` sends ``NOTIFY bridge_jobs`` (with the time a job waiting for its batching window
  is due); ``Waker`` listens and wakes one worker at a time, and workers poll as well.
- ``claim``'s rule of which jobs are ready lives once, in the function ``claim_batch``
  (migration 0011).
- ``release`` hands claimed jobs back untried (a process that stops mid-batch);
  ``requeue_fixed`` brings back what a platform's missing or wrong credentials held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bridge import supervise
from bridge.config import Settings
from bridge.copernica.errors import CopernicaError
from bridge.db import QUERIES, Conn, Pool, connection_trouble
from bridge.errors import ApiError, ConfigError, MappingError, NotConfigured, without_values
from bridge.retry import RetryPolicy
from bridge.salesforce.errors import SalesforceError
from bridge.security.vault import VaultError
from bridge.sync import snapshot
from bridge.vocabulary import BULK, PUSH_ERRORS, REAL_TIME, Category, Platform

log = logging.getLogger(__name__)

CHANNEL = "bridge_jobs"
# Workers look for a job that waited for its time (a batching window, a retry) this long after it
# is due: a webhook stored just as its window closed is still committing then, and would go out
# alone in a Salesforce call of its own, a moment after the window's batch.
DUE_GRACE = 0.025
ENQUEUE_SLICE = 250  # jobs of ``enqueue_many`` per round trip


@dataclass(frozen=True)
class Job:
    id: int
    tenant_id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int  # including the current one
    max_attempts: int
    settings_version: int = 0  # of its tenant when it was claimed (``Tenant.settings_version``)


@dataclass(frozen=True)
class Failure:
    """Why a job failed; ``permanent`` skips the remaining attempts (e.g. a validation error).
    Build one with ``failure_from``."""

    message: str
    category: Category = "transient"
    permanent: bool = False
    retry_after: float | None = None
    # the platform that failed (None: neither, e.g. a crash); saving its credentials requeues
    platform: Platform | None = field(default=None, compare=False)
    code: str | None = field(default=None, compare=False)  # the platform's error code (reports)


def failure_from(error: BaseException) -> Failure:
    """The one way an error becomes a job's failure.

    - ``NotConfigured`` (credentials not saved, no database chosen): ``not_configured``, held at
      once with what to do on the config page: retrying cannot help before someone does it;
    - ``ApiError``: its own category, held at once unless retryable (with the platform's
      ``retry_after``);
    - ``MappingError``: ``mapping``, held at once;
    - credentials that cannot be decrypted, keys missing (``VaultError``, ``ConfigError``):
      ``auth``, held at once;
    - anything else (a crash, a dropped database connection): ``transient``, retried.
    """
    if isinstance(error, NotConfigured):
        return Failure(
            f"{error.message}: {error.fix}", "not_configured", permanent=True,
            platform=error.platform,
        )
    if isinstance(error, ApiError):
        return Failure(
            error.summary(), error.category, permanent=not error.retryable,
            retry_after=error.retry_after, platform=platform_of(error),
            code=error.code or (f"HTTP {error.status}" if error.status else None),
        )
    if isinstance(error, MappingError):
        return Failure(str(error), "mapping", permanent=True)
    if isinstance(error, VaultError | ConfigError):
        return Failure(str(error), "auth", permanent=True)
    return Failure(f"{type(error).__name__}: {without_values(str(error))}")


def platform_of(error: BaseException) -> Platform | None:
    """The platform an error came from, when it came from one."""
    if isinstance(error, SalesforceError):
        return "salesforce"
    if isinstance(error, CopernicaError):
        return "copernica"
    if isinstance(error, NotConfigured):
        return error.platform
    return None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class JobQueue:
    pool: Pool
    retry: RetryPolicy = field(default_factory=lambda: JobQueue.retry_policy())
    lease: float = 60.0  # seconds a claimed job stays ours without a heartbeat
    worker: str = field(default_factory=worker_name)
    tenant_workers: int = 2  # batches of real-time changes of one kind one tenant may run at once, in all
    run_workers: int = 1  # batches of the work of runs (full sync, reconcile) one tenant may run at once
    batch_window: float = 0.2  # seconds a ``batched`` change waits for the others of its tenant

    @classmethod
    def configured(cls, pool: Pool, settings: Settings) -> JobQueue:
        """The queue of a process, with the limits and the window its settings give."""
        return cls(
            pool, tenant_workers=settings.tenant_workers, run_workers=settings.run_workers,
            batch_window=settings.batch_window,
        )

    @staticmethod
    def retry_policy() -> RetryPolicy:
        """The default back-off of jobs: 8 attempts, from 2 s."""
        return RetryPolicy(max_attempts=8, base=2.0)

    async def enqueue(
        self,
        tenant_id: int,
        kind: str,
        key: str,
        payload: Mapping[str, Any],
        *,
        delay: float = 0.0,
        priority: int = REAL_TIME,
        batched: bool = False,
        conn: Conn | None = None,
    ) -> int:
        """Store a job (or merge it into the waiting one with the same key); return its id.

        ``batched``: due when the tenant's ``batch_window`` closes instead of at once, so that
        the changes of a window go out together (towards Salesforce: one Collections call).
        Pass ``conn`` to enqueue inside the caller's transaction: the NOTIFY is then delivered
        at commit, so a worker never wakes for a job it cannot see yet.
        """
        async with _connection(self.pool, conn) as c:
            row = await c.fetchrow(
                QUERIES["enqueue_job"], tenant_id, kind, key, dict(payload),
                self.retry.max_attempts, delay, priority, self.batch_window if batched else 0.0,
            )
        return int(row["id"])

    async def enqueue_many(
        self,
        tenant_id: int,
        kind: str,
        jobs: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        priority: int = BULK,
        conn: Conn | None = None,
    ) -> None:
        """``enqueue`` for many (key, payload) pairs in a few round trips: the work of a run,
        so by default behind the real-time changes."""
        if not jobs:
            return
        async with _connection(self.pool, conn) as c:
            # in slices: encoding a page of 2,000 payloads at once holds the event loop
            for start in range(0, len(jobs), ENQUEUE_SLICE):
                await c.executemany(
                    QUERIES["enqueue_job"],
                    [(tenant_id, kind, key, dict(payload), self.retry.max_attempts, 0.0,
                      priority, 0.0)
                     for key, payload in jobs[start : start + ENQUEUE_SLICE]],
                )

    async def claim(self, kind: str, limit: int = 1, *, tenant_id: int | None = None) -> list[Job]:
        """Up to ``limit`` ready jobs of one tenant (``tenant_id``, or the one whose turn it is)
        and of one priority, its most urgent. A tenant with nothing to claim after all (it
        reached ``tenant_workers`` as we took its lock, its jobs wait for their records' running
        ones) is skipped for the next in turn, and so is a run's work that another worker is
        claiming right now (that worker takes it)."""
        jobs, _ = await self.claim_or_next_due(kind, limit, tenant_id=tenant_id)
        return jobs

    async def claim_or_next_due(
        self, kind: str, limit: int = 1, *, tenant_id: int | None = None
    ) -> tuple[list[Job], float | None]:
        """``claim``, in the same round trip telling a worker that claimed nothing how long it
        may sleep: the seconds until the next job of ``kind`` that waits for its time (a retry, a
        batching window) is due, None when none waits."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                QUERIES["claim_batch"], kind, limit, self.lease, self.worker, tenant_id,
                self.tenant_workers, self.run_workers,
            )
        if rows and rows[0]["id"] is None:
            return [], rows[0]["due"]
        jobs = [Job(**{name: value for name, value in row.items() if name != "due"}) for row in rows]
        jobs.sort(key=lambda job: job.id)
        return jobs, None

    async def complete(self, jobs: Sequence[Job]) -> None:
        if jobs:
            async with self.pool.acquire() as conn:
                await conn.execute(QUERIES["complete_jobs"], [j.id for j in jobs], self.worker)

    async def release(self, jobs: Sequence[Job]) -> None:
        """Hand claimed jobs back untried (this process stops): waiting again at once, the
        attempt not counted, their leases gone; one whose record has a newer waiting change
        merges into it."""
        if jobs:
            async with self.pool.acquire() as conn:
                await conn.execute(QUERIES["release_jobs"], [j.id for j in jobs], self.worker)
                await conn.execute(QUERIES["notify_jobs"], jobs[0].kind)

    async def extend(self, jobs: Sequence[Job]) -> None:
        """Heartbeat: keep the lease of long-running jobs."""
        async with self.pool.acquire() as conn:
            await conn.execute(QUERIES["extend_lease"], [j.id for j in jobs], self.worker, self.lease)

    async def fail(self, job: Job, failure: Failure) -> str:
        """Schedule a retry or hold the job; return ``"retry"`` or ``"held"``."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(QUERIES["lock_job"], job.id)
            if row is None or row["state"] != "running" or row["locked_by"] != self.worker:
                return "lost"  # our lease expired and another worker has it now
            if failure.permanent or job.attempts >= job.max_attempts:
                await conn.execute(
                    QUERIES["hold_job"], job.id, failure.message, failure.category,
                    failure.platform, snapshot.without_values(row["payload"]),
                )
                log.warning("job %s (%s %s) held: %s", job.id, job.kind, job.key, failure.message)
                return "held"
            delay = self.retry.delay(job.attempts)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            twin = await conn.fetchrow(
                QUERIES["lock_waiting_twin"], job.tenant_id, job.kind, job.key, job.id
            )
            if twin is None:
                await conn.execute(
                    QUERIES["retry_job"], job.id, delay, failure.message, failure.category,
                    failure.platform,
                )
            else:  # a newer change of the same record waits already: merge into it
                await conn.execute(
                    QUERIES["absorb_into_twin"], twin["id"], job.payload, job.attempts, delay,
                    failure.message, failure.category, failure.platform,
                )
                await conn.execute(QUERIES["delete_job"], job.id)
            return "retry"

    async def requeue(self, job_id: int, tenant_id: int) -> bool:
        """Give a held job a fresh set of attempts; False when it is not a held job of the tenant.

        A waiting twin (same record) absorbs it instead. A twin enqueued while we look is not
        seen by the look: the unique index refuses our update, and the second look finds it."""
        for _ in range(3):
            try:
                return await self._requeue(job_id, tenant_id)
            except asyncpg.UniqueViolationError:
                continue
        return False

    async def _requeue(self, job_id: int, tenant_id: int) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(QUERIES["lock_job"], job_id)
            if row is None or row["tenant_id"] != tenant_id or row["state"] != "held":
                return False
            twin = await conn.fetchrow(
                QUERIES["lock_waiting_twin"], tenant_id, row["kind"], row["key"], job_id
            )
            if twin is None:
                await conn.execute(QUERIES["requeue_job"], job_id, tenant_id)
            else:
                await conn.execute(
                    QUERIES["absorb_into_twin"], twin["id"], row["payload"], 0, 0.0, None, None,
                    None,
                )
                await conn.execute(QUERIES["delete_job"], job_id)
            await conn.execute(QUERIES["notify_jobs"], row["kind"])
            return True

    async def held(self, tenant_id: int, limit: int = 100) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch(QUERIES["held_jobs"], tenant_id, limit)

    async def counts(self) -> dict[tuple[str, str], int]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["job_counts"])
        return {(r["kind"], r["state"]): r["n"] for r in rows}


@contextlib.asynccontextmanager
async def _connection(pool: Pool, conn: Conn | None):  # type: ignore[no-untyped-def]
    if conn is not None:
        yield conn
    else:
        async with pool.acquire() as acquired:
            yield acquired


class Waker:
    """Wakes idle workers: LISTEN on a connection of its own, and a poll every
    ``poll_interval`` seconds whatever happens.

    A notification wakes one idle worker of its kind (a worker whose claim filled its batch
    wakes the next: more may wait); one that names a later due time (a change waiting for its
    batching window) wakes them when that time comes, once for all the notifications naming it.
    ``run`` keeps the listening connection (supervised: when PostgreSQL goes away it raises,
    and the supervisor starts it again with back-off). While it is down, workers find new jobs
    by polling alone, up to ``poll_interval`` late; once it is back every worker is woken, for
    the notifications missed meanwhile.
    """

    def __init__(self, pool: Pool, poll_interval: float = 5.0, check_interval: float = 10.0) -> None:
        self._pool = pool
        self.poll_interval = poll_interval
        self.check_interval = check_interval  # how often a quiet connection is pinged
        self.listening = False
        self._idle: dict[str, list[asyncio.Future[None]]] = {}  # waiting workers, by kind
        self._missed: set[str] = set()  # kinds rung while none of their workers waited
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}  # (kind, due) → wake-up
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def ring(self, kind: str) -> None:
        """Wake one idle worker of ``kind``; with none idle, the next one that would wait
        claims again at once (it may have found nothing just before the news came)."""
        waiter = next((w for w in self._idle.get(kind, []) if not w.done()), None)
        if waiter is not None:
            waiter.set_result(None)
        else:
            self._missed.add(kind)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        kind, _, due = str(payload).partition(" ")
        if not due:
            self.ring(kind)
        elif (kind, due) not in self._timers:
            delay = max(0.0, float(due) - time.time()) + DUE_GRACE
            self._timers[(kind, due)] = asyncio.get_running_loop().call_later(
                delay, self._due, kind, due
            )

    def _due(self, kind: str, due: str) -> None:
        # every idle worker: windows of tenants may close at the same instant
        del self._timers[(kind, due)]
        if not self._wake(kind):
            self._missed.add(kind)

    def _wake(self, kind: str) -> int:
        idle = [waiter for waiter in self._idle.get(kind, []) if not waiter.done()]
        for waiter in idle:
            waiter.set_result(None)
        return len(idle)

    def wake_all(self) -> None:
        """Every worker looks again, those busy now too once they are done."""
        for kind in {*self._idle, *(kind for kind, _ in self._timers)}:
            self._wake(kind)
            self._missed.add(kind)

    async def run(self) -> None:
        """Listen until the connection breaks (then raise); never returns otherwise."""
        conn = await self._pool.acquire()
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self.listening = True
            self._listening.set()
            self.wake_all()
            supervise.healthy()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.check_interval)
                if lost.is_set() or conn.is_closed():
                    raise ConnectionError("the LISTEN connection to PostgreSQL was lost")
                async with asyncio.timeout(self.check_interval):
                    await conn.fetchval(QUERIES["ping"])
        finally:
            self.listening = False
            self._listening.clear()
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    if not conn.is_closed():
                        await conn.remove_listener(CHANNEL, self._on_notify)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._pool.release(conn)

    async def start(self) -> None:
        """``run`` in a task of its own, for callers without a supervisor; returns once it
        listens (raises when it cannot)."""
        self._task = asyncio.create_task(self.run())
        ready = asyncio.create_task(self._listening.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def wait(self, kind: str, due: float | None = None) -> None:
        """Return when woken for ``kind``, when a job is ``due`` (seconds) or after the polling
        interval, whichever comes first."""
        if kind in self._missed:
            self._missed.discard(kind)
            return
        timeout = (
            self.poll_interval if due is None
            else min(self.poll_interval, max(0.0, due) + DUE_GRACE)
        )
        waiter = asyncio.get_running_loop().create_future()
        idle = self._idle.setdefault(kind, [])
        idle.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            idle.remove(waiter)


Handler = Callable[[list[Job]], Awaitable[Mapping[int, Failure] | None]]
OnHeld = Callable[[Job, Failure], Awaitable[None]]
OnOutcome = Callable[[list[Job], Mapping[int, Failure]], Awaitable[None]]


async def run_worker(
    queue: JobQueue,
    waker: Waker,
    kind: str,
    handler: Handler,
    *,
    batch_size: int = 1,
    on_held: OnHeld | None = None,
    stopping: asyncio.Event | None = None,
) -> None:
    """Claim and handle batches of ``kind`` until ``stopping`` is set (or cancelled).

    The handler returns the failures by job id (or None); jobs without a failure complete.
    A handler that raises fails the whole batch as transient. ``on_held`` hears of every job
    that ran out of attempts (the sync engine turns it into an error report).

    Database errors while claiming propagate: the supervisor restarts the worker. A batch's
    outcome that cannot be written because the database went away is written once it is back
    (tried until shortly before the batch's lease ends; after that another worker takes the
    jobs): the records it names do not wait for the lease. Cancelled mid-batch, the worker hands
    the batch back before it goes.
    """
    stopping = stopping or asyncio.Event()
    while not stopping.is_set():
        jobs, due = await queue.claim_or_next_due(kind, batch_size)
        supervise.healthy()  # the database answers
        if not jobs:
            await waker.wait(kind, due)
            continue
        if len(jobs) == batch_size:  # more may be ready: another idle worker looks too
            waker.ring(kind)
        deadline = time.monotonic() + queue.lease - SETTLE_MARGIN
        try:
            try:
                failures = dict(await handler(jobs) or {})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any crash of a handler is a retryable failure
                log.exception("handler for %s failed", kind)
                failures = {job.id: failure_from(exc) for job in jobs}
        except asyncio.CancelledError:
            await _hand_back(queue, jobs)
            raise
        await _settle(queue, jobs, failures, on_held, deadline)


SETTLE_MARGIN = 5.0  # seconds before its lease ends that a batch's outcome is given up


async def _settle(
    queue: JobQueue, jobs: list[Job], failures: Mapping[int, Failure], on_held: OnHeld | None,
    deadline: float,
) -> None:
    """Write the outcome of a batch, again and again while the database is away (writing it
    twice is harmless: a job already settled is "lost" to the second try)."""
    attempt = 0
    while True:
        try:
            await queue.complete([job for job in jobs if job.id not in failures])
            for job in jobs:
                if job.id in failures:
                    outcome = await queue.fail(job, failures[job.id])
                    if outcome == "held" and on_held is not None:
                        await on_held(job, failures[job.id])
            return
        except Exception as error:
            attempt += 1
            if not connection_trouble(error) or time.monotonic() >= deadline:
                raise
            if attempt == 1 or attempt % 20 == 0:
                log.warning(
                    "the outcome of %d %s job(s) waits for the database (%s: %s, attempt %d)",
                    len(jobs), jobs[0].kind, type(error).__name__, error, attempt,
                )
            await asyncio.sleep(min(1.0, 0.05 * 2**attempt))


async def _hand_back(queue: JobQueue, jobs: list[Job]) -> None:
    """Give a cancelled batch back within a second or two; if the database does not answer,
    the leases run out and another worker takes the jobs then."""
    try:
        async with asyncio.timeout(2.0):
            await queue.release(jobs)
        log.info("handed %d %s job(s) back", len(jobs), jobs[0].kind)
    except Exception:  # noqa: BLE001 - stopping anyway; the leases are the fallback
        log.warning("could not hand %d job(s) back; their leases will expire", len(jobs))


FIXABLE: tuple[Category, ...] = ("auth", "not_configured")


async def count_outgrown_tables(conn: Conn) -> list[str]:
    """Count anew (ANALYZE) the tables a first full sync grows that outgrew PostgreSQL's
    statistics (``outgrown_statistics``); the names of those counted. Autovacuum would, but
    only once a minute and once a tenth of the table changed, while a first full sync goes from
    nothing to 100,000 jobs and links in two minutes. One process at a time counts a table, and
    one that finds it counted meanwhile by another does not count it again."""
    counted = []
    for name in await _outgrown(conn):
        async with conn.transaction():
            if await conn.fetchval(QUERIES["take_statistics_turn"], name) and (
                name in await _outgrown(conn)
            ):
                await conn.execute(QUERIES[f"analyze_{name}"])
                counted.append(name)
    return counted


async def _outgrown(conn: Conn) -> list[str]:
    return [row["name"] for row in await conn.fetch(QUERIES["outgrown_statistics"])]


async def requeue_fixed(conn: Conn, tenant_id: int, platform: Platform) -> int:
    """``platform``'s credentials (or database) were just saved and work: the tenant's jobs
    held for ``auth`` or ``not_configured`` on that platform (or on no platform in particular)
    get a fresh set of attempts, and their open error reports are resolved, in the bridge and,
    at the next push, in Salesforce. Returns the number of jobs requeued.

    Call it after a successful save; it runs in its own transaction on ``conn``.
    """
    async with conn.transaction():
        held = await conn.fetch(QUERIES["lock_fixable_jobs"], tenant_id, list(FIXABLE), platform)
        for job in held:  # oldest first: a later one of the same record merges into it
            twin = await conn.fetchrow(
                QUERIES["lock_waiting_twin"], tenant_id, job["kind"], job["key"], job["id"]
            )
            if twin is None:
                await conn.execute(QUERIES["requeue_job"], job["id"], tenant_id)
            else:
                await conn.execute(
                    QUERIES["absorb_into_twin"], twin["id"], job["payload"], 0, 0.0, None, None,
                    None,
                )
                await conn.execute(QUERIES["delete_job"], job["id"])
        resolved = await conn.fetch(
            QUERIES["resolve_fixed_reports"], tenant_id, list(FIXABLE), platform,
            [job["id"] for job in held],
        )
        if any(r["pushed"] for r in resolved):  # the Salesforce record wants its new status
            await conn.fetchrow(
                QUERIES["enqueue_job"], tenant_id, PUSH_ERRORS, "errors", {},
                JobQueue.retry_policy().max_attempts, 0.0, REAL_TIME, 0.0,
            )
        for kind in {job["kind"] for job in held}:
            await conn.execute(QUERIES["notify_jobs"], kind)
    if held or resolved:
        log.info(
            "%s works again: %d held job(s) requeued, %d report(s) resolved",
            platform, len(held), len(resolved),
        )
    return len(held)
