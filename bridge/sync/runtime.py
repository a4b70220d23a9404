"""The sync engine at work inside a bridge process (role ``all`` or ``worker``).

Started on the app's ``cleanup_ctx``: job workers (``sync``, ``reconcile``, ``push_errors``,
``statistics``), the CDC stream supervisor, the scheduler of the hourly reconcile, housekeeping
(API usage counts, audit retention), the waker's LISTEN connection and a watch on the database.
Every one of them runs under the one ``Supervisor`` (bridge/supervise.py): a task that fails is
logged, restarted with back-off and counted, and a sustained failure becomes an error report.

After an outage the bridge catches up at once instead of at the next hourly run: when the
process starts, when its database answers again and when a tenant's stream comes back, a
reconcile from the last watermark is queued (``runs.request_catch_up``).

Every held job becomes an error report, pushed to Salesforce.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bridge import logs
from bridge.config import Settings
from bridge.db import QUERIES, Pool
from bridge.errors import BridgeError
from bridge.metrics import Metrics
from bridge.platforms import PlatformClients
from bridge.security.vault import Vault
from bridge.supervise import Supervisor, TaskState
from bridge.sync import health
from bridge.sync.context import Contexts, TenantContext
from bridge.sync.engine import sync_batch
from bridge.sync.jobs import (
    Failure,
    Job,
    JobQueue,
    Waker,
    count_outgrown_tables,
    failure_from,
    run_worker,
    worker_name,
)
from bridge.sync.reconcile import run_reconcile
from bridge.sync.reports import push_reports, record_error, report_held
from bridge.sync.runs import request_catch_up, request_sync
from bridge.sync.statistics import push_statistics
from bridge.sync.streams import StreamSupervisor
from bridge.vocabulary import (
    PLATFORMS,
    PUSH_ERRORS,
    RECONCILE,
    STATISTICS,
    SYNC,
    Category,
    Operation,
)

log = logging.getLogger(__name__)

SCHEDULER_LOCK = 0x73636864  # one process at a time decides which runs are due
# What an error report says a held job of each kind was doing.
OPERATIONS: dict[str, Operation] = {
    SYNC: "update", RECONCILE: "reconcile", PUSH_ERRORS: "reconcile", STATISTICS: "emailing",
}
# Failures that say a platform is in trouble (not one record): they show in the status bar.
PLATFORM_TROUBLE: frozenset[Category] = frozenset(
    {"auth", "permission", "rate_limit", "transient", "not_configured"}
)
STALE_HEALTH = 600.0  # seconds: a "failing" line nobody refreshed is no longer true
STATISTICS_EVERY = 2.0  # seconds between looks at whether the growing tables outgrew their statistics
PROCESS_REPORT_TENANTS = 200  # a process-wide failure is told to this many tenants at most


@dataclass
class SyncOptions:
    """Knobs of the runtime; the defaults are the production ones, tests make them quicker."""

    sync_workers: int = 2
    batch_size: int = 200
    poll_interval: float = 5.0
    reconcile_every: timedelta = timedelta(hours=1)
    statistics_every: float = 24 * 3600.0  # seconds between two emailing statistics runs
    scheduler_interval: float = 60.0
    takeover_interval: float = 1.5  # seconds between two looks at the stream leases
    lease_ttl: float = 5.0  # seconds a stream lease lasts: a dead process's streams move then
    audit_retention_days: int = 30
    streams: bool = True  # own CDC streams (off for a one-off `bridge sync`)
    schedule: bool = True  # queue the hourly reconciles and the catch-ups (off for `bridge sync`)
    database_check_interval: float = 2.0  # seconds between two looks at the database
    stop_grace: float = 4.0  # seconds a stopping process lets its current batches finish
    healthy_after: float = 10.0  # a restarted task that ran this long works again
    report_after: float = 60.0  # a task failing this long is an error report


@dataclass
class SyncRuntime:
    """The workers of one process. ``platforms`` are the process's platform clients (the app
    shares its own); without them the runtime makes its own and closes them on ``stop``.
    ``supervisor`` is the app's (``/readyz`` asks it); without one the runtime makes its own."""

    pool: Pool
    queue: JobQueue
    vault: Vault
    settings: Settings
    options: SyncOptions = field(default_factory=SyncOptions)
    platforms: PlatformClients | None = None
    metrics: Metrics | None = None
    supervisor: Supervisor | None = None

    def __post_init__(self) -> None:
        self._owns_platforms = self.platforms is None
        platforms = self.platforms or PlatformClients(self.pool, self.vault, self.settings)
        self.platforms = platforms
        self.metrics = metrics = self.metrics or Metrics()
        self.supervisor = supervisor = self.supervisor or Supervisor(metrics)
        supervisor.healthy_after = self.options.healthy_after
        supervisor.report_after = self.options.report_after
        supervisor.on_failure.append(self._task_failed)
        supervisor.on_sustained.append(self._task_failing_long)
        supervisor.on_recovery.append(self._task_recovered)
        self.contexts = Contexts(platforms)
        self.waker = Waker(self.pool, poll_interval=self.options.poll_interval)
        self.stopping = asyncio.Event()
        self.database_up = True
        # Catch-ups wanted and done: one at start (whatever happened while this process was
        # down), one more each time the database answers again.
        self._catch_ups_wanted, self._catch_ups_done = 1, 0
        self._schedule_now = asyncio.Event()
        self._reports: dict[str, list[tuple[int, int]]] = {}  # task -> (tenant, report id)
        self.streams: StreamSupervisor | None = None
        self._said_working: dict[tuple[int, str], float] = {}  # when "works" was last written

    @property
    def _supervisor(self) -> Supervisor:
        assert self.supervisor is not None  # set in __post_init__
        return self.supervisor

    @property
    def _metrics(self) -> Metrics:
        assert self.metrics is not None  # set in __post_init__
        return self.metrics

    async def start(self) -> None:
        spawn = self._supervisor.spawn
        spawn("waker", self.waker.run)
        spawn("database", self._watch_database)
        for number in range(self.options.sync_workers):
            spawn(f"worker:sync:{number}", self._worker(SYNC, self._sync, self.options.batch_size),
                  kind="worker_sync")
        spawn("worker:reconcile", self._worker(RECONCILE, self._reconcile, 1), kind="worker_reconcile")
        spawn("worker:push_errors", self._worker(PUSH_ERRORS, self._push_errors, 1),
              kind="worker_push_errors")
        spawn("worker:statistics", self._worker(STATISTICS, self._statistics, 1),
              kind="worker_statistics")
        if self.options.schedule:
            spawn("scheduler", self._scheduler)
        spawn("housekeeping", functools.partial(self._every, 10.0, self._housekeeping))
        spawn("table_statistics", functools.partial(self._every, STATISTICS_EVERY, self._count_anew))
        if self.options.streams:
            self.streams = StreamSupervisor(
                self.pool, self.contexts, self.queue, worker_name(), self._supervisor,
                self._metrics, takeover_interval=self.options.takeover_interval,
                lease_ttl=self.options.lease_ttl, on_reconnect=self._stream_came_back,
            )
            spawn("streams", self.streams.run)

    async def stop(self, grace: float | None = None) -> None:
        """Stop within ``stop_grace`` + a few seconds whatever is in flight: no new claims, the
        current batches finish (or are handed back when they take longer), streams close and
        their leases go at once, the LISTEN connection goes back, API counts are written."""
        grace = self.options.stop_grace if grace is None else grace
        self.stopping.set()
        self.waker.wake_all()
        if self.streams is not None:  # first: the other processes take the streams over now
            await self._supervisor.cancel("streams", within=1.0)
            await self.streams.hand_over()
        # A sync batch is worth finishing; a reconcile run is not worth waiting for (it may be
        # draining for minutes): it is handed back, and its next worker starts it again.
        workers = [
            task for name, task in self._supervisor.tasks.items()
            if name.startswith("worker:") and name != "worker:reconcile"
        ]
        if workers:
            await asyncio.wait(workers, timeout=grace)
        await self._supervisor.stop(within=2.0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.contexts.usage.flush(self.pool)
        self.contexts.close()
        if self._owns_platforms and self.platforms is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.platforms.close()

    # --- workers ----------------------------------------------------------------------

    def _worker(
        self, kind: str, handle: Callable[[TenantContext, list[Job]], Awaitable[Mapping[int, Failure] | None]],
        batch_size: int,
    ) -> Callable[[], Awaitable[None]]:
        async def handler(jobs: list[Job]) -> Mapping[int, Failure] | None:
            tenant_id = jobs[0].tenant_id  # a claimed batch is one tenant's
            logs.tenant.set(str(tenant_id))
            try:
                context = await self.contexts.get(tenant_id, jobs[0].settings_version)
                failures = await handle(context, jobs)
            except BridgeError as error:  # anything else: run_worker logs it, then the same
                failure = failure_from(error)
                failures = {job.id: failure for job in jobs}
            if kind in (SYNC, RECONCILE):
                try:  # the status bar's line is worth a try, never the batch's outcome
                    await self._note_platforms(tenant_id, jobs, failures or {})
                except Exception as error:  # noqa: BLE001
                    log.warning("could not note the platforms' health: %s", _reason(error))
            return failures

        async def work() -> None:
            await run_worker(
                self.queue, self.waker, kind, handler, batch_size=batch_size,
                on_held=self._held, stopping=self.stopping,
            )

        return work

    async def _note_platforms(
        self, tenant_id: int, jobs: list[Job], failures: Mapping[int, Failure]
    ) -> None:
        """The status bar's "Copernica failing since …" of the sync jobs: a batch failing on a
        platform says so, a batch that went through ends it."""
        trouble = {
            f.platform: f for f in failures.values() if f.platform and f.category in PLATFORM_TROUBLE
        }
        attempts = max((j.attempts for j in jobs if j.id in failures), default=1)
        now = time.monotonic()
        async with self.pool.acquire() as conn:
            for platform in PLATFORMS:
                failure = trouble.get(platform)
                key = (tenant_id, platform)
                if failure is not None:
                    await health.failing(
                        conn, tenant_id, platform, "jobs", failure.category, attempts
                    )
                    self._said_working.pop(key, None)
                elif len(failures) < len(jobs) and now - self._said_working.get(key, -1e9) > 10:
                    await health.working(conn, tenant_id, "jobs", platform)  # went through
                    self._said_working[key] = now

    async def _sync(self, context: TenantContext, jobs: list[Job]) -> Mapping[int, Failure]:
        return await sync_batch(context, self.pool, self.queue, jobs, metrics=self.metrics)

    async def _reconcile(self, context: TenantContext, jobs: list[Job]) -> None:
        for job in jobs:
            await run_reconcile(context, self.pool, self.queue, job)

    async def _push_errors(self, context: TenantContext, jobs: list[Job]) -> None:
        await push_reports(context, self.pool, self.queue)

    async def _statistics(self, context: TenantContext, jobs: list[Job]) -> Mapping[int, Failure]:
        failures = await push_statistics(context, self.pool)
        if not failures:
            return {}
        first = next(iter(failures.values()))
        message = f"{len(failures)} emailing(s) not recorded in Salesforce: {first.message}"
        return {job.id: dataclasses.replace(first, message=message) for job in jobs}

    async def _held(self, job: Job, failure: Failure) -> None:
        """A job out of attempts is an error report; a report is pushed to Salesforce. A held
        run says so on the status bar instead of staying "queued"."""
        async with self.pool.acquire() as conn, conn.transaction():
            await report_held(conn, self.queue, job, failure, OPERATIONS.get(job.kind, "update"))
            if job.kind == RECONCILE and job.payload.get("run_id"):
                await conn.execute(
                    QUERIES["finish_run"], int(job.payload["run_id"]), job.tenant_id, "failed",
                    f"held: {failure.message}",
                )

    # --- the scheduler and catching up ------------------------------------------------

    async def _scheduler(self) -> None:
        while not self.stopping.is_set():
            await self._schedule()
            self._schedule_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._schedule_now.wait(), self.options.scheduler_interval)

    async def _schedule(self) -> None:
        """Queue the runs that are due: the first full sync of a tenant, then an hourly one;
        after an outage a catch-up at once."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(QUERIES["try_scheduler_lock"], SCHEDULER_LOCK):
                return  # another process decides now; a catch-up waits for the next look
            wanted = self._catch_ups_wanted
            catch_up = wanted > self._catch_ups_done
            now = datetime.now(UTC)
            for tenant in await conn.fetch(QUERIES["syncable_tenants"]):
                if not tenant["auto_sync"]:
                    continue
                last = await conn.fetchval(QUERIES["last_run_of_kind"], tenant["id"], None)
                if last is None:
                    await request_sync(self.queue, tenant["id"], "full", "scheduler", conn=conn)
                elif catch_up:
                    await request_catch_up(self.queue, tenant["id"], "catch-up", conn=conn)
                elif now - last >= self.options.reconcile_every:
                    await request_catch_up(self.queue, tenant["id"], "scheduler", conn=conn)
                # the daily statistics run: a job that waits a day, re-armed by this check
                await self.queue.enqueue(
                    tenant["id"], STATISTICS, "daily", {}, delay=self.options.statistics_every,
                    conn=conn,
                )
        if catch_up:
            self._catch_ups_done = wanted
            log.info("catch-up reconciles queued")

    async def _stream_came_back(self, tenant_id: int) -> None:
        """A stream that was lost is connected again: what it missed is reconciled now."""
        async with self.pool.acquire() as conn, conn.transaction():
            await request_catch_up(self.queue, tenant_id, "catch-up: stream was lost", conn=conn)

    async def _watch_database(self) -> None:
        """Look at the database every few seconds: ``bridge_database_up``; when it answers
        again, every waiting restart goes now and a catch-up is queued."""
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(max(2.0, self.options.database_check_interval)):
                    async with self.pool.acquire() as conn:
                        await conn.fetchval(QUERIES["ping"])
                up = True
            except Exception as error:  # noqa: BLE001 - any failure means: down
                up = False
                if self.database_up:
                    log.error("PostgreSQL does not answer (%s); retrying", _reason(error))
            if up and not self.database_up:
                log.warning("PostgreSQL answers again: restarting tasks and catching up")
                self._catch_ups_wanted += 1
                self._schedule_now.set()
                self._supervisor.poke()
                self.waker.wake_all()
            self.database_up = up
            self._metrics.database_up.set(1 if up else 0)
            await asyncio.sleep(self.options.database_check_interval)

    # --- housekeeping -----------------------------------------------------------------

    async def _housekeeping(self) -> None:
        await self.contexts.usage.flush(self.pool)
        async with self.pool.acquire() as conn:
            await conn.execute(QUERIES["erase_old_audit_values"], self.options.audit_retention_days)
            await conn.execute(QUERIES["forget_stale_health"], STALE_HEALTH)

    async def _count_anew(self) -> None:
        async with self.pool.acquire() as conn:
            await count_outgrown_tables(conn)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while not self.stopping.is_set():
            await work()
            await asyncio.sleep(seconds)

    # --- what the supervisor tells ----------------------------------------------------

    async def _task_failed(self, state: TaskState, error: BaseException) -> None:
        """A stream that fails because of Salesforce says so on the tenant's status bar (a
        stream failing for want of the database cannot, and is not Salesforce's fault)."""
        if (
            state.tenant_id is not None and state.platform is not None
            and failure_from(error).platform == state.platform
        ):
            async with self.pool.acquire() as conn:
                await health.failing(
                    conn, state.tenant_id, state.platform, "stream",
                    failure_from(error).category, state.attempts,
                )

    async def _task_failing_long(self, state: TaskState, error: BaseException) -> None:
        """A task failing for ``report_after`` seconds: an error report where users look."""
        failure = failure_from(error)
        reports: list[tuple[int, int]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            if state.tenant_id is not None:
                tenants = [state.tenant_id]
                message = f"the Salesforce change stream keeps failing: {error}"
            else:  # the process itself: every tenant it works for is affected; no details
                rows = await conn.fetch(QUERIES["syncable_tenants"])
                tenants = [r["id"] for r in rows[:PROCESS_REPORT_TENANTS]]
                message = (  # (no apostrophes: reports mask quoted text as possible values)
                    f"the bridge task {state.kind.replace('_', ' ')} keeps failing "
                    f"({type(error).__name__}); it restarts by itself, and the log of the "
                    "bridge process has the details"
                )
            for tenant_id in tenants:
                report_id = await record_error(
                    conn, tenant_id, category=failure.category, operation="reconcile",
                    direction="sf_to_cp" if state.platform == "salesforce" else None,
                    message=message, platform=state.platform,
                )
                reports.append((tenant_id, report_id))
                await self.queue.enqueue(tenant_id, PUSH_ERRORS, "errors", {}, conn=conn)
        self._reports[state.name] = reports
        log.error("task %s failing for %.0f s: reported", state.name, state.failing_for())

    async def _task_recovered(self, state: TaskState) -> None:
        reports = self._reports.pop(state.name, [])
        async with self.pool.acquire() as conn, conn.transaction():
            if state.tenant_id is not None and state.platform is not None:
                await health.working(conn, state.tenant_id, "stream", state.platform)
            for tenant_id, report_id in reports:
                pushed = await conn.fetchval(QUERIES["resolve_report"], report_id, tenant_id)
                if pushed:
                    await self.queue.enqueue(tenant_id, PUSH_ERRORS, "errors", {}, conn=conn)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
