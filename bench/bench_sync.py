"""End-to-end sync benchmark: the bridge as a process between the two sandboxes.

Measures what a customer feels and pays: how long an edit on one side takes to show on the
other (at 10 and 100 changes per second), how many changes per second the bridge sustains, how
many API calls it spends per 1,000 changes, and how much memory a first full sync needs.
Latency is timed inside the sandboxes (they run in this process): from the moment the user's edit
is stored on the source side to the moment the bridge's write carrying the same value is stored
on the target side. Numbers only, no assertions.

``BENCH_FULL_SYNC_SIZES`` (default ``10000,100000``; empty: skip) picks the full-sync sizes. The
live phases run on the smallest of them (at least ``LIVE_MIN`` contacts) once its sync is done.

The emulators answer the bridge's ``fields[]=X==v`` searches and ``WHERE Id IN (...)`` queries
from indexes, not scans, so that a large first sync times the bridge, not the sandboxes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

from bench.harness import Bridge, Postgres, SandboxPair, Setup, percentile, seed, wait_for, wire
from bridge.copernica import CopernicaClient
from bridge.retry import RetryPolicy
from bridge.salesforce import ClientCredentialsLogin, SalesforceClient

LIVE_MIN = 4000  # contacts the live phases need at least, so that no record is edited twice
RATES = (10, 100)  # changes per second in all, alternating Salesforce and Copernica edits
STEADY_SECONDS = 5.0
ONE_WAY = 500  # edits in each one-way burst (what one direction costs in API calls)
MIXED = 2000  # edits in the mixed burst, half on each side (sustained changes per second)
PUSHERS = 8  # concurrent edit requests while pushing "as fast as the sandboxes take them"
FLOOR_SAMPLES = 200
LAND_TIMEOUT = 120.0
QUIET = 1.5  # seconds without a bridge API call before a phase counts as finished


def full_sync_sizes() -> list[int]:
    raw = os.environ.get("BENCH_FULL_SYNC_SIZES", "10000,100000")
    return [int(part) for part in raw.replace(" ", "").split(",") if part]


@dataclass
class Latency:
    label: str
    rate: float  # achieved edits per second
    sf_to_cp: list[float]  # milliseconds
    cp_to_sf: list[float]
    lost: int  # edits whose value never reached the other side
    calls: tuple[int, int]  # Salesforce, Copernica API calls during the phase (until quiet)
    changes: int
    hooks: list[float]  # ms per Copernica webhook POST to the bridge during the phase


@dataclass
class Burst:
    label: str
    edits: int
    push_seconds: float  # until the sandboxes had taken every edit
    landed_seconds: float  # until the last of them had been written on the other side
    equal_seconds: float  # until both sides were equal and the bridge's queue was empty
    lost: int
    calls: tuple[int, int]
    held: int
    hooks: list[float]


@dataclass
class FullSync:
    size: int
    seconds: float  # run started → done (sync_runs)
    wall: float  # bridge start → done
    hwm_kib: int
    profiles: int
    state: str
    message: str
    held: int = 0  # sync jobs out of attempts after the run
    ready_kib: int = 0  # VmHWM when the bridge first answered /readyz
    rss_kib: int = 0  # the largest VmRSS sampled (every 0.25 s) while the run went on
    errors: int = 0  # error reports after the run


@dataclass
class Results:
    floor_sf: list[float] = field(default_factory=list)
    floor_cp: list[float] = field(default_factory=list)
    latency: list[Latency] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    full: list[FullSync] = field(default_factory=list)
    live_contacts: int = 0
    load_at_start: float = field(default_factory=lambda: os.getloadavg()[0])
    live_hwm_kib: int = 0


class Editor:
    """Edits "as a user would" through the sandboxes' control APIs, each with a unique Title."""

    def __init__(self, pair: SandboxPair, http: aiohttp.ClientSession) -> None:
        assert pair.info is not None
        self.sf_url, self.cp_url, self.http = pair.info.salesforce_url, pair.info.copernica_url, http

    async def salesforce(self, sf_id: str, title: str) -> None:
        url = f"{self.sf_url}/_sandbox/contacts/{sf_id}"
        async with self.http.patch(url, json={"Title": title}) as reply:
            reply.raise_for_status()

    async def copernica(self, cp_id: int, title: str) -> None:
        url = f"{self.cp_url}/_sandbox/profiles/{cp_id}"
        async with self.http.put(url, json={"fields": {"Title": title}}) as reply:
            reply.raise_for_status()


@dataclass
class Live:
    """The synced state the live phases edit: which contact is which profile."""

    pair: SandboxPair
    setup: Setup
    editor: Editor
    sf_side: Iterator[tuple[str, int]]  # records edited in Salesforce
    cp_side: Iterator[tuple[str, int]]  # records edited in Copernica
    pairs: list[tuple[str, int]]

    def landed(self, sf_tokens: list[str], cp_tokens: list[str]) -> bool:
        w = self.pair.watch
        return all(t in w.cp_bridge for t in sf_tokens) and all(t in w.sf_bridge for t in cp_tokens)

    def equal(self, pairs: list[tuple[str, int]]) -> bool:
        """Each of ``pairs`` shows the same Title on both sides."""
        contacts = self.pair.sf.org.records["Contact"]
        database = self.pair.cp.account.databases[int(self.setup.tenant.copernica_database or 0)]
        title = next(f.id for f in database.fields if f.name == "Title")
        for sf_id, cp_id in pairs:
            sf_title = contacts[sf_id].values.get("Title") or ""
            if database.profiles[cp_id].values.get(title, "") != sf_title:
                return False
        return True

    async def quiet(self, within: float = LAND_TIMEOUT) -> None:
        """Wait until the queue is empty and the bridge made no API call for ``QUIET`` seconds."""
        deadline = time.monotonic() + within
        last, since = self.pair.api_calls(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = self.pair.api_calls()
            if now != last:
                last, since = now, time.monotonic()
                continue
            if time.monotonic() - since >= QUIET and (await self.setup.jobs_pending())[0] == 0:
                return


def _delta(after: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


async def measure_floor(live: Live, results: Results) -> None:
    """One REST GET on each sandbox through the bridge's own clients: the floor of any latency."""
    info = live.pair.info
    assert info is not None
    sf_id, cp_id = live.pairs[0]
    s = info.salesforce
    login = ClientCredentialsLogin(s.client_id, s.client_secret, info.salesforce_url)
    async with SalesforceClient(login, retry=RetryPolicy(base=0.01)) as client:
        await client.get("Contact", sf_id, ["Id", "Title"])  # log in first
        for _ in range(FLOOR_SAMPLES):
            started = time.perf_counter()
            await client.get("Contact", sf_id, ["Id", "Title"])
            results.floor_sf.append((time.perf_counter() - started) * 1000)
    async with CopernicaClient.for_sandbox(info.copernica_url, retry=RetryPolicy(base=0.01)) as cp:
        await cp.profile(cp_id)  # fetch the JWT first
        for _ in range(FLOOR_SAMPLES):
            started = time.perf_counter()
            await cp.profile(cp_id)
            results.floor_cp.append((time.perf_counter() - started) * 1000)


async def steady(live: Live, rate: int, tag: str) -> Latency:
    """``rate`` edits per second for ``STEADY_SECONDS``, alternating sides, paced by the clock."""
    watch = live.pair.watch
    count = int(rate * STEADY_SECONDS)
    sf_tokens: list[str] = []
    cp_tokens: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    before = live.pair.api_calls()
    start = time.perf_counter()
    for k in range(count):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if k % 2 == 0:
            sf_id, _ = next(live.sf_side)
            sf_tokens.append(token := f"{tag}s{k}")
            tasks.append(asyncio.create_task(live.editor.salesforce(sf_id, token)))
        else:
            _, cp_id = next(live.cp_side)
            cp_tokens.append(token := f"{tag}c{k}")
            tasks.append(asyncio.create_task(live.editor.copernica(cp_id, token)))
    await asyncio.gather(*tasks)
    achieved = count / max(time.perf_counter() - start, 1e-9)
    await wait_for(lambda: live.landed(sf_tokens, cp_tokens), LAND_TIMEOUT)
    await live.quiet()
    calls = _delta(live.pair.api_calls(), before)
    sf_to_cp = [(watch.cp_bridge[t] - watch.sf_user[t]) * 1000 for t in sf_tokens if t in watch.cp_bridge]
    cp_to_sf = [(watch.sf_bridge[t] - watch.cp_user[t]) * 1000 for t in cp_tokens if t in watch.sf_bridge]
    lost = count - len(sf_to_cp) - len(cp_to_sf)
    hooks = [ms for end, ms in watch.hooks if end >= start]
    return Latency(f"{rate}/s", achieved, sf_to_cp, cp_to_sf, lost, calls, count, hooks)


async def burst(live: Live, label: str, tag: str, sf_edits: int, cp_edits: int) -> Burst:
    """Push edits as fast as the sandboxes take them; time until both sides agree again."""
    work: list[tuple[str, str | int, str]] = []
    edited: list[tuple[str, int]] = []
    for k in range(sf_edits):
        edited.append(record := next(live.sf_side))
        work.append(("sf", record[0], f"{tag}s{k}"))
    for k in range(cp_edits):
        edited.append(record := next(live.cp_side))
        work.append(("cp", record[1], f"{tag}c{k}"))
    if sf_edits and cp_edits:  # interleave, as real traffic would be
        work = [w for pair in itertools.zip_longest(work[:sf_edits], work[sf_edits:]) for w in pair if w]
    sf_tokens = [t for side, _, t in work if side == "sf"]
    cp_tokens = [t for side, _, t in work if side == "cp"]
    pending = iter(work)
    before = live.pair.api_calls()
    start = time.perf_counter()

    async def pusher() -> None:
        for side, record, token in pending:
            if side == "sf":
                await live.editor.salesforce(str(record), token)
            else:
                await live.editor.copernica(int(record), token)

    await asyncio.gather(*(pusher() for _ in range(PUSHERS)))
    pushed = time.perf_counter() - start
    await wait_for(lambda: live.landed(sf_tokens, cp_tokens), LAND_TIMEOUT)
    watch = live.pair.watch
    arrivals = [watch.cp_bridge[t] for t in sf_tokens if t in watch.cp_bridge]
    arrivals += [watch.sf_bridge[t] for t in cp_tokens if t in watch.sf_bridge]
    landed = (max(arrivals) - start) if arrivals else float("nan")
    deadline = time.monotonic() + LAND_TIMEOUT
    equal_at = float("nan")
    while time.monotonic() < deadline:
        if live.equal(edited) and (await live.setup.jobs_pending())[0] == 0:
            equal_at = time.perf_counter() - start
            break
        await asyncio.sleep(0.05)
    await live.quiet()
    calls = _delta(live.pair.api_calls(), before)
    held = (await live.setup.jobs_pending())[1]
    hooks = [ms for end, ms in watch.hooks if end >= start]
    return Burst(
        label, len(work), pushed, landed, equal_at, len(work) - len(arrivals), calls, held, hooks
    )


async def follow_run(setup: Setup, bridge: Bridge, run_id: int, label: str, every: float) -> FullSync:
    """Poll ``sync_runs`` until the run is done (or failed), printing progress now and then."""
    started = time.perf_counter()
    last_print = started
    rss = 0
    while True:
        rss = max(rss, bridge.memory().get("VmRSS", 0))
        row = await setup.run_row(run_id)
        now = time.perf_counter()
        if row["state"] in ("done", "failed"):
            break
        if now - last_print >= every:
            last_print = now
            total = row["total"]
            print(
                f"  {label}: {row['state']} {row['done']}/{total if total is not None else '?'}"
                f" after {now - started:.0f} s, bridge RSS {rss / 1024:.0f} MiB (max so far)",
                flush=True,
            )
        if bridge.process is not None and bridge.process.returncode is not None:
            raise RuntimeError(f"the bridge exited with {bridge.process.returncode}")
        await asyncio.sleep(0.25)
    seconds = (row["finished_at"] - row["started_at"]).total_seconds() if row["started_at"] else 0.0
    return FullSync(
        size=0, seconds=seconds, wall=time.perf_counter() - started,
        hwm_kib=bridge.memory().get("VmHWM", 0), profiles=0, state=row["state"],
        message=row["message"] or "", rss_kib=rss,
    )


@dataclass
class Environment:
    """Sandboxes seeded with ``size`` contacts, a tenant, and a bridge that has synced them."""

    pair: SandboxPair
    setup: Setup | None = None
    bridge: Bridge | None = None

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
        if self.setup is not None:
            await self.setup.pool.close()
        await self.pair.stop()


async def synced(postgres: Postgres, size: int, env: Environment) -> FullSync:
    """Seed ``size`` contacts silently, start a bridge, follow its first full sync to "done"."""
    info = await env.pair.start()
    print(f"  full sync {size}: seeding ...", flush=True)
    await seed(info.salesforce_url, size)
    env.setup = await wire(postgres, env.pair, slug=f"full-{size}")
    run_id = await env.setup.request_full_sync()  # before the bridge starts: no second one
    env.bridge = Bridge(env.setup)
    await env.bridge.start()
    ready_kib = env.bridge.memory().get("VmHWM", 0)
    outcome = await follow_run(
        env.setup, env.bridge, run_id, f"full sync {size}", 5.0 if size <= 20_000 else 15.0
    )
    outcome.size, outcome.ready_kib = size, ready_kib
    outcome.profiles = len(env.pair.profiles(env.setup.tenant.copernica_database or "0"))
    outcome.held = (await env.setup.jobs_pending())[1]
    outcome.errors = await env.setup.error_count()
    return outcome


async def live_phases(env: Environment, results: Results) -> None:
    """Latency, throughput and API calls on a synced environment whose bridge streams."""
    pair, setup, bridge = env.pair, env.setup, env.bridge
    assert setup is not None and bridge is not None
    if not await wait_for(pair.streaming, 30):
        print("  live: the bridge never subscribed to the CDC channel", flush=True)
    database = pair.cp.account.databases[int(setup.tenant.copernica_database or 0)]
    link = next(f.id for f in database.fields if f.name == "SalesforceId")
    by_sf = {p.values.get(link, ""): p.id for p in database.live_profiles()}
    pairs = sorted((sf, cp) for sf, cp in by_sf.items() if sf in pair.sf.org.records["Contact"])
    half = len(pairs) // 2
    async with aiohttp.ClientSession() as http:
        live = Live(
            pair, setup, Editor(pair, http), itertools.cycle(pairs[:half]),
            itertools.cycle(pairs[half:]), pairs,
        )
        await live.quiet()
        print(f"  live: {len(pairs)} linked pairs; sandbox floor ...", flush=True)
        await measure_floor(live, results)
        for n, rate in enumerate(RATES):
            print(f"  live: {rate} changes/s for {STEADY_SECONDS:.0f} s ...", flush=True)
            results.latency.append(await steady(live, rate, f"L{n}"))
        runs = [
            ("Salesforce → Copernica", ONE_WAY, 0),
            ("Copernica → Salesforce", 0, ONE_WAY),
            ("both at once", MIXED // 2, MIXED - MIXED // 2),
        ]
        for n, (label, sf_edits, cp_edits) in enumerate(runs):
            print(f"  live: burst, {label}, {sf_edits + cp_edits} edits ...", flush=True)
            results.bursts.append(await burst(live, label, f"B{n}", sf_edits, cp_edits))
    results.live_contacts = len(pairs)
    results.live_hwm_kib = bridge.memory().get("VmHWM", 0)


async def run() -> Results:
    results = Results()
    sizes = sorted(set(full_sync_sizes()))
    live_size = next((s for s in sizes if s >= LIVE_MIN), LIVE_MIN)
    postgres = Postgres()
    await postgres.start()
    try:
        for size in sorted({*sizes, live_size}, key=lambda s: (s != live_size, s)):
            env = Environment(SandboxPair())
            try:
                outcome = await synced(postgres, size, env)
                if size in sizes:
                    results.full.append(outcome)
                if size == live_size:
                    await live_phases(env, results)
            finally:
                await env.stop()
    finally:
        await postgres.stop()
    results.full.sort(key=lambda f: f.size)
    return results


def _ms(samples: list[float]) -> str:
    return " ".join(f"{percentile(samples, q):>8.1f}" for q in (0.5, 0.95, 0.99))


def _per_1000(calls: tuple[int, int], changes: int) -> str:
    if not changes:
        return f"{'-':>8} {'-':>8}"
    return f"{calls[0] * 1000 / changes:>8.0f} {calls[1] * 1000 / changes:>8.0f}"


def report(results: Results) -> None:
    print(
        f"\nmachine: {platform.node()}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}),"
        f" Python {platform.python_version()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z};"
        f" load average now {os.getloadavg()[0]:.1f}, at start {results.load_at_start:.1f}"
    )
    print(f"live phases on {results.live_contacts} synced contacts")

    print("\nSandbox floor: one REST GET (ms)          n      p50      p99")
    for label, samples in (("Salesforce", results.floor_sf), ("Copernica", results.floor_cp)):
        print(
            f"  {label:<38}{len(samples):>5} {percentile(samples, 0.5):>8.2f}"
            f" {percentile(samples, 0.99):>8.2f}"
        )

    print(
        "\nEnd-to-end latency (ms), edit stored → bridge's write stored; half the edits on each side"
    )
    print(
        f"  {'load':<8}{'achieved':>9}  {'direction':<24}{'n':>5} {'p50':>8} {'p95':>8} {'p99':>8}"
        f"  {'lost':>4} {'SF/1k':>8} {'CP/1k':>8}"
    )
    for item in results.latency:
        for n, (label, samples) in enumerate(
            (("Salesforce → Copernica", item.sf_to_cp), ("Copernica → Salesforce", item.cp_to_sf))
        ):
            lead = f"  {item.label:<8}{item.rate:>8.1f}/s" if n == 0 else " " * 19
            tail = f"  {item.lost:>4} {_per_1000(item.calls, item.changes)}" if n == 0 else ""
            print(f"{lead}  {label:<24}{len(samples):>5} {_ms(samples)}{tail}")

    print(
        f"\nSustained throughput: edits pushed by {PUSHERS} concurrent clients, each record once;"
        " landed = last write on the other side, equal = both sides equal and queue empty"
    )
    print(
        f"  {'edits':<30}{'n':>5} {'pushed s':>9} {'landed s':>9} {'equal s':>8} {'changes/s':>10}"
        f"  {'lost':>4} {'held':>4} {'SF/1k':>8} {'CP/1k':>8}"
    )
    for b in results.bursts:
        rate = b.edits / b.equal_seconds if b.equal_seconds == b.equal_seconds else float("nan")
        print(
            f"  {b.label:<30}{b.edits:>5} {b.push_seconds:>9.2f} {b.landed_seconds:>9.2f}"
            f" {b.equal_seconds:>8.2f} {rate:>10.0f}  {b.lost:>4} {b.held:>4}"
            f" {_per_1000(b.calls, b.edits)}"
        )
    print("  (SF/1k, CP/1k: Salesforce and Copernica API calls the bridge made per 1,000 changes)")

    print(
        "\nCopernica webhook POSTs to the bridge (ms, signing + the bridge's answer; Copernica"
        " delivers one at a time per webhook)"
    )
    print(f"  {'phase':<30}{'n':>5} {'p50':>8} {'p95':>8} {'p99':>8}")
    phases = [(f"steady {item.label}", item.hooks) for item in results.latency]
    phases += [(f"burst, {b.label}", b.hooks) for b in results.bursts]
    for label, samples in phases:
        print(f"  {label:<30}{len(samples):>5} {_ms(samples)}")

    print(
        "\nFirst full sync: seeded Salesforce contacts → empty Copernica, fresh bridge process;"
        " MiB: VmHWM when /readyz first answered and when"
        " the run was done, and the largest VmRSS sampled during the run"
    )
    print(
        f"  {'contacts':>9} {'run s':>8} {'wall s':>8} {'rec/s':>7} {'ready MiB':>10} {'peak MiB':>9}"
        f" {'max RSS':>8}"
        f" {'profiles':>9} {'held':>5} {'errors':>6}  state"
    )
    for f in results.full:
        print(
            f"  {f.size:>9} {f.seconds:>8.1f} {f.wall:>8.1f} {f.size / max(f.seconds, 1e-9):>7.0f}"
            f" {f.ready_kib / 1024:>10.1f} {f.hwm_kib / 1024:>9.1f} {f.rss_kib / 1024:>8.1f}"
            f" {f.profiles:>9} {f.held:>5} {f.errors:>6}"
            f"  {f.state}: {f.message}"
        )
    if results.live_hwm_kib:
        print(
            f"  (the bridge of the live phases, {results.live_contacts} contacts, after all of"
            f" them: peak RSS {results.live_hwm_kib / 1024:.1f} MiB)"
        )


def main() -> None:
    report(asyncio.run(run()))


if __name__ == "__main__":
    main()
