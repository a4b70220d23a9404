"""The sync engine at work inside a bridge process (role ``all`` or ``worker``).

Started on the app's ``cleanup_ctx``: job workers (``sync``, ``reconcile``, ``push_errors``),
the CDC stream supervisor, the scheduler of the hourly reconcile, and housekeeping (API usage
counts, audit retention). Every held job becomes an error report, pushed to Salesforce.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from bridge import logs
from bridge.config import Settings
from bridge.db import QUERIES, Pool
from bridge.errors import BridgeError
from bridge.platforms import PlatformClients
from bridge.salesforce.objects import SYNC_ERROR
from bridge.security.vault import Vault
from bridge.sync.context import Contexts, TenantContext
from bridge.sync.engine import sync_batch
from bridge.sync.jobs import (
    Failure,
    Job,
    JobQueue,
    Waker,
    failure_from,
    run_worker,
    worker_name,
)
from bridge.sync.reconcile import run_reconcile
from bridge.sync.reports import record_error, salesforce_record
from bridge.sync.runs import request_sync
from bridge.sync.statistics import push_statistics
from bridge.sync.streams import StreamSupervisor
from bridge.vocabulary import (
    PUSH_ERRORS,
    RECONCILE,
    STATISTICS,
    SYNC,
    OneWay,
    Operation,
)

log = logging.getLogger(__name__)

SCHEDULER_LOCK = 0x73636864  # one process at a time decides which runs are due
# What an error report says a held job of each kind was doing.
OPERATIONS: dict[str, Operation] = {
    SYNC: "update", RECONCILE: "reconcile", PUSH_ERRORS: "reconcile", STATISTICS: "emailing",
}


@dataclass
class SyncOptions:
    """Knobs of the runtime; the defaults are the production ones, tests make them quicker."""

    sync_workers: int = 2
    batch_size: int = 200
    poll_interval: float = 5.0
    reconcile_every: timedelta = timedelta(hours=1)
    statistics_every: float = 24 * 3600.0  # seconds between two emailing statistics runs
    scheduler_interval: float = 60.0
    takeover_interval: float = 2.0
    audit_retention_days: int = 30
    streams: bool = True  # own CDC streams (off for a one-off `bridge sync`)
    schedule: bool = True  # queue the hourly reconciles (off for a one-off `bridge sync`)


@dataclass
class SyncRuntime:
    """The workers of one process. ``platforms`` are the process's platform clients (the app
    shares its own); without them the runtime makes its own and closes them on ``stop``."""

    pool: Pool
    queue: JobQueue
    vault: Vault
    settings: Settings
    options: SyncOptions = field(default_factory=SyncOptions)
    platforms: PlatformClients | None = None

    def __post_init__(self) -> None:
        self._owns_platforms = self.platforms is None
        platforms = self.platforms or PlatformClients(self.pool, self.vault, self.settings)
        self.platforms = platforms
        self.contexts = Contexts(platforms)
        self.waker = Waker(self.pool, poll_interval=self.options.poll_interval)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.waker.start()
        spawn = self._tasks.append
        for _ in range(self.options.sync_workers):
            spawn(self._worker(SYNC, self._sync, self.options.batch_size))
        spawn(self._worker(RECONCILE, self._reconcile, 1))
        spawn(self._worker(PUSH_ERRORS, self._push_errors, 1))
        spawn(self._worker(STATISTICS, self._statistics, 1))
        if self.options.schedule:
            spawn(asyncio.create_task(self._every(self.options.scheduler_interval, self._schedule)))
        spawn(asyncio.create_task(self._every(10.0, self._housekeeping)))
        if self.options.streams:
            supervisor = StreamSupervisor(
                self.pool, self.contexts, self.queue, worker_name(),
                takeover_interval=self.options.takeover_interval,
            )
            spawn(asyncio.create_task(supervisor.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.contexts.usage.flush(self.pool)
        self.contexts.close()
        if self._owns_platforms and self.platforms is not None:
            await self.platforms.close()
        await self.waker.stop()

    def _worker(
        self, kind: str, handle: Callable[[TenantContext, list[Job]], Awaitable[Mapping[int, Failure] | None]],
        batch_size: int,
    ) -> asyncio.Task[None]:
        async def handler(jobs: list[Job]) -> Mapping[int, Failure] | None:
            tenant_id = jobs[0].tenant_id  # a claimed batch is one tenant's
            logs.tenant.set(str(tenant_id))
            try:
                context = await self.contexts.get(tenant_id)
                return await handle(context, jobs)
            except BridgeError as error:  # anything else: run_worker logs it, then the same
                failure = failure_from(error)
            return {job.id: failure for job in jobs}

        return asyncio.create_task(
            run_worker(self.queue, self.waker, kind, handler, batch_size=batch_size, on_held=self._held)
        )

    async def _sync(self, context: TenantContext, jobs: list[Job]) -> Mapping[int, Failure]:
        return await sync_batch(context, self.pool, self.queue, jobs)

    async def _reconcile(self, context: TenantContext, jobs: list[Job]) -> None:
        for job in jobs:
            await run_reconcile(context, self.pool, self.queue, job)

    async def _push_errors(self, context: TenantContext, jobs: list[Job]) -> None:
        """Copy new error reports to Salesforce (``Copernica_Sync_Error__c``), 200 per call."""
        async with self.pool.acquire() as conn:
            reports = await conn.fetch(QUERIES["unpushed_error_reports"], context.tenant.id, 200)
        if not reports:
            return
        records = [salesforce_record(r) for r in reports]
        results = await context.salesforce.create_many(SYNC_ERROR, records)
        async with self.pool.acquire() as conn:
            for report, result in zip(reports, results, strict=True):
                if result.success:
                    await conn.execute(
                        QUERIES["mark_report_pushed"], report["id"], context.tenant.id, result.id
                    )
        if len(reports) == 200:  # more are waiting
            await self.queue.enqueue(context.tenant.id, PUSH_ERRORS, "errors", {})

    async def _statistics(self, context: TenantContext, jobs: list[Job]) -> Mapping[int, Failure]:
        failures = await push_statistics(context, self.pool)
        if not failures:
            return {}
        first = next(iter(failures.values()))
        message = f"{len(failures)} emailing(s) not recorded in Salesforce: {first.message}"
        return {job.id: dataclasses.replace(first, message=message) for job in jobs}

    async def _held(self, job: Job, failure: Failure) -> None:
        """A job out of attempts is an error report; a report is pushed to Salesforce."""
        async with self.pool.acquire() as conn, conn.transaction():
            await record_error(
                conn, job.tenant_id, category=failure.category,
                operation=OPERATIONS.get(job.kind, "update"), message=failure.message,
                direction=_direction(job), record_id=job.payload.get("sf_id") or job.payload.get("cp_id"),
                job_id=job.id,
            )
            if job.kind != PUSH_ERRORS:  # a failing push must not feed itself
                await self.queue.enqueue(job.tenant_id, PUSH_ERRORS, "errors", {}, conn=conn)

    async def _schedule(self) -> None:
        """Queue the runs that are due: the first full sync of a tenant, then an hourly one."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(QUERIES["try_scheduler_lock"], SCHEDULER_LOCK):
                return
            now = datetime.now(UTC)
            for tenant in await conn.fetch(QUERIES["syncable_tenants"]):
                if not tenant["auto_sync"]:
                    continue
                last = await conn.fetchval(QUERIES["last_run_of_kind"], tenant["id"], None)
                if last is None:
                    await request_sync(self.queue, tenant["id"], "full", "scheduler", conn=conn)
                elif now - last >= self.options.reconcile_every:
                    await request_sync(self.queue, tenant["id"], "reconcile", "scheduler", conn=conn)
                # the daily statistics run: a job that waits a day, re-armed by this check
                await self.queue.enqueue(
                    tenant["id"], STATISTICS, "daily", {}, delay=self.options.statistics_every,
                    conn=conn,
                )

    async def _housekeeping(self) -> None:
        await self.contexts.usage.flush(self.pool)
        async with self.pool.acquire() as conn:
            await conn.execute(QUERIES["erase_old_audit_values"], self.options.audit_retention_days)

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await work()
            except (asyncpg.PostgresError, OSError, BridgeError):
                log.exception("periodic %s failed", work.__name__)
            await asyncio.sleep(seconds)


def _direction(job: Job) -> OneWay | None:
    if job.kind != SYNC:
        return None
    return "cp_to_sf" if job.key.startswith("cp:") else "sf_to_cp"
