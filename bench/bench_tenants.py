"""Many tenants on many processes (issue 15): each tenant its own Salesforce org and Copernica
account in the sandboxes, on several `bridge serve` processes against one PostgreSQL.

1. Real-time edits in Salesforce, spread evenly over every tenant: changes per second in all,
   and each tenant's p99 latency (edit stored → the bridge's write stored in Copernica), the
   best and the worst tenant.
2. The same edits in two tenants while one of them runs a first full sync of many contacts:
   the p99 of the other tenant, and of the syncing tenant's own edits, beside their p99 on an
   idle bridge.

Latency is timed inside the sandboxes (they run in this process), as in ``bench_sync``. Numbers
only, no assertions. ``BENCH_TENANTS`` (default 50), ``BENCH_PROCESSES`` (2),
``BENCH_TENANT_RATE`` (edits per second in all, 20), ``BENCH_TENANT_SECONDS`` (20) and
``BENCH_TENANT_FULL_SYNC`` (contacts of the full sync, 20000; 0: skip phase 2) size it; the
bridge processes get the environment, ``BRIDGE_TENANT_WORKERS`` included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import time
from dataclasses import dataclass

import aiohttp

from bench.harness import (
    Bridge,
    Postgres,
    SandboxPair,
    Setup,
    Watch,
    free_port,
    percentile,
    wait_for,
)
from bridge.config import Settings
from bridge.db import create_pool
from bridge.security.vault import Vault, generate_key
from bridge.sync.jobs import JobQueue
from bridge.sync.runs import request_sync
from bridge.tenants import Tenant, create_tenant
from bridge.vocabulary import CDC_CHANNEL
from sandbox import demo
from sandbox.copernica.accounts import ACCOUNTS
from sandbox.salesforce.orgs import ORGS
from sandbox.salesforce.state import SandboxState

CONTACTS = 20  # contacts of each tenant that the edits go to
LAND_TIMEOUT = 180.0
SETTLE_TIMEOUT = 600.0  # for every tenant's first (small) full sync and streams


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass
class Hosted:
    tenant: Tenant
    org: SandboxState
    watch: Watch
    contacts: list[str]  # Salesforce ids

    def latencies(self, tokens: list[str]) -> list[float]:
        w = self.watch
        return [(w.cp_bridge[t] - w.sf_user[t]) * 1000 for t in tokens if t in w.cp_bridge]


async def _host(pair: SandboxPair, pool, settings: Settings, number: int) -> Hosted:
    assert pair.info is not None
    org = pair.sf_app[ORGS].create(f"Bench org {number}")
    account = await pair.cp_app[ACCOUNTS].create(f"Bench account {number}")
    watch = Watch()
    org.org.events.listeners.append(watch.on_salesforce)
    account.account.listeners.append(watch.on_copernica)
    url = pair.info.salesforce_url
    await _seed(url, org, CONTACTS, number)
    row = await create_tenant(pool, f"bench-{number}", f"Bench company {number}")
    sandboxes = demo.Sandboxes(url, pair.info.copernica_url, org.settings, account.settings)
    tenant = await demo.wire_tenant(pool, Vault(settings.secret_keys), settings, row, sandboxes)
    return Hosted(tenant, org, watch, sorted(org.org.records["Contact"]))


async def _seed(salesforce_url: str, org: SandboxState, count: int, seed: int) -> None:
    """Contacts in ``org`` before the bridge looks (2,000 a request, under the sandbox's limit)."""
    org_id = org.settings.organization_id
    async with aiohttp.ClientSession() as http:
        for start in range(0, count, 2000):
            rng = random.Random(seed * 1000 + start)
            records = [demo.random_contact(rng) for _ in range(min(2000, count - start))]
            async with http.post(
                f"{salesforce_url}/_sandbox/records/Contact?org={org_id}", json={"records": records}
            ) as reply:
                reply.raise_for_status()


async def _edit(http: aiohttp.ClientSession, url: str, hosted: Hosted, sf_id: str, title: str) -> None:
    org_id = hosted.org.settings.organization_id
    async with http.patch(
        f"{url}/_sandbox/contacts/{sf_id}?org={org_id}", json={"Title": title}
    ) as reply:
        reply.raise_for_status()


async def _edits(
    pair: SandboxPair, tenants: list[Hosted], rate: float, seconds: float, tag: str
) -> tuple[dict[int, list[str]], float]:
    """``rate`` edits per second in all, round-robin over ``tenants``, for ``seconds``; wait until
    they landed. Returns each tenant's tokens and the seconds from the first edit to the last
    landing."""
    assert pair.info is not None
    url = pair.info.salesforce_url
    tokens: dict[int, list[str]] = {h.tenant.id: [] for h in tenants}
    cursors = {h.tenant.id: itertools.cycle(h.contacts) for h in tenants}
    count = max(1, round(rate * seconds))
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        pending = []
        for n, hosted in zip(range(count), itertools.cycle(tenants)):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            token = f"{tag}-{n}"
            tokens[hosted.tenant.id].append(token)
            pending.append(asyncio.create_task(
                _edit(http, url, hosted, next(cursors[hosted.tenant.id]), token)
            ))
        await asyncio.gather(*pending)
    by_id = {h.tenant.id: h for h in tenants}
    await wait_for(
        lambda: all(t in by_id[i].watch.cp_bridge for i, ts in tokens.items() for t in ts),
        LAND_TIMEOUT, step=0.1,
    )
    last = max(
        (by_id[i].watch.cp_bridge.get(t, 0.0) for i, ts in tokens.items() for t in ts),
        default=started,
    )
    return tokens, last - started


def _p99(samples: list[float]) -> float:
    return percentile(samples, 0.99)


async def _streaming(setup_pool, tenants: list[Hosted], processes: int) -> bool:
    """Every org has one subscriber, and the leases are shared by every process."""
    if not all(
        sum(CDC_CHANNEL in c.subscriptions for c in h.org.streaming.clients.values()) == 1
        for h in tenants
    ):
        return False
    async with setup_pool.acquire() as conn:
        owners = await conn.fetchval("SELECT count(DISTINCT owner) FROM stream_leases")
        runs = await conn.fetchval(
            "SELECT count(*) FROM sync_runs WHERE kind = 'full' AND state = 'done'"
        )
    return bool(owners == processes and runs >= len(tenants))


async def run() -> None:
    postgres, pair = Postgres(), SandboxPair()
    await postgres.start()
    try:
        await pair.start()
        url = await postgres.new_database()
        pool = await create_pool(url, max_size=4)
        try:
            await _measure(pair, url, pool)
        finally:
            await pool.close()
    finally:
        await pair.stop()
        await postgres.stop()


async def _measure(pair: SandboxPair, url: str, pool) -> None:
    assert pair.info is not None
    count = _setting("BENCH_TENANTS", 50)
    processes = _setting("BENCH_PROCESSES", 2)
    rate = float(_setting("BENCH_TENANT_RATE", 20))
    seconds = float(_setting("BENCH_TENANT_SECONDS", 20))
    full_sync = _setting("BENCH_TENANT_FULL_SYNC", 20000)
    ports = [free_port() for _ in range(processes)]  # the first one's gets the webhooks
    settings = pair.info.settings(Settings(
        database_url=url, secret_keys=(generate_key(),),
        public_url=f"http://127.0.0.1:{ports[0]}", log_level="WARNING",
    ))
    tenants: list[Hosted] = []
    while len(tenants) < count:
        tenants += await asyncio.gather(*(
            _host(pair, pool, settings, len(tenants) + n)
            for n in range(min(10, count - len(tenants)))
        ))
    bridges = [
        Bridge(Setup(url, dataclasses.replace(settings, public_url=f"http://127.0.0.1:{port}"),
                     tenants[0].tenant, pool, port))
        for port in ports
    ]
    try:
        await asyncio.gather(*(b.start(ready_within=120) for b in bridges))
        settled = time.perf_counter()
        while not await _streaming(pool, tenants, processes):
            if time.perf_counter() - settled > SETTLE_TIMEOUT:
                raise RuntimeError("the tenants' streams and first syncs did not settle")
            await asyncio.sleep(0.5)
        async with pool.acquire() as conn:
            shares = sorted(r["n"] for r in await conn.fetch(
                "SELECT count(*) AS n FROM stream_leases GROUP BY owner"
            ))

        tokens, took = await _edits(pair, tenants, rate, seconds, "all")
        edits = sum(len(t) for t in tokens.values())
        p99s = sorted(_p99(h.latencies(tokens[h.tenant.id])) for h in tenants)
        lost = edits - sum(len(h.latencies(tokens[h.tenant.id])) for h in tenants)
        print(f"{count} tenants on {processes} processes (streams per process: "
              f"{', '.join(map(str, shares))})")
        print(f"  real-time edits: {edits} in {took:.1f} s, {edits / took:.1f} changes/s in all, "
              f"{lost} lost; p99 per tenant: best {p99s[0]:.0f} ms, worst {p99s[-1]:.0f} ms")
        if full_sync:
            await _beside_a_full_sync(pair, pool, tenants[0], tenants[1], full_sync, seconds)
    finally:
        await asyncio.gather(*(b.stop() for b in bridges))


async def _beside_a_full_sync(
    pair: SandboxPair, pool, busy: Hosted, quiet: Hosted, size: int, seconds: float
) -> None:
    assert pair.info is not None
    both = [busy, quiet]
    idle, _ = await _edits(pair, both, 10, seconds, "idle")
    await _seed(pair.info.salesforce_url, busy.org, size, 99)
    run_id = await request_sync(JobQueue(pool), busy.tenant.id, "full", "bench")

    async def queued() -> int:
        async with pool.acquire() as conn:
            return int(await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'sync'", busy.tenant.id
            ))

    for _ in range(1500):  # a minute at most: the full sync has its backlog queued
        if await queued() >= min(size, 2000):
            break
        await asyncio.sleep(0.2)
    during, _ = await _edits(pair, both, 10, seconds, "during")
    async with pool.acquire() as conn:
        run = await conn.fetchrow("SELECT done, total, state FROM sync_runs WHERE id = $1", run_id)
    backlog = await queued()
    print(f"  beside a first full sync of {size} contacts in one tenant "
          f"(run {run['state']}, {run['done']} of {run['total']} compared, {backlog} jobs "
          "queued when the edits ended):")
    for label, hosted in (("another tenant", quiet), ("the syncing tenant's own", busy)):
        before = _p99(hosted.latencies(idle[hosted.tenant.id]))
        after = _p99(hosted.latencies(during[hosted.tenant.id]))
        print(f"    p99 of {label} edits: {after:.0f} ms during, {before:.0f} ms idle")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
