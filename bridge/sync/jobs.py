"""The durable job queue: a PostgreSQL table, claimed with ``FOR UPDATE SKIP LOCKED``.

- ``enqueue`` coalesces: a waiting job with the same tenant + kind + key absorbs the new payload.
- ``claim`` takes up to N ready jobs of one tenant and kind under a lease; a job whose lease
  expired (its worker died) is ready again.
- ``fail`` retries with the shared back-off policy, or holds the job after its last attempt;
  held jobs stay visible and can be requeued. Completed jobs are deleted (their payload may hold
  customer values, which the bridge does not keep at rest).
- ``enqueue`` sends ``NOTIFY bridge_jobs``; ``Waker`` listens, and workers poll as well.
- ``claim``'s rule of which jobs are ready lives once, in the view ``claimable_jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bridge.db import QUERIES, Conn, Pool
from bridge.errors import ApiError, ConfigError, MappingError, NotConfigured
from bridge.retry import RetryPolicy
from bridge.security.vault import VaultError
from bridge.vocabulary import Category

log = logging.getLogger(__name__)

CHANNEL = "bridge_jobs"


@dataclass(frozen=True)
class Job:
    id: int
    tenant_id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int  # including the current one
    max_attempts: int


@dataclass(frozen=True)
class Failure:
    """Why a job failed; ``permanent`` skips the remaining attempts (e.g. a validation error).
    Build one with ``failure_from``."""

    message: str
    category: Category = "transient"
    permanent: bool = False
    retry_after: float | None = None


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
        return Failure(f"{error.message}: {error.fix}", "not_configured", permanent=True)
    if isinstance(error, ApiError):
        return Failure(
            error.message, error.category, permanent=not error.retryable,
            retry_after=error.retry_after,
        )
    if isinstance(error, MappingError):
        return Failure(str(error), "mapping", permanent=True)
    if isinstance(error, VaultError | ConfigError):
        return Failure(str(error), "auth", permanent=True)
    return Failure(f"{type(error).__name__}: {error}")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class JobQueue:
    pool: Pool
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=8, base=2.0))
    lease: float = 60.0  # seconds a claimed job stays ours without a heartbeat
    worker: str = field(default_factory=worker_name)

    async def enqueue(
        self,
        tenant_id: int,
        kind: str,
        key: str,
        payload: Mapping[str, Any],
        *,
        delay: float = 0.0,
        conn: Conn | None = None,
    ) -> int:
        """Store a job (or merge it into the waiting one with the same key); return its id.

        Pass ``conn`` to enqueue inside the caller's transaction: the NOTIFY is then delivered
        at commit, so a worker never wakes for a job it cannot see yet.
        """
        async with _connection(self.pool, conn) as c:
            row = await c.fetchrow(
                QUERIES["enqueue_job"], tenant_id, kind, key, dict(payload),
                self.retry.max_attempts, delay,
            )
            await c.execute(QUERIES["notify_jobs"], kind)
        return int(row["id"])

    async def enqueue_many(
        self,
        tenant_id: int,
        kind: str,
        jobs: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        conn: Conn | None = None,
    ) -> None:
        """``enqueue`` for many (key, payload) pairs in one round trip and one NOTIFY."""
        if not jobs:
            return
        async with _connection(self.pool, conn) as c:
            await c.executemany(
                QUERIES["enqueue_job"],
                [(tenant_id, kind, key, dict(payload), self.retry.max_attempts, 0.0)
                 for key, payload in jobs],
            )
            await c.execute(QUERIES["notify_jobs"], kind)

    async def claim(self, kind: str, limit: int = 1, *, tenant_id: int | None = None) -> list[Job]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                QUERIES["claim_jobs"], kind, limit, self.lease, self.worker, tenant_id
            )
        jobs = [Job(**dict(row)) for row in rows]
        jobs.sort(key=lambda job: job.id)
        return jobs

    async def complete(self, jobs: Sequence[Job]) -> None:
        if jobs:
            async with self.pool.acquire() as conn:
                await conn.execute(QUERIES["complete_jobs"], [j.id for j in jobs], self.worker)

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
                await conn.execute(QUERIES["hold_job"], job.id, failure.message, failure.category)
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
                    QUERIES["retry_job"], job.id, delay, failure.message, failure.category
                )
            else:  # a newer change of the same record waits already: merge into it
                await conn.execute(
                    QUERIES["absorb_into_twin"], twin["id"], job.payload, job.attempts, delay,
                    failure.message, failure.category,
                )
                await conn.execute(QUERIES["delete_job"], job.id)
            return "retry"

    async def requeue(self, job_id: int, tenant_id: int) -> bool:
        """Give a held job a fresh set of attempts; False when it is not a held job of the tenant."""
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
                    QUERIES["absorb_into_twin"], twin["id"], row["payload"], 0, 0.0, None, None
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

    The listening connection is not re-established: should it break, workers find new jobs by
    polling alone (up to ``poll_interval`` late) until the process restarts.
    """

    def __init__(self, pool: Pool, poll_interval: float = 5.0) -> None:
        self._pool = pool
        self.poll_interval = poll_interval
        self._events: dict[str, asyncio.Event] = {}
        self._conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record] | None = None

    def _event(self, kind: str) -> asyncio.Event:
        return self._events.setdefault(kind, asyncio.Event())

    def _on_notify(self, _conn: Conn, _pid: int, _channel: str, kind: object) -> None:
        self._event(str(kind)).set()

    async def start(self) -> None:
        self._conn = await self._pool.acquire()
        await self._conn.add_listener(CHANNEL, self._on_notify)

    async def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.remove_listener(CHANNEL, self._on_notify)
            await self._pool.release(self._conn)
            self._conn = None

    async def wait(self, kind: str) -> None:
        """Return on a NOTIFY for ``kind`` or after the polling interval, whichever comes first."""
        event = self._event(kind)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.poll_interval)
        event.clear()


Handler = Callable[[list[Job]], Awaitable[Mapping[int, Failure] | None]]
OnHeld = Callable[[Job, Failure], Awaitable[None]]


async def run_worker(
    queue: JobQueue,
    waker: Waker,
    kind: str,
    handler: Handler,
    *,
    batch_size: int = 1,
    on_held: OnHeld | None = None,
) -> None:
    """Claim and handle batches of ``kind`` forever (until cancelled).

    The handler returns the failures by job id (or None); jobs without a failure complete.
    A handler that raises fails the whole batch as transient. ``on_held`` hears of every job
    that ran out of attempts (the sync engine turns it into an error report).
    """
    while True:
        jobs = await queue.claim(kind, batch_size)
        if not jobs:
            await waker.wait(kind)
            continue
        try:
            failures = dict(await handler(jobs) or {})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any crash of a handler is a retryable failure
            log.exception("handler for %s failed", kind)
            failures = {job.id: failure_from(exc) for job in jobs}
        await queue.complete([job for job in jobs if job.id not in failures])
        for job in jobs:
            if job.id in failures:
                outcome = await queue.fail(job, failures[job.id])
                if outcome == "held" and on_held is not None:
                    await on_held(job, failures[job.id])
