"""The CDC streams: per tenant exactly one subscriber across all bridge processes.

Ownership is a PostgreSQL advisory lock held on a connection of the owning process: when that
process dies, its connection closes, the lock is free, and another process takes the stream over
at its next look (every ``takeover_interval`` seconds), resuming from the stored replay marker.

Each tenant's stream is a task of the process's ``Supervisor`` (``stream:<tenant id>``): a
stream that fails (Salesforce down, the database gone, the connection lost) is logged, started
again with back-off, shown on the status bar ("Salesforce failing since …") and, when the
failure lasts, reported. A stream that comes back after it was lost asks for a catch-up
reconcile (``on_reconnect``), for whatever the replay could not bring back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bridge import logs, supervise
from bridge.db import QUERIES, Conn, Pool
from bridge.metrics import Metrics
from bridge.salesforce.stream import ALL_EVENTS, ChangeEvent, ReplayMarker, SalesforceStream
from bridge.supervise import Supervisor
from bridge.sync import health
from bridge.sync.context import Contexts
from bridge.sync.ingest import ingest_salesforce
from bridge.sync.jobs import JobQueue
from bridge.vocabulary import CDC_CHANNEL as CHANNEL

log = logging.getLogger(__name__)

STREAM_LOCK = 0x63646301  # namespace of pg_try_advisory_lock(namespace, tenant_id)
LOCK_PING = 5.0  # seconds between two looks at the connection that holds a stream's lock


@dataclass
class PostgresReplayStore:
    """Replay markers in ``stream_state``. The ingest transaction writes them together with the
    jobs; ``set`` only serves the stream's own bookkeeping and never moves a marker back."""

    pool: Pool
    tenant_id: int
    owner: str

    async def get(self, channel: str) -> ReplayMarker | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(QUERIES["get_replay"], self.tenant_id, channel)
        if row is None or row["replay_id"] is None:
            return None
        return ReplayMarker(row["replay_id"], row["replay_date"] or "")

    async def set(self, channel: str, marker: ReplayMarker) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                QUERIES["set_replay"], self.tenant_id, channel, marker.replay_id, marker.date,
                self.owner,
            )


@dataclass
class StreamSupervisor:
    pool: Pool
    contexts: Contexts
    queue: JobQueue
    owner: str
    supervisor: Supervisor
    metrics: Metrics
    takeover_interval: float = 2.0
    on_reconnect: Callable[[int], Awaitable[None]] | None = None
    _tenants: set[int] = field(default_factory=set)
    _lost: set[int] = field(default_factory=set)  # tenants whose stream broke in this process

    @staticmethod
    def task_name(tenant_id: int) -> str:
        return f"stream:{tenant_id}"

    async def run(self) -> None:
        """Keep one supervised stream task per tenant that should stream (auto-sync on,
        Salesforce → Copernica on); never returns."""
        while True:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(QUERIES["syncable_tenants"])
            wanted = {r["id"] for r in rows if r["auto_sync"] and r["direction"] != "cp_to_sf"}
            for tenant_id in wanted:
                name = self.task_name(tenant_id)
                if not self.supervisor.running(name):  # new, or it returned: (re)start it
                    self.supervisor.spawn(
                        name, functools.partial(self._own, tenant_id), kind="stream",
                        tenant_id=tenant_id, platform="salesforce",
                    )
            for tenant_id in self._tenants - wanted:
                await self.supervisor.cancel(self.task_name(tenant_id))
                with contextlib.suppress(KeyError):
                    self.metrics.stream_connected.remove(str(tenant_id))
                async with self.pool.acquire() as conn:
                    await health.working(conn, tenant_id, "stream")
            self._tenants = wanted
            supervise.healthy()
            await asyncio.sleep(self.takeover_interval)

    async def _own(self, tenant_id: int) -> None:
        """Take the tenant's stream when nobody holds it, and consume it while we hold it;
        raises when the stream or the database fails (the supervisor starts it again)."""
        logs.tenant.set(str(tenant_id))
        while True:
            conn = await self.pool.acquire()
            try:
                if await conn.fetchval(QUERIES["try_stream_lock"], STREAM_LOCK, tenant_id):
                    try:
                        await self._consume_while_locked(conn, tenant_id)
                    finally:
                        with contextlib.suppress(Exception):
                            async with asyncio.timeout(2.0):
                                await conn.fetchval(
                                    QUERIES["release_stream_lock"], STREAM_LOCK, tenant_id
                                )
                else:
                    supervise.healthy()  # another process streams this tenant: nothing fails
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await self.pool.release(conn)
            await asyncio.sleep(self.takeover_interval)

    async def _consume_while_locked(self, lock_conn: Conn, tenant_id: int) -> None:
        async with self.pool.acquire() as conn:
            previous = await conn.fetchval(QUERIES["stream_owner"], tenant_id, CHANNEL)
            await conn.execute(QUERIES["set_stream_owner"], tenant_id, CHANNEL, self.owner)
        log.info("stream of tenant %s owned by %s", tenant_id, self.owner)
        taken_over = previous is not None and previous != self.owner
        consumer = asyncio.create_task(self._consume(tenant_id, taken_over))
        try:
            while not consumer.done():  # the lock lives as long as its connection does
                await asyncio.wait({consumer}, timeout=LOCK_PING)
                if not consumer.done():
                    async with asyncio.timeout(LOCK_PING):
                        await lock_conn.fetchval(QUERIES["ping"])
            consumer.result()  # the stream's failure is the task's failure
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)

    async def _consume(self, tenant_id: int, taken_over: bool) -> None:
        context = await self.contexts.get(tenant_id)
        store = PostgresReplayStore(self.pool, tenant_id, self.owner)
        connected = self.metrics.stream_connected.labels(tenant=str(tenant_id))
        try:
            # No marker yet: every retained event. Replays are harmless (the engine merges
            # current state), and nothing between the first full sync and now is missed.
            async with SalesforceStream(
                context.salesforce, CHANNEL, store, default_replay=ALL_EVENTS
            ) as stream:
                connected.set(1)
                supervise.healthy()
                if (tenant_id in self._lost or taken_over) and self.on_reconnect is not None:
                    await self.on_reconnect(tenant_id)
                self._lost.discard(tenant_id)
                async for item in stream:
                    tenant = (await self.contexts.get(tenant_id)).tenant
                    client_id = self.contexts.settings.client_id
                    if isinstance(item, ChangeEvent) and item.origin_client == client_id:
                        self.metrics.echoes.labels(platform="salesforce").inc()
                    async with self.pool.acquire() as conn:
                        await ingest_salesforce(
                            conn, self.queue, tenant, item, client_id=client_id, owner=self.owner,
                        )
        except asyncio.CancelledError:
            raise
        except Exception:
            self._lost.add(tenant_id)
            raise
        finally:
            connected.set(0)
