"""Many tenants on many processes (issue 15): each tenant its own Salesforce org and Copernica
account in the sandboxes, on several `bridge serve` processes against one PostgreSQL.

1. Real-time edits in Salesforce, spread evenly over every tenant: changes per second in all,
   and each tenant's p99 latency (edit stored → the bridge's write stored in Copernica), the
   best and the worst tenant.
2. The same edits in two tenants while one of them runs a first full sync of many contacts:
   the p99 (with p50 and p90) of the other tenant, and of the syncing tenant's own edits,
   beside the same on an idle bridge; and the CPU share of every process (bridges, sandboxes,
   PostgreSQL, the bench) meanwhile, so that a number held back by a sandbox is not taken for
   the bridge's.

As in ``bench_sync``, the sandboxes run as their own processes (``bridge sandbox
salesforce|copernica``) and the bench reaches them over their control APIs only: one org per
tenant (``POST /_sandbox/orgs``) in the one Salesforce sandbox, one account per tenant
(``POST /_sandbox/accounts``) in a Copernica sandbox, seeds and edits with ``?org=…``. The
tenant of phase 2's full sync (the "busy" one, the first) has its account in a Copernica sandbox
process of its own, apart from the one hosting every other tenant's account: real Copernica is
a scaled service, where one account's load does not queue another account's calls, as it would
in one single-threaded emulator process. Both Copernica processes sign webhooks with one key (as
Copernica does) and send as many at once as bench sync's (``BENCH_WEBHOOK_CONCURRENCY``), so the
echoes of the full sync's writes come while it runs. Since the bridge has one authentication
URL, a stand-in for ``authenticate.copernica.com`` in the bench hands each API token's JWT
exchange to the process holding its account (a few calls per tenant, none while measuring).

Latency runs from the moment the Salesforce sandbox stored the user's edit to the moment the
Copernica sandbox stored the bridge's write carrying the same token, as their
``/_sandbox/landings`` of each org and account tell (both on the machine's monotonic clock). The
bench reads the landings only once it has sent its edits, every ``POLL_EVERY`` seconds and only
for accounts still waiting for one. Numbers only, no assertions. ``BENCH_TENANTS`` (default 50),
``BENCH_PROCESSES`` (2), ``BENCH_TENANT_RATE`` (edits per second in all, 20),
``BENCH_TENANT_SECONDS`` (20) and ``BENCH_TENANT_FULL_SYNC`` (contacts of the full sync, 20000;
0: skip phase 2) size it; the bridge processes get the environment, ``BRIDGE_TENANT_WORKERS``
included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.harness import (
    WEBHOOK_CONCURRENCY,
    Bridge,
    Cpu,
    Emulator,
    Landed,
    LoopLooks,
    Postgres,
    Setup,
    free_port,
    percentile,
    serve,
)
from bridge.cli import run_loop
from bridge.config import Settings
from bridge.db import create_pool
from bridge.metrics import LOOP_LOOK_EVERY
from bridge.security.vault import Vault, generate_key
from bridge.sync.jobs import JobQueue
from bridge.sync.runs import request_sync
from bridge.tenants import Tenant, create_tenant
from bridge.vocabulary import CDC_CHANNEL
from sandbox import demo
from sandbox.copernica import SandboxSettings as CopernicaSettings
from sandbox.salesforce import SandboxSettings as SalesforceSettings

CONTACTS = 20  # contacts of each tenant that the edits go to
TOKEN_PREFIX = "bench-"  # every edited Title starts with it; the sandboxes record only those
POLL_EVERY = 0.5  # seconds between reads of the landings of the accounts still waiting
LAND_TIMEOUT = 180.0
SETTLE_TIMEOUT = 600.0  # for every tenant's first (small) full sync and streams
SEED_CHUNK = 2000  # contacts a seed request, under the sandbox's 1 MB request limit


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _netloc(url: str) -> str:
    return urlsplit(url).netloc


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
    params: dict[str, str] | None = None,
) -> Any:
    async with http.request(method, url, json=body, params=params) as reply:
        reply.raise_for_status()
        return await reply.json() if reply.content_length != 0 else None


class Authenticate:
    """Stands in for ``authenticate.copernica.com`` before several Copernica sandbox processes:
    ``POST /authenticate`` (or ``/``) goes on to the process holding the API token's account."""

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}  # API token → the Copernica sandbox holding it
        self.default = ""
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self, default: str) -> None:
        self.default = default
        app = web.Application()
        app.router.add_post("/authenticate", self._exchange)
        app.router.add_post("/", self._exchange)
        self._http = aiohttp.ClientSession()
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}"

    async def _exchange(self, request: web.Request) -> web.Response:
        assert self._http is not None
        token = request.query.get("access_token") or str(
            (await request.post()).get("access_token", "")
        )
        base = self.accounts.get(token, self.default)
        async with self._http.post(f"{base}/authenticate", data={"access_token": token}) as reply:
            return web.Response(
                body=await reply.read(), status=reply.status,
                headers={"Content-Type": reply.headers.get("Content-Type", "text/plain")},
            )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


def _signing_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class SandboxProcesses:
    """The Salesforce sandbox (every org), the Copernica sandbox of every tenant but the busy one,
    the busy tenant's own, all processes, and the authentication stand-in."""

    def __init__(self) -> None:
        self._keys = tempfile.TemporaryDirectory(prefix="bench-key-")
        key = Path(self._keys.name) / "webhooks.pem"
        key.write_bytes(_signing_key())
        self.salesforce = Emulator("salesforce", "localhost")
        options = ("--signing-key", str(key), "--webhook-concurrency", str(WEBHOOK_CONCURRENCY))
        self.copernica = Emulator("copernica", "127.0.0.1", *options)
        self.busy_copernica = Emulator("copernica", "127.0.0.1", *options)
        self.auth = Authenticate()

    async def start(self) -> None:
        await asyncio.gather(
            self.salesforce.start(), self.copernica.start(), self.busy_copernica.start()
        )
        await self.auth.start(self.copernica.url)

    async def stop(self) -> None:
        await self.auth.stop()
        await asyncio.gather(
            self.salesforce.stop(), self.copernica.stop(), self.busy_copernica.stop()
        )
        self._keys.cleanup()

    def settings(self, settings: Settings) -> Settings:
        """``settings`` of a bridge that may talk to every sandbox process (webhook key: the first
        Copernica sandbox's, which is the other's too)."""
        info = demo.Sandboxes(
            self.salesforce.url, self.copernica.url, SalesforceSettings(), CopernicaSettings()
        )
        base = info.settings(settings)
        return dataclasses.replace(
            base,
            allowed_api_hosts=(
                *base.allowed_api_hosts, _netloc(self.busy_copernica.url), _netloc(self.auth.url)
            ),
            copernica_auth_url=f"{self.auth.url}/authenticate",
        )

    def processes(self) -> dict[str, int]:
        return {
            "Salesforce sandbox": self.salesforce.pid,
            "Copernica sandbox (other tenants)": self.copernica.pid,
            "Copernica sandbox (syncing tenant)": self.busy_copernica.pid,
        }


@dataclass
class Hosted:
    """A tenant, its org and account, the contacts its edits go to, and what landed in them."""

    tenant: Tenant
    org_id: str
    account_id: str
    copernica_url: str
    contacts: list[str]  # Salesforce ids
    landed: Landed = field(default_factory=Landed)
    _next: list[int] = field(default_factory=lambda: [0, 0])  # Salesforce, Copernica

    def latencies(self, tokens: list[str]) -> list[float]:
        sf, cp = self.landed.sf_user, self.landed.cp_bridge
        return [(cp[t] - sf[t]) * 1000 for t in tokens if t in cp and t in sf]

    def waiting(self, tokens: list[str]) -> bool:
        return not all(t in self.landed.cp_bridge for t in tokens)

    async def poll_salesforce(self, http: aiohttp.ClientSession, salesforce_url: str) -> None:
        for entry in await self._landings(http, salesforce_url, {"org": self.org_id}, 0):
            self.landed.add_salesforce(entry)

    async def poll_copernica(self, http: aiohttp.ClientSession) -> None:
        for entry in await self._landings(
            http, self.copernica_url, {"account": self.account_id}, 1
        ):
            self.landed.add_copernica(entry)

    async def _landings(
        self, http: aiohttp.ClientSession, base: str, query: dict[str, str], side: int
    ) -> list[dict[str, Any]]:
        answer = await _call(http, "GET", f"{base}/_sandbox/landings",
                             params={**query, "after": str(self._next[side])})
        self._next[side] = int(answer["next"])
        return list(answer["entries"])


async def _host(
    sandboxes: SandboxProcesses, http: aiohttp.ClientSession, pool: asyncpg.Pool,
    settings: Settings, number: int,
) -> Hosted:
    """A new org and account (the first tenant's in the busy tenant's Copernica sandbox), seeded,
    wired to a new tenant as the demo does it, recording the landings of edited Titles."""
    sf_url = sandboxes.salesforce.url
    cp_url = (sandboxes.busy_copernica if number == 0 else sandboxes.copernica).url
    org = await _call(http, "POST", f"{sf_url}/_sandbox/orgs", {"name": f"Bench org {number}"})
    account = await _call(
        http, "POST", f"{cp_url}/_sandbox/accounts", {"name": f"Bench account {number}"}
    )
    sandboxes.auth.accounts[account["access_token"]] = cp_url
    await _seed(http, sf_url, org["org_id"], CONTACTS, number)
    row = await create_tenant(pool, f"bench-{number}", f"Bench company {number}")
    info = demo.Sandboxes(  # wire_tenant reads the org's OAuth client and the account's token
        sf_url, cp_url,
        dataclasses.replace(
            SalesforceSettings(), username=org["username"], password=org["password"],
            security_token=org["security_token"], client_id=org["client_id"],
            client_secret=org["client_secret"], refresh_token=org["refresh_token"],
            organization_id=org["org_id"], organization_name=org["name"],
        ),
        dataclasses.replace(
            CopernicaSettings(), api_token=account["access_token"],
            account_id=int(account["account_id"]), account_name=account["name"],
        ),
    )
    tenant = await demo.wire_tenant(pool, Vault(settings.secret_keys), settings, row, info)
    org_query, account_query = {"org": org["org_id"]}, {"account": account["account_id"]}
    recording = {"field": "Title", "prefix": TOKEN_PREFIX}
    await _call(http, "POST", f"{sf_url}/_sandbox/landings", recording, org_query)
    await _call(http, "POST", f"{cp_url}/_sandbox/landings", recording, account_query)
    contacts = await _call(http, "GET", f"{sf_url}/_sandbox/contacts", params=org_query)
    return Hosted(
        tenant, org["org_id"], account["account_id"], cp_url,
        sorted(r["Id"] for r in contacts["records"]),
    )


async def _seed(
    http: aiohttp.ClientSession, salesforce_url: str, org_id: str, count: int, seed: int
) -> None:
    """Contacts in the org before the bridge looks (silently: no change events)."""
    for start in range(0, count, SEED_CHUNK):
        rng = random.Random(seed * 1000 + start)
        records = [demo.random_contact(rng) for _ in range(min(SEED_CHUNK, count - start))]
        await _call(http, "POST", f"{salesforce_url}/_sandbox/records/Contact",
                    {"records": records}, {"org": org_id})


async def _edits(
    http: aiohttp.ClientSession, salesforce_url: str, tenants: list[Hosted], rate: float,
    seconds: float, tag: str,
) -> tuple[dict[int, list[str]], float]:
    """``rate`` edits per second in all, round-robin over ``tenants``, for ``seconds``; wait until
    each edited contact's last edit landed (an earlier one the bridge read only after the next
    never lands: lost). Returns each tenant's tokens and the seconds from the first edit to the
    last landing."""
    tokens: dict[int, list[str]] = {h.tenant.id: [] for h in tenants}
    latest: dict[int, dict[str, str]] = {h.tenant.id: {} for h in tenants}  # contact → token
    cursors = {h.tenant.id: itertools.cycle(h.contacts) for h in tenants}
    count = max(1, round(rate * seconds))
    started = time.monotonic()  # the sandboxes' clock too
    pending = []
    for n, hosted in zip(range(count), itertools.cycle(tenants)):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        token = f"{TOKEN_PREFIX}{tag}-{n}"
        tokens[hosted.tenant.id].append(token)
        sf_id = next(cursors[hosted.tenant.id])
        latest[hosted.tenant.id][sf_id] = token
        pending.append(asyncio.create_task(_call(
            http, "PATCH", f"{salesforce_url}/_sandbox/contacts/{sf_id}", {"Title": token},
            {"org": hosted.org_id},
        )))
    await asyncio.gather(*pending)
    deadline = time.monotonic() + LAND_TIMEOUT
    waiting = list(tenants)
    while waiting:
        await asyncio.gather(*(h.poll_copernica(http) for h in waiting))
        waiting = [h for h in waiting if h.waiting(list(latest[h.tenant.id].values()))]
        if not waiting or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_EVERY)
    await asyncio.gather(*(h.poll_salesforce(http, salesforce_url) for h in tenants))
    last = max(
        (h.landed.cp_bridge.get(t, started) for h in tenants for t in tokens[h.tenant.id]),
        default=started,
    )
    return tokens, last - started


def _p99(samples: list[float]) -> float:
    return percentile(samples, 0.99)


def _spread(samples: list[float]) -> str:
    """The p99, and the p50 and p90 beside it: of 100 edits the p99 is nearly the slowest one."""
    return (f"{_p99(samples):.0f} ms (p50 {percentile(samples, 0.5):.1f},"
            f" p90 {percentile(samples, 0.9):.1f})")


async def _streaming(
    http: aiohttp.ClientSession, salesforce_url: str, pool: asyncpg.Pool, tenants: list[Hosted],
    processes: int,
) -> bool:
    """Every tenant's first full sync is done, the leases are shared by every process (the
    bridge's database) and every org has one subscriber to its contact changes (its sandbox)."""
    async with pool.acquire() as conn:
        owners = await conn.fetchval("SELECT count(DISTINCT owner) FROM stream_leases")
        runs = await conn.fetchval(
            "SELECT count(*) FROM sync_runs WHERE kind = 'full' AND state = 'done'"
        )
    if owners != processes or runs < len(tenants):
        return False
    answers = await asyncio.gather(*(
        _call(http, "GET", f"{salesforce_url}/_sandbox/streaming", params={"org": h.org_id})
        for h in tenants
    ))
    return all(
        sum(CDC_CHANNEL in c["subscriptions"] for c in answer["clients"]) == 1
        for answer in answers
    )


async def run() -> None:
    postgres, sandboxes = Postgres(), SandboxProcesses()
    await postgres.start()
    try:
        await sandboxes.start()
        url = await postgres.new_database()
        pool = await create_pool(url, max_size=4)
        try:
            await _measure(postgres, sandboxes, url, pool)
        finally:
            await pool.close()
    finally:
        await sandboxes.stop()
        await postgres.stop()


async def _measure(
    postgres: Postgres, sandboxes: SandboxProcesses, url: str, pool: asyncpg.Pool
) -> None:
    count = _setting("BENCH_TENANTS", 50)
    processes = _setting("BENCH_PROCESSES", 2)
    rate = float(_setting("BENCH_TENANT_RATE", 20))
    seconds = float(_setting("BENCH_TENANT_SECONDS", 20))
    full_sync = _setting("BENCH_TENANT_FULL_SYNC", 20000)
    ports = [free_port() for _ in range(processes)]  # the first one's gets the webhooks
    settings = sandboxes.settings(Settings(
        database_url=url, secret_keys=(generate_key(),),
        public_url=f"http://127.0.0.1:{ports[0]}", log_level="WARNING",
    ))
    sf_url = sandboxes.salesforce.url
    async with aiohttp.ClientSession() as http:
        tenants: list[Hosted] = []
        while len(tenants) < count:
            tenants += await asyncio.gather(*(
                _host(sandboxes, http, pool, settings, len(tenants) + n)
                for n in range(min(10, count - len(tenants)))
            ))
        bridges = [
            Bridge(Setup(url, dataclasses.replace(settings, public_url=f"http://127.0.0.1:{port}"),
                         tenants[0].tenant, pool, port))
            for port in ports
        ]
        try:
            await asyncio.gather(*(b.start(ready_within=120) for b in bridges))
            settled = time.monotonic()
            while not await _streaming(http, sf_url, pool, tenants, processes):
                if time.monotonic() - settled > SETTLE_TIMEOUT:
                    raise RuntimeError("the tenants' streams and first syncs did not settle")
                await asyncio.sleep(0.5)
            async with pool.acquire() as conn:
                shares = sorted(r["n"] for r in await conn.fetch(
                    "SELECT count(*) AS n FROM stream_leases GROUP BY owner"
                ))

            tokens, took = await _edits(http, sf_url, tenants, rate, seconds, "all")
            edits = sum(len(t) for t in tokens.values())
            p99s = sorted(_p99(h.latencies(tokens[h.tenant.id])) for h in tenants)
            lost = edits - sum(len(h.latencies(tokens[h.tenant.id])) for h in tenants)
            print(f"{count} tenants on {processes} processes (streams per process: "
                  f"{', '.join(map(str, shares))})")
            print(f"  real-time edits: {edits} in {took:.1f} s, {edits / took:.1f} changes/s in"
                  f" all, {lost} lost; p99 per tenant: best {p99s[0]:.0f} ms, worst"
                  f" {p99s[-1]:.0f} ms", flush=True)
            if full_sync:
                watched = {f"bridge {n + 1}": b.pid for n, b in enumerate(bridges)}
                watched.update(sandboxes.processes())
                await _beside_a_full_sync(
                    http, sf_url, pool, tenants[0], tenants[1], full_sync, seconds,
                    lambda: Cpu.now(watched, {"PostgreSQL": postgres.pid()}), bridges,
                )
        finally:
            await asyncio.gather(*(b.stop() for b in bridges))


async def _beside_a_full_sync(
    http: aiohttp.ClientSession, salesforce_url: str, pool: asyncpg.Pool, busy: Hosted,
    quiet: Hosted, size: int, seconds: float, cpu: Callable[[], Cpu], bridges: list[Bridge],
) -> None:
    both = [busy, quiet]

    async def looks() -> list[LoopLooks]:
        return list(await asyncio.gather(*(b.loop_looks(http) for b in bridges)))

    looked = await looks()
    idle, _ = await _edits(http, salesforce_url, both, 10, seconds, "idle")
    idle_looks = [now.since(then) for now, then in zip(await looks(), looked, strict=True)]
    await _seed(http, salesforce_url, busy.org_id, size, 99)
    before = cpu()
    run_id = await request_sync(JobQueue(pool), busy.tenant.id, "full", "bench")

    async def queued() -> int:
        async with pool.acquire() as conn:
            return int(await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'sync'", busy.tenant.id
            ))

    # a minute at most, until the full sync has a backlog queued (half of a small one: its
    # first jobs may be done before the rest are queued)
    for _ in range(300):
        if await queued() >= min(size // 2, 2000):
            break
        await asyncio.sleep(0.2)
    looked = await looks()
    during, _ = await _edits(http, salesforce_url, both, 10, seconds, "during")
    during_looks = [now.since(then) for now, then in zip(await looks(), looked, strict=True)]
    usage = cpu().since(before)
    async with pool.acquire() as conn:
        run = await conn.fetchrow("SELECT done, total, state FROM sync_runs WHERE id = $1", run_id)
    backlog = await queued()
    sent = sum(len(t) for t in during.values())
    lost = sent - sum(len(h.latencies(during[h.tenant.id])) for h in both)
    print(f"  beside a first full sync of {size} contacts in one tenant "
          f"(run {run['state']}, {run['done']} of {run['total']} compared, {backlog} jobs "
          f"queued when the edits ended, {lost} of their {sent} lost):")
    for label, hosted in (("another tenant", quiet), ("the syncing tenant's own", busy)):
        print(f"    p99 of {label} edits: {_spread(hosted.latencies(during[hosted.tenant.id]))}"
              f" during, {_spread(hosted.latencies(idle[hosted.tenant.id]))} idle")
    lateness = "; ".join(
        f"bridge {n + 1} {i.late(0.002):.1f} / {i.late(0.01):.1f} idle,"
        f" {d.late(0.002):.1f} / {d.late(0.01):.1f} during"
        for n, (i, d) in enumerate(zip(idle_looks, during_looks, strict=True))
    )
    print(f"    event loop late by > 2 ms / > 10 ms, % of its looks every {LOOP_LOOK_EVERY} s:"
          f" {lateness}")
    shares = ", ".join(f"{name} {share:.0f}" for name, share in usage.shares().items())
    print(f"    CPU % of one core, full sync requested → the edits beside it landed"
          f" ({usage.wall:.0f} s): {shares}, every other process {usage.share(usage.others):.0f};"
          f" busiest: {usage.bottleneck()}; load average now {os.getloadavg()[0]:.1f}")


def main() -> None:
    run_loop(run())


if __name__ == "__main__":
    main()
