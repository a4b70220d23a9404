"""The CDC streams: per tenant exactly one subscriber across all bridge processes; each live
process streams about its share of the tenants, and what it costs in PostgreSQL connections
does not grow with the number it streams.

Ownership is a lease (table ``stream_leases``, migration 0008). Every ``takeover_interval``
seconds a process beats its heartbeat (``bridge_processes``) and renews all its leases in one
statement for ``lease_ttl`` seconds; then it balances: of W tenants that stream and N live
processes, each holds W // N, the first W % N (in the order of their names) one more. A process
above its share lets the surplus go (it stops those streams, then deletes their leases); one
below takes free leases (none yet, or expired). A process that stops cleanly deletes its row
and with it its leases, so the others take its tenants at their next look; a dead process's
leases expire after ``lease_ttl`` seconds, and a new process gets its share from the others.

A lease that cannot be renewed stops its stream before it expires: when a third of
``lease_ttl`` is all that is left since the last renewal that went through, every stream of
the process stops (they start again once a renewal goes through), so two processes never
stream one tenant. No connection is held for a stream: each look borrows one from the pool for
a moment, and so does each delivery of events, to store its jobs with its replay id.

Each tenant's stream is a task of the process's ``Supervisor`` (``stream:<tenant id>``): a
stream that fails (Salesforce down, the database gone, the connection lost) is logged, started
again with back-off, shown on the status bar ("Salesforce failing since …") and, when the
failure lasts, reported. A stream that comes back after it was lost, or that was taken over
from a process that died, asks for a catch-up reconcile (``on_reconnect``), for whatever the
replay could not bring back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bridge import logs, supervise
from bridge.db import QUERIES, Pool
from bridge.errors import BridgeError
from bridge.metrics import Metrics
from bridge.salesforce.stream import (
    ALL_EVENTS,
    ChangeEvent,
    ReplayMarker,
    SalesforceStream,
    StreamItem,
)
from bridge.supervise import Supervisor
from bridge.sync import health
from bridge.sync.context import Contexts
from bridge.sync.ingest import JUDGEMENTS, ingest_salesforce
from bridge.sync.jobs import JobQueue
from bridge.vocabulary import CDC_CHANNEL as CHANNEL
from bridge.vocabulary import SYNC

log = logging.getLogger(__name__)

AT_RISK = 1 / 3  # the part of a lease left when its streams stop, for want of a renewal


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
                QUERIES["ingest_changes"], self.tenant_id, None, SYNC, [], 0, channel,
                marker.replay_id, marker.date, self.owner,
            )


@dataclass
class StreamSupervisor:
    pool: Pool
    contexts: Contexts
    queue: JobQueue
    owner: str
    supervisor: Supervisor
    metrics: Metrics
    takeover_interval: float  # seconds between two looks (heartbeat, renewal, balance)
    lease_ttl: float  # seconds a lease lasts without renewal
    on_reconnect: Callable[[int], Awaitable[None]] | None = None
    _held: set[int] = field(default_factory=set)  # tenants whose lease this process holds
    _lost: set[int] = field(default_factory=set)  # tenants whose stream broke in this process
    _safe_until: float = 0.0  # loop time until which the leases are surely this process's
    _alarm: asyncio.TimerHandle | None = None  # stops the streams then

    def __post_init__(self) -> None:
        if self.lease_ttl < 3 * self.takeover_interval:
            raise ValueError("a stream lease must last at least three looks")

    @staticmethod
    def task_name(tenant_id: int) -> str:
        return f"stream:{tenant_id}"

    async def run(self) -> None:
        """Look every ``takeover_interval`` seconds: heartbeat, leases, balance, one supervised
        stream task per tenant held; never returns (``hand_over`` ends it cleanly)."""
        while True:
            try:  # a look that hangs is no danger (the alarm stops the streams), only late
                async with asyncio.timeout(self.lease_ttl):
                    await self._look()
            except TimeoutError:
                log.warning("a look at the stream leases took over %.0f s", self.lease_ttl)
            else:
                supervise.healthy()
            await asyncio.sleep(self.takeover_interval)

    async def _look(self) -> None:
        sent = asyncio.get_running_loop().time()
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(QUERIES["beat_heartbeat"], self.owner, self.lease_ttl)
                renewed = await conn.fetch(QUERIES["renew_stream_leases"], self.owner, self.lease_ttl)
            self._renewed(sent)
            taken = self._held - {r["tenant_id"] for r in renewed}
            self._held -= taken
            rows = await conn.fetch(QUERIES["syncable_tenants"])
            live = [r["id"] for r in await conn.fetch(QUERIES["live_processes"])]
            await conn.execute(QUERIES["forget_dead_processes"], self.queue.lease)
        if taken:  # only when this process could not stop them in time
            log.error("stream leases of tenants %s were taken by another process", sorted(taken))
            await self._stop(taken)
        wanted = {r["id"] for r in rows if r["auto_sync"] and r["direction"] != "cp_to_sf"}
        share = fair_share(len(wanted), live, self.owner)
        keep = sorted(self._held & wanted)[:share]
        if surplus := self._held - set(keep):
            await self._release(surplus)
        if len(keep) < share:
            async with self.pool.acquire() as conn:
                got = await conn.fetch(
                    QUERIES["take_stream_leases"], self.owner, sorted(wanted - self._held),
                    share - len(keep), self.lease_ttl,
                )
            self._held |= {r["tenant_id"] for r in got}
        if asyncio.get_running_loop().time() >= self._safe_until:
            return  # this look took too long to trust its renewal: the next one starts them
        for tenant_id in self._held:
            name = self.task_name(tenant_id)
            if not self.supervisor.running(name):  # new, stopped, or it returned: (re)start it
                self.supervisor.spawn(
                    name, functools.partial(self._stream, tenant_id), kind="stream",
                    tenant_id=tenant_id, platform="salesforce",
                )

    def _renewed(self, sent: float) -> None:
        """The leases last ``lease_ttl`` from ``sent`` (when the renewal left) at least: the
        alarm stops the streams when only ``AT_RISK`` of that is left."""
        if self._alarm is not None:
            self._alarm.cancel()
        self._safe_until = sent + self.lease_ttl * (1 - AT_RISK)
        self._alarm = asyncio.get_running_loop().call_at(self._safe_until, self._leases_at_risk)

    def _leases_at_risk(self) -> None:
        self._alarm = None
        streaming = [t for t in self._held if self.supervisor.running(self.task_name(t))]
        if streaming:
            log.warning("stream leases not renewed in time: %d stream(s) stop", len(streaming))
        for tenant_id in streaming:
            self.supervisor.tasks[self.task_name(tenant_id)].cancel()

    async def _stop(self, tenants: set[int]) -> None:
        await asyncio.gather(*(self.supervisor.cancel(self.task_name(t)) for t in tenants))
        for tenant_id in tenants:
            with contextlib.suppress(KeyError):
                self.metrics.stream_connected.remove(str(tenant_id))

    async def _release(self, tenants: set[int]) -> None:
        """Stop these streams, then give their leases up: another process takes them."""
        await self._stop(tenants)
        async with self.pool.acquire() as conn:
            await conn.execute(QUERIES["release_stream_leases"], self.owner, sorted(tenants))
            for tenant_id in tenants:  # its next owner says how the stream does
                await health.working(conn, tenant_id, "stream")
        self._held -= tenants
        log.info("released the streams of %d tenant(s)", len(tenants))

    async def hand_over(self) -> None:
        """A clean stop, once ``run`` is cancelled: every stream stops, then this process's row
        and leases go, so that other processes take its tenants at their next look."""
        if self._alarm is not None:
            self._alarm.cancel()
        await asyncio.gather(
            *(self.supervisor.cancel(self.task_name(t), within=1.0) for t in self._held)
        )
        try:
            async with asyncio.timeout(1.0), self.pool.acquire() as conn:
                await conn.execute(QUERIES["unregister_process"], self.owner)
        except Exception as error:  # noqa: BLE001 - stopping anyway: the leases expire
            log.warning("could not hand the streams over (%s); their leases expire", error)
        self._held = set()

    async def _stream(self, tenant_id: int) -> None:
        """Consume the tenant's stream (this process holds its lease); raises when the stream or
        the database fails (the supervisor starts it again)."""
        logs.tenant.set(str(tenant_id))
        async with self.pool.acquire() as conn:
            previous = await conn.fetchval(QUERIES["stream_owner"], tenant_id, CHANNEL)
            await conn.execute(QUERIES["set_stream_owner"], tenant_id, CHANNEL, self.owner)
        log.info("stream of tenant %s owned by %s", tenant_id, self.owner)
        # A previous owner that did not hand over (it died) may have missed what it stored no
        # job for; one that handed over cleared the owner.
        await self._consume(tenant_id, taken_over=previous is not None and previous != self.owner)

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
                async for items in stream.deliveries():
                    await self._ingest(tenant_id, items)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._lost.add(tenant_id)
            raise
        finally:
            connected.set(0)

    async def _ingest(self, tenant_id: int, items: Sequence[StreamItem]) -> None:
        """Store a delivery, judged by the tenant's settings as this process last read them;
        read anew when the statement finds they changed since. Settings that keep changing
        raise: the stream starts again from its marker, nothing lost."""
        client_id = self.contexts.settings.client_id
        echoes = sum(isinstance(i, ChangeEvent) and i.origin_client == client_id for i in items)
        if echoes:
            self.metrics.echoes.labels(platform="salesforce").inc(echoes)
        current = self.contexts.cached(tenant_id) or await self.contexts.get(tenant_id)
        for _ in range(JUDGEMENTS):
            tenant = current.tenant
            async with self.pool.acquire() as conn:
                queued = await ingest_salesforce(  # the mapping: jobs keep mapped values only
                    conn, self.queue, tenant, items, client_id=client_id, owner=self.owner,
                    mapping=current.cached_mapping(tenant),
                )
            if queued is not None:
                return
            current = await self.contexts.get(tenant_id)
        raise BridgeError(f"the settings of tenant {tenant_id} keep changing")


def fair_share(tenants: int, live: list[str], me: str) -> int:
    """How many of ``tenants`` streams process ``me`` holds among the ``live`` ones (sorted):
    an even split, the first of them one more while some are left over."""
    processes = live if me in live else sorted([*live, me])
    share, left_over = divmod(tenants, len(processes))
    return share + (1 if processes.index(me) < left_over else 0)
