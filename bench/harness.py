"""Shared plumbing for end-to-end benchmarks: PostgreSQL, both sandboxes, a tenant, a bridge process.

``Emulators`` runs each sandbox as its own process (``bridge sandbox salesforce|copernica``), so
that what the bench measures is the bridge, not the bench's event loop: a ``Recorder`` asks the
sandboxes' ``/_sandbox/landings`` every 0.1 s for the moments edits carrying a token were stored
(user edits and the bridge's writes, timed by the sandboxes themselves on the machine's monotonic
clock) and their API call counters. ``Usage`` reads the processes' CPU times from ``/proc``.

``Cpu`` is the same for any set of named processes (``bench_tenants``: several bridges and
sandboxes). ``bench_tenants`` makes its tenants' orgs and accounts over the sandboxes' control
APIs (``POST /_sandbox/orgs``, ``POST /_sandbox/accounts``) and reads their landings per org and
account. The bridge always runs as a subprocess, so that its memory (VmHWM) and CPU time are its
own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bridge.config import Settings
from bridge.db import QUERIES, EmbeddedPostgres, create_pool, migrate
from bridge.security.vault import Vault, generate_key
from bridge.sync.jobs import JobQueue
from bridge.sync.runs import request_sync
from bridge.tenants import Tenant, create_tenant
from bridge.vocabulary import CDC_CHANNEL, CLIENT_ID, LINK_FIELD_FALLBACK
from sandbox import copernica, demo, salesforce

# Copernica webhook deliveries in flight at once: real Copernica's number (and order) is not
# documented. At 8 the sandbox's own queue held bench sync's mixed burst back (its deliveries
# waited 1.9 s there while the bridge answered each in 6 ms), and more than half the echoes of
# a first full sync were still queued when the run was done.
WEBHOOK_CONCURRENCY = int(os.environ.get("BENCH_WEBHOOK_CONCURRENCY", "32"))


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile (as the other benches print it); NaN when there is nothing."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def free_port() -> int:
    """A port the OS says is free now (the bridge must know its URL before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


def proc_status(pid: int) -> dict[str, int]:
    """``VmHWM`` / ``VmRSS`` of a process in KiB (empty when it is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat`` utime + stime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def family_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, the children it has reaped, and its living children (for
    PostgreSQL: the postmaster and its backends)."""
    try:
        own = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    total = sum(int(v) for v in own[11:15]) / CLOCK_TICKS
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


# --- PostgreSQL -------------------------------------------------------------------------------


class Postgres:
    """One embedded server for the whole bench; a fresh, migrated database per bridge."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-pg-")
        self._server = EmbeddedPostgres(Path(self._tmp.name))
        self._url = ""
        self._count = 0

    async def start(self) -> None:
        self._url = await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()
        self._tmp.cleanup()

    def pid(self) -> int:
        """The postmaster's (the first line of ``postmaster.pid``)."""
        return int((self._server.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])

    async def new_database(self) -> str:
        self._count += 1
        name = f"bench_{os.getpid()}_{self._count}"
        conn = await asyncpg.connect(self._url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        parts = urlsplit(self._url)
        url = urlunsplit(parts._replace(path=f"/{name}"))
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        return url


# --- sandboxes as processes, and what landed in them -------------------------------------------


class Emulator:
    """One sandbox CLI as a child process on a port the OS said was free."""

    def __init__(self, kind: str, host: str, *options: str) -> None:
        self.kind, self.options = kind, options
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, ready_within: float = 30.0) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "sandbox", self.kind, "--port", str(self.port),
            *self.options, stdout=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + ready_within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"the {self.kind} sandbox exited with {self.process.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/_sandbox/") as reply:
                        if reply.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the {self.kind} sandbox did not start")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class Emulators:
    """Both sandboxes as processes with their default org and account (the default settings, but
    ``webhook_concurrency`` Copernica webhook deliveries in flight at once)."""

    def __init__(self, webhook_concurrency: int = WEBHOOK_CONCURRENCY) -> None:
        self.webhook_concurrency = webhook_concurrency
        self.salesforce = Emulator("salesforce", "localhost")
        self.copernica = Emulator(
            "copernica", "127.0.0.1", "--webhook-concurrency", str(webhook_concurrency)
        )
        self.info = demo.Sandboxes(
            salesforce_url=self.salesforce.url, copernica_url=self.copernica.url,
            salesforce=salesforce.SandboxSettings(), copernica=copernica.SandboxSettings(),
        )

    async def start(self) -> demo.Sandboxes:
        await asyncio.gather(self.salesforce.start(), self.copernica.start())
        return self.info

    async def stop(self) -> None:
        await asyncio.gather(self.salesforce.stop(), self.copernica.stop())


@dataclass
class Landed:
    """When each token was first stored on each side, by a user's edit or by the bridge's write
    (the sandboxes' ``time.monotonic()``, which is this process's too)."""

    sf_user: dict[str, float] = field(default_factory=dict)
    sf_bridge: dict[str, float] = field(default_factory=dict)
    cp_user: dict[str, float] = field(default_factory=dict)
    cp_bridge: dict[str, float] = field(default_factory=dict)

    def add_salesforce(self, entry: dict[str, Any]) -> None:
        by_bridge = entry["caller"] == CLIENT_ID  # changeOrigin omits it for Collections writes
        (self.sf_bridge if by_bridge else self.sf_user).setdefault(entry["value"], entry["at"])

    def add_copernica(self, entry: dict[str, Any]) -> None:
        by_bridge = entry["caller"] == "rest"
        (self.cp_bridge if by_bridge else self.cp_user).setdefault(entry["value"], entry["at"])


class Recorder:
    """Polls both sandboxes' ``/_sandbox/landings`` every ``every`` seconds for new entries only,
    and keeps their API call counters as of the last poll."""

    def __init__(
        self, http: aiohttp.ClientSession, info: demo.Sandboxes, prefix: str, every: float = 0.1
    ) -> None:
        self.http, self.info, self.prefix, self.every = http, info, prefix, every
        self.landed = Landed()
        self.calls = (0, 0)  # Salesforce, Copernica
        self._next = [0, 0]
        self._task: asyncio.Task[None] | None = None

    async def start(self, field_name: str = "Title") -> None:
        body = {"field": field_name, "prefix": self.prefix}
        for base in (self.info.salesforce_url, self.info.copernica_url):
            async with self.http.post(f"{base}/_sandbox/landings", json=body) as reply:
                reply.raise_for_status()
        await self.poll()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            with contextlib.suppress(aiohttp.ClientError):
                await self.poll()

    async def poll(self) -> None:
        sf = await self._get(self.info.salesforce_url, 0)
        cp = await self._get(self.info.copernica_url, 1)
        for entry in sf["entries"]:
            self.landed.add_salesforce(entry)
        for entry in cp["entries"]:
            self.landed.add_copernica(entry)
        self.calls = (int(sf["api_calls"]), int(cp["api_calls"]))

    async def _get(self, base: str, side: int) -> dict[str, Any]:
        async with self.http.get(
            f"{base}/_sandbox/landings", params={"after": str(self._next[side])}
        ) as reply:
            reply.raise_for_status()
            answer: dict[str, Any] = await reply.json()
        self._next[side] = int(answer["next"])
        return answer


@dataclass
class Usage:
    """CPU seconds of the bridge, both sandboxes, PostgreSQL, the bench and the whole machine, and
    the wall clock (all seconds; a difference of two by ``since``)."""

    wall: float
    bridge: float
    salesforce: float
    copernica: float
    postgres: float
    bench: float
    machine_busy: float
    machine_total: float

    @classmethod
    def now(cls, bridge: int, emulators: Emulators, postgres: int) -> Usage:
        busy, total = machine_busy()
        return cls(
            time.monotonic(), cpu_seconds(bridge), cpu_seconds(emulators.salesforce.pid),
            cpu_seconds(emulators.copernica.pid), family_cpu_seconds(postgres),
            cpu_seconds(os.getpid()), busy, total,
        )

    def since(self, before: Usage) -> Usage:
        return Usage(*(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(before),
                                              strict=True)))

    def share(self, seconds: float) -> float:
        """``seconds`` of CPU as a share of one core over this span, in percent."""
        return 100 * seconds / self.wall if self.wall > 0 else float("nan")

    @property
    def others(self) -> float:
        """CPU seconds of the machine that none of the bench's processes used."""
        ours = self.bridge + self.salesforce + self.copernica + self.postgres + self.bench
        return max(0.0, self.machine_busy - ours)

    def bottleneck(self) -> str:
        """The process at (nearly) a full core, else whether the machine's cores were all busy."""
        shares = {
            "the bridge": self.share(self.bridge),
            "the Salesforce sandbox": self.share(self.salesforce),
            "the Copernica sandbox": self.share(self.copernica),
            "PostgreSQL (all backends)": self.share(self.postgres),
            "the bench": self.share(self.bench),
        }
        return busiest(shares, self.machine_busy, self.machine_total, self.share(self.others))


def busiest(shares: dict[str, float], busy: float, total: float, others: float) -> str:
    """The process at (nearly) a full core, else whether the machine's cores were all busy
    (``shares`` and ``others`` in percent of a core; ``busy`` and ``total`` machine seconds)."""
    name, top = max(shares.items(), key=lambda item: item[1])
    if top >= 90:
        return f"{name} ({top:.0f}% of a core)"
    if total > 0 and busy / total >= 0.9:
        return f"the machine's cores (other processes: {others:.0f}% of a core)"
    return "none at 90% of a core"


@dataclass
class Cpu:
    """CPU seconds of named processes (each its own, or with its children: PostgreSQL's
    backends), of the bench and of the whole machine, and the wall clock; a difference of two by
    ``since``. Names keep their order."""

    wall: float
    seconds: dict[str, float]
    machine_busy: float
    machine_total: float

    @classmethod
    def now(cls, processes: dict[str, int], families: dict[str, int] | None = None) -> Cpu:
        busy, total = machine_busy()
        seconds = {name: cpu_seconds(pid) for name, pid in processes.items()}
        seconds.update({name: family_cpu_seconds(pid) for name, pid in (families or {}).items()})
        seconds["the bench"] = cpu_seconds(os.getpid())
        return cls(time.monotonic(), seconds, busy, total)

    def since(self, before: Cpu) -> Cpu:
        return Cpu(
            self.wall - before.wall,
            {name: value - before.seconds.get(name, 0.0) for name, value in self.seconds.items()},
            self.machine_busy - before.machine_busy, self.machine_total - before.machine_total,
        )

    def share(self, seconds: float) -> float:
        """``seconds`` of CPU as a share of one core over this span, in percent."""
        return 100 * seconds / self.wall if self.wall > 0 else float("nan")

    @property
    def others(self) -> float:
        """CPU seconds of the machine that none of the named processes (nor the bench) used."""
        return max(0.0, self.machine_busy - sum(self.seconds.values()))

    def shares(self) -> dict[str, float]:
        return {name: self.share(value) for name, value in self.seconds.items()}

    def bottleneck(self) -> str:
        shares, others = self.shares(), self.share(self.others)
        return busiest(shares, self.machine_busy, self.machine_total, others)


async def linked_pairs(info: demo.Sandboxes, database: str) -> list[tuple[str, int]]:
    """(Salesforce id, profile id) of each profile that names a contact in its link field."""
    url = f"{info.copernica_url}/_sandbox/databases/{database}/profiles"
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        profiles = (await reply.json())["data"]
    pairs = [
        (p["fields"].get(LINK_FIELD_FALLBACK, ""), int(p["ID"]))
        for p in profiles
        if not p.get("removed")
    ]
    return sorted((sf, cp) for sf, cp in pairs if sf)


async def streaming(info: demo.Sandboxes) -> bool:
    """A CometD client is subscribed to the contact change channel of the default org."""
    url = f"{info.salesforce_url}/_sandbox/streaming"
    async with aiohttp.ClientSession() as http, http.get(url) as reply:
        clients = (await reply.json())["clients"]
    return any(CDC_CHANNEL in c["subscriptions"] for c in clients)


async def seed(salesforce_url: str, count: int, chunk: int = 2000) -> None:
    """Silent contacts, in chunks that stay under the sandbox's 1 MB request limit."""
    for number, start in enumerate(range(0, count, chunk)):
        await demo.seed_contacts(salesforce_url, min(chunk, count - start), seed=1000 + number)


# --- tenant and bridge ------------------------------------------------------------------------


@dataclass
class Setup:
    """A database with one tenant wired to a sandbox pair, and the bridge that will serve it."""

    database_url: str
    settings: Settings
    tenant: Tenant
    pool: asyncpg.Pool
    port: int

    async def request_full_sync(self) -> int:
        return await request_sync(JobQueue(self.pool), self.tenant.id, "full", "bench")

    async def run_row(self, run_id: int) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(QUERIES["get_run"], run_id, self.tenant.id)

    async def jobs_pending(self) -> tuple[int, int]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(QUERIES["tenant_jobs_pending"], self.tenant.id, "sync", None)
        return int(row["pending"]), int(row["held"])

    async def error_count(self) -> int:
        async with self.pool.acquire() as conn:
            return int(
                await conn.fetchval("SELECT count(*) FROM error_reports WHERE tenant_id = $1",
                                    self.tenant.id)
            )


async def wire(postgres: Postgres, info: demo.Sandboxes, slug: str = "bench") -> Setup:
    """A fresh database, a tenant pointed at the sandboxes as the demo does it, and a port for the
    bridge."""
    url = await postgres.new_database()
    port = free_port()
    settings = info.settings(Settings(
        database_url=url, secret_keys=(generate_key(),), public_url=f"http://127.0.0.1:{port}",
        log_level="WARNING",
    ))
    pool = await create_pool(url, max_size=4)
    row = await create_tenant(pool, slug, "Bench company")
    tenant = await demo.wire_tenant(pool, Vault(settings.secret_keys), settings, row, info)
    return Setup(url, settings, tenant, pool, port)


@dataclass(frozen=True)
class LoopLooks:
    """How often a bridge looked at its event loop (``looks``), and how many of those looks
    found it late by at most each bucket's bound (``within``, seconds → looks)."""

    looks: float
    within: dict[float, float]

    def since(self, before: LoopLooks) -> LoopLooks:
        return LoopLooks(
            self.looks - before.looks, {b: n - before.within[b] for b, n in self.within.items()}
        )

    def late(self, bound: float) -> float:
        """The share of the looks (%) that found the loop later than ``bound`` seconds."""
        return 100 * (1 - self.within[bound] / self.looks) if self.looks else 0.0


class Bridge:
    """``python -m bridge.cli serve`` as a child process with the set-up's environment."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.process: asyncio.subprocess.Process | None = None
        self._data = tempfile.TemporaryDirectory(prefix="bench-bridge-")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, ready_within: float = 30.0) -> None:
        s = self.setup.settings
        env = {
            **os.environ,
            "DATABASE_URL": self.setup.database_url,
            "BRIDGE_SECRET_KEYS": ",".join(s.secret_keys),
            "PUBLIC_URL": s.public_url,
            "COPERNICA_SANDBOX_URL": s.copernica_sandbox_url or "",
            "ALLOWED_API_HOSTS": ",".join(s.allowed_api_hosts),
            "COPERNICA_AUTH_URL": s.copernica_auth_url or "",
            "LOG_LEVEL": "WARNING",
            "BRIDGE_DATA_DIR": self._data.name,
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "serve", "--host", "127.0.0.1",
            "--port", str(self.setup.port), env=env, cwd=self._data.name,
        )
        deadline = time.monotonic() + ready_within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"the bridge exited with {self.process.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{s.public_url}/readyz") as reply:
                        if reply.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("the bridge did not become ready")

    def memory(self) -> dict[str, int]:
        return proc_status(self.pid) if self.process else {}

    async def loop_looks(self, http: aiohttp.ClientSession) -> LoopLooks:
        """Its ``bridge_event_loop_lag_seconds`` so far, from its ``/metrics``."""
        async with http.get(f"{self.setup.settings.public_url}/metrics") as reply:
            reply.raise_for_status()
            text = await reply.text()
        family = next(f for f in text_string_to_metric_families(text)
                      if f.name == "bridge_event_loop_lag_seconds")
        buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
        return LoopLooks(buckets["+Inf"], {float(le): n for le, n in buckets.items() if le != "+Inf"})

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._data.cleanup()


async def wait_for(check: Callable[[], bool], within: float, step: float = 0.02) -> bool:
    """Poll ``check`` until true or ``within`` seconds passed; return whether it became true."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True
