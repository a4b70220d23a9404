"""The CDC streams: per tenant exactly one subscriber across all bridge processes.

Ownership is a PostgreSQL advisory lock held on a connection of the owning process: when that
process dies, its connection closes, the lock is free, and another process takes the stream over
at its next look (every ``takeover_interval`` seconds), resuming from the stored replay marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

from bridge import logs
from bridge.db import QUERIES, Conn, Pool
from bridge.errors import ApiError, BridgeError
from bridge.retry import RetryPolicy
from bridge.salesforce.stream import ALL_EVENTS, ReplayMarker, SalesforceStream
from bridge.sync.context import Contexts
from bridge.sync.ingest import ingest_salesforce
from bridge.sync.jobs import JobQueue
from bridge.sync.reports import record_error

log = logging.getLogger(__name__)

CHANNEL = "/data/ContactChangeEvent"
STREAM_LOCK = 0x63646301  # namespace of pg_try_advisory_lock(namespace, tenant_id)
REPORT_AFTER = 3  # failed attempts in a row before the outage becomes an error report


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
    takeover_interval: float = 2.0
    reconnect: RetryPolicy = RetryPolicy(max_attempts=1_000_000, base=1.0, cap=60.0)

    async def run(self) -> None:
        """Keep one ownership task per tenant that should stream (auto-sync on, SF → CP on)."""
        tasks: dict[int, asyncio.Task[None]] = {}
        try:
            while True:
                async with self.pool.acquire() as conn:
                    rows = await conn.fetch(QUERIES["syncable_tenants"])
                wanted = {
                    r["id"] for r in rows if r["auto_sync"] and r["direction"] != "cp_to_sf"
                }
                for tenant_id in wanted - tasks.keys():
                    tasks[tenant_id] = asyncio.create_task(self._own(tenant_id))
                for tenant_id in tasks.keys() - wanted:
                    tasks.pop(tenant_id).cancel()
                for tenant_id, task in list(tasks.items()):
                    if task.done():  # crashed: start over at the next look
                        tasks.pop(tenant_id)
                await asyncio.sleep(self.takeover_interval)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _own(self, tenant_id: int) -> None:
        """Take the tenant's stream when nobody holds it, and consume it while we hold it."""
        logs.tenant.set(str(tenant_id))
        while True:
            conn = await self.pool.acquire()
            try:
                if await conn.fetchval(QUERIES["try_stream_lock"], STREAM_LOCK, tenant_id):
                    try:
                        await self._consume_while_locked(conn, tenant_id)
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.fetchval(
                                QUERIES["release_stream_lock"], STREAM_LOCK, tenant_id
                            )
            finally:
                await self.pool.release(conn)
            await asyncio.sleep(self.takeover_interval)

    async def _consume_while_locked(self, lock_conn: Conn, tenant_id: int) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(QUERIES["set_stream_owner"], tenant_id, CHANNEL, self.owner)
        log.info("stream of tenant %s owned by %s", tenant_id, self.owner)
        consumer = asyncio.create_task(self._consume(tenant_id))
        try:
            while not consumer.done():  # the lock lives as long as its connection does
                await asyncio.wait({consumer}, timeout=5.0)
                if not consumer.done():
                    await lock_conn.fetchval(QUERIES["ping"])
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)

    async def _consume(self, tenant_id: int) -> None:
        attempt = 0
        while True:
            try:
                context = await self.contexts.get(tenant_id)
                store = PostgresReplayStore(self.pool, tenant_id, self.owner)
                # No marker yet: every retained event. Replays are harmless (the engine merges
                # current state), and nothing between the first full sync and now is missed.
                async with SalesforceStream(
                    context.salesforce, CHANNEL, store, default_replay=ALL_EVENTS
                ) as stream:
                    attempt = 0
                    async for item in stream:
                        tenant = (await self.contexts.get(tenant_id)).tenant
                        async with self.pool.acquire() as conn:
                            await ingest_salesforce(
                                conn, self.queue, tenant, item,
                                client_id=self.contexts.settings.client_id, owner=self.owner,
                            )
            except asyncio.CancelledError:
                raise
            except (BridgeError, OSError, asyncpg.PostgresError) as error:
                attempt += 1
                delay = self.reconnect.delay(attempt)
                log.warning("stream of tenant %s stopped (%s); again in %.1f s", tenant_id, error, delay)
                if attempt == REPORT_AFTER:  # an outage, not a hiccup: say so where users look
                    await self._report(tenant_id, error)
                await asyncio.sleep(delay)

    async def _report(self, tenant_id: int, error: Exception) -> None:
        category = error.category if isinstance(error, ApiError) else "transient"
        async with self.pool.acquire() as conn, conn.transaction():
            await record_error(
                conn, tenant_id, category=category, operation="reconcile", direction="sf_to_cp",
                message=f"the Salesforce change stream keeps failing: {error}",
            )
