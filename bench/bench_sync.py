"""End-to-end sync benchmark: the bridge as a process between the two sandboxes, each its own
process too, so that what is measured is the bridge and not the harness.

Per phase it prints what a customer feels and pays: how long an edit on one side takes to show on
the other (p50/p95/p99 at 10, 100 and 500 changes per second, half the edits on each side), how
many API calls the bridge spends per 1,000 changes on each platform (from the sandboxes' own
counters), the bridge's CPU milliseconds per change (its ``/proc`` times), the changes per second
it sustains (the rate of the middle 80 % of its landings), how long the Copernica webhook endpoint
takes to answer (and how long its deliveries waited in the sandbox), and the time and peak
memory of a first full sync. Each phase also says which process was busiest, so that a number
held back by a sandbox (or the bench) is not taken for the bridge's.

Latency runs from the moment the sandbox stored the user's edit to the moment the other sandbox
stored the bridge's write carrying the same token (both on the machine's monotonic clock).
Numbers only, no assertions. ``python -m bench sync --quick`` is the short run (under a minute);
without ``--quick`` it adds full syncs of 10,000 and 100,000 contacts. Every run writes
``bench/results.json``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import (
    WEBHOOK_CONCURRENCY,
    Bridge,
    Emulators,
    Postgres,
    Recorder,
    Setup,
    Usage,
    linked_pairs,
    percentile,
    seed,
    streaming,
    wait_for,
    wire,
)
from bridge.cli import run_loop
from bridge.copernica import CopernicaClient
from bridge.retry import RetryPolicy
from bridge.salesforce import ClientCredentialsLogin, SalesforceClient

RESULTS = Path(__file__).with_name("results.json")
TOKEN_PREFIX = "bench-"  # every edited Title starts with it; the sandboxes record only those
RATES = (10, 100, 500)  # changes per second in all, alternating Salesforce and Copernica edits
PUSHERS = 8  # concurrent edit requests while pushing "as fast as the sandboxes take them"
FLOOR_SAMPLES = 100
LAND_TIMEOUT = 180.0
QUIET = 1.0  # seconds without an API call (and no job waiting) before a phase counts as settled


@dataclass(frozen=True)
class Plan:
    full_syncs: tuple[int, ...]  # first full syncs measured on their own (beside the live one's)
    live_contacts: int  # contacts of the environment the live phases edit (its sync is measured)
    steady_seconds: float
    one_way: int  # edits of each one-way burst
    mixed: int  # edits of the mixed burst, half on each side (sustained changes per second)


# the mixed burst edits every live record once: long enough for a steady middle
QUICK = Plan((), 3_000, 2.0, 300, 3_000)  # under 5 minutes on 2 shared cores
FULL = Plan((100_000,), 10_000, 5.0, 1_000, 10_000)


@dataclass
class Phase:
    label: str
    changes: int
    push_seconds: float  # until the sandboxes had taken every edit
    landed_seconds: float  # until the last of them had been written on the other side
    sf_to_cp: list[float]  # ms, edit stored → the bridge's write stored
    cp_to_sf: list[float]
    lost: int  # edits that never reached the other side
    arrivals: list[float]  # when each edit's write landed on the other side, in order
    calls_landed: tuple[int, int]  # Salesforce, Copernica API calls from start until all landed
    calls_settled: tuple[int, int]  # ... until the bridge was quiet again
    busy: Usage  # start → all landed: who was busy
    work: Usage  # start → settled: what the changes cost
    answers: list[float] = field(default_factory=list)  # ms, Copernica's webhook POST → answer
    queued: list[float] = field(default_factory=list)  # ms, the change → the sandbox's POST

    @property
    def achieved(self) -> float:
        return self.changes / self.push_seconds if self.push_seconds > 0 else float("nan")

    @property
    def landed(self) -> float:
        """Changes per second from the first push to the last landing."""
        return self.changes / self.landed_seconds if self.landed_seconds > 0 else float("nan")

    @property
    def sustained(self) -> float:
        """Changes per second the bridge keeps up with: the rate of the middle 80 % of the
        landings, without the pipeline's filling and the last batching window's draining."""
        first, last = len(self.arrivals) // 10, len(self.arrivals) * 9 // 10
        if last <= first or self.arrivals[last] <= self.arrivals[first]:
            return float("nan")
        return (last - first) / (self.arrivals[last] - self.arrivals[first])

    def cpu_ms_per_change(self) -> float:
        return self.work.bridge * 1000 / self.changes if self.changes else float("nan")


@dataclass
class FullSync:
    size: int
    seconds: float  # run started → done (sync_runs)
    hwm_kib: int  # the bridge's VmHWM when the run was done
    ready_kib: int  # ... when it first answered /readyz
    rss_kib: int  # the largest VmRSS sampled (every 0.25 s) while the run went on
    state: str
    message: str
    usage: Usage
    calls: tuple[int, int]
    profiles: int = 0
    queued_hooks: int = 0  # the sandbox's webhook deliveries (echoes) not yet sent when done
    held: int = 0  # sync jobs out of attempts after the run
    errors: int = 0  # error reports after the run


@dataclass
class Results:
    plan: Plan
    floor_sf: list[float] = field(default_factory=list)
    floor_cp: list[float] = field(default_factory=list)
    phases: dict[str, Phase] = field(default_factory=dict)
    full: list[FullSync] = field(default_factory=list)
    live_hwm_kib: int = 0
    load_at_start: float = field(default_factory=lambda: os.getloadavg()[0])
    started: float = field(default_factory=time.monotonic)


@dataclass
class Environment:
    """Both sandboxes (processes), a tenant wired to them, and the bridge serving it."""

    postgres: Postgres
    emulators: Emulators = field(default_factory=Emulators)
    setup: Setup | None = None
    bridge: Bridge | None = None

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
        if self.setup is not None:
            await self.setup.pool.close()
        await self.emulators.stop()


async def api_calls(env: Environment) -> tuple[int, int]:
    """Both sandboxes' API call counters right now."""
    info = env.emulators.info
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{info.salesforce_url}/_sandbox/landings") as reply:
            sf = (await reply.json())["api_calls"]
        async with http.get(f"{info.copernica_url}/_sandbox/landings") as reply:
            cp = (await reply.json())["api_calls"]
    return int(sf), int(cp)


async def webhooks_queued(env: Environment) -> int:
    """Webhook deliveries the Copernica sandbox has not sent yet (a drain that waits no time)."""
    url = f"{env.emulators.info.copernica_url}/_sandbox/webhooks/drain"
    async with aiohttp.ClientSession() as http, http.post(url, params={"timeout": "0"}) as reply:
        return int((await reply.json())["pending"])


def _delta(after: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


async def synced(postgres: Postgres, size: int, env: Environment) -> FullSync:
    """Seed ``size`` contacts silently, start a bridge, follow its first full sync to "done"."""
    info = await env.emulators.start()
    print(f"  full sync {size}: seeding ...", flush=True)
    await seed(info.salesforce_url, size)
    env.setup = await wire(postgres, info, slug=f"full-{size}")
    run_id = await env.setup.request_full_sync()  # before the bridge starts: no second one
    env.bridge = Bridge(env.setup)
    calls = await api_calls(env)
    await env.bridge.start()
    ready_kib = env.bridge.memory().get("VmHWM", 0)
    before = Usage.now(env.bridge.pid, env.emulators, postgres.pid())
    every, last_print = (5.0 if size <= 20_000 else 15.0), time.monotonic()
    rss = 0
    while True:
        rss = max(rss, env.bridge.memory().get("VmRSS", 0))
        row = await env.setup.run_row(run_id)
        if row["state"] in ("done", "failed"):
            break
        if env.bridge.process is not None and env.bridge.process.returncode is not None:
            raise RuntimeError(f"the bridge exited with {env.bridge.process.returncode}")
        if time.monotonic() - last_print >= every:
            last_print = time.monotonic()
            waiting = (await env.setup.jobs_pending())[0]
            print(f"  full sync {size}: {row['state']} {row['done']}/{row['total'] or '?'} compared,"
                  f" {waiting} jobs waiting, bridge RSS {rss / 1024:.0f} MiB (max so far)", flush=True)
        await asyncio.sleep(0.25)
    queued_hooks = await webhooks_queued(env)
    usage = Usage.now(env.bridge.pid, env.emulators, postgres.pid()).since(before)
    seconds = (row["finished_at"] - row["started_at"]).total_seconds() if row["started_at"] else 0.0
    database = env.setup.tenant.copernica_database or "0"
    return FullSync(
        size=size, seconds=seconds, hwm_kib=env.bridge.memory().get("VmHWM", 0),
        ready_kib=ready_kib, rss_kib=rss, state=row["state"], message=row["message"] or "", usage=usage,
        calls=_delta(await api_calls(env), calls),
        profiles=len(await linked_pairs(info, database)), queued_hooks=queued_hooks,
        held=(await env.setup.jobs_pending())[1], errors=await env.setup.error_count(),
    )


class Editor:
    """Edits "as a user would" through the sandboxes' control APIs, each with a unique Title."""

    def __init__(self, env: Environment, http: aiohttp.ClientSession) -> None:
        info = env.emulators.info
        self.sf_url, self.cp_url, self.http = info.salesforce_url, info.copernica_url, http

    async def salesforce(self, sf_id: str, title: str) -> None:
        url = f"{self.sf_url}/_sandbox/contacts/{sf_id}"
        async with self.http.patch(url, json={"Title": title}) as reply:
            reply.raise_for_status()

    async def copernica(self, cp_id: int, title: str) -> None:
        url = f"{self.cp_url}/_sandbox/profiles/{cp_id}"
        async with self.http.put(url, json={"fields": {"Title": title}}) as reply:
            reply.raise_for_status()


Edits = tuple[list[str], list[str]]  # tokens edited in Salesforce, in Copernica


@dataclass
class Live:
    """A synced environment whose bridge streams, and the records the phases edit."""

    env: Environment
    recorder: Recorder
    editor: Editor
    sf_side: Iterator[tuple[str, int]]  # records edited in Salesforce
    cp_side: Iterator[tuple[str, int]]  # records edited in Copernica
    last_delivery: int = 0  # the Copernica sandbox's last webhook event already counted

    @property
    def setup(self) -> Setup:
        assert self.env.setup is not None
        return self.env.setup

    def usage(self) -> Usage:
        assert self.env.bridge is not None
        return Usage.now(self.env.bridge.pid, self.env.emulators, self.env.postgres.pid())

    def landed(self, edits: Edits) -> bool:
        landed = self.recorder.landed
        return all(t in landed.cp_bridge for t in edits[0]) and all(
            t in landed.sf_bridge for t in edits[1]
        )

    async def settle(self, within: float = LAND_TIMEOUT) -> None:
        """Wait until no job and no webhook delivery waits, and the bridge made no API call for
        ``QUIET`` seconds."""
        deadline = time.monotonic() + within
        last, since = self.recorder.calls, time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if self.recorder.calls != last:
                last, since = self.recorder.calls, time.monotonic()
            elif (
                time.monotonic() - since >= QUIET
                and (await self.setup.jobs_pending())[0] == 0
                and await self.webhooks_pending() == 0
            ):
                return

    async def webhooks_pending(self) -> int:
        url = f"{self.env.emulators.info.copernica_url}/_sandbox/stats"
        async with self.editor.http.get(url) as reply:
            return int((await reply.json())["webhooks_pending"])

    async def measure(self, label: str, push: Callable[[], Awaitable[Edits]]) -> Phase:
        """Run ``push``; wait until its edits landed and the bridge settled; count and time."""
        await self.recorder.poll()
        await self.webhook_answers()  # the earlier phases' deliveries are not this one's
        calls, before, start = self.recorder.calls, self.usage(), time.monotonic()
        edits = await push()
        pushed = time.monotonic() - start
        await wait_for(lambda: self.landed(edits), LAND_TIMEOUT, step=0.05)
        await self.recorder.poll()
        calls_landed, busy = _delta(self.recorder.calls, calls), self.usage().since(before)
        await self.settle()
        calls_settled, work = _delta(self.recorder.calls, calls), self.usage().since(before)
        landed = self.recorder.landed
        sf_to_cp = [(landed.cp_bridge[t] - landed.sf_user[t]) * 1000
                    for t in edits[0] if t in landed.cp_bridge and t in landed.sf_user]
        cp_to_sf = [(landed.sf_bridge[t] - landed.cp_user[t]) * 1000
                    for t in edits[1] if t in landed.sf_bridge and t in landed.cp_user]
        arrivals = [landed.cp_bridge[t] for t in edits[0] if t in landed.cp_bridge]
        arrivals += [landed.sf_bridge[t] for t in edits[1] if t in landed.sf_bridge]
        arrivals.sort()
        changes = len(edits[0]) + len(edits[1])
        return Phase(
            label, changes, pushed, (arrivals[-1] - start) if arrivals else float("nan"),
            sf_to_cp, cp_to_sf, changes - len(arrivals), arrivals, calls_landed, calls_settled,
            busy, work, *await self.webhook_answers(),
        )

    async def webhook_answers(self) -> tuple[list[float], list[float]]:
        """ms the bridge took to answer each Copernica webhook delivery since the last ask, and
        the ms each waited in the sandbox's queue before it went out (the sandbox keeps its
        last 2,000 attempts; read once per phase, not polled)."""
        url = f"{self.env.emulators.info.copernica_url}/_sandbox/webhooks/deliveries"
        async with self.editor.http.get(url) as reply:
            attempts = (await reply.json())["attempts"]
        fresh = [a for a in attempts if a["event"] > self.last_delivery]
        self.last_delivery = max((a["event"] for a in attempts), default=self.last_delivery)
        answered = [a for a in fresh if a.get("ok") and "answer_ms" in a]
        return ([float(a["answer_ms"]) for a in answered],
                [float(a["latency_ms"]) - float(a["answer_ms"]) for a in answered])


async def measure_floor(live: Live, results: Results) -> None:
    """One REST GET on each sandbox through the bridge's own clients: the floor of any latency."""
    info = live.env.emulators.info
    sf_id, cp_id = next(live.sf_side)
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


def steady(live: Live, rate: int, seconds: float, tag: str) -> Callable[[], Awaitable[Edits]]:
    """``rate`` edits per second for ``seconds``, alternating sides, paced by the clock."""

    async def push() -> Edits:
        sf_tokens: list[str] = []
        cp_tokens: list[str] = []
        tasks: list[asyncio.Task[Any]] = []
        start = time.monotonic()
        for k in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            token = f"{TOKEN_PREFIX}{tag}-{k}"
            if k % 2 == 0:
                sf_tokens.append(token)
                edit = live.editor.salesforce(next(live.sf_side)[0], token)
            else:
                cp_tokens.append(token)
                edit = live.editor.copernica(next(live.cp_side)[1], token)
            tasks.append(asyncio.create_task(edit))
        await asyncio.gather(*tasks)
        return sf_tokens, cp_tokens

    return push


def burst(live: Live, tag: str, sf_edits: int, cp_edits: int) -> Callable[[], Awaitable[Edits]]:
    """Edits pushed by ``PUSHERS`` concurrent clients as fast as the sandboxes take them,
    interleaved when both sides are edited, each record once."""
    sf_work = [("sf", f"{TOKEN_PREFIX}{tag}-s{k}") for k in range(sf_edits)]
    cp_work = [("cp", f"{TOKEN_PREFIX}{tag}-c{k}") for k in range(cp_edits)]
    work = [w for pair in itertools.zip_longest(sf_work, cp_work) for w in pair if w]

    async def push() -> Edits:
        pending = iter(work)

        async def pusher() -> None:
            for side, token in pending:
                if side == "sf":
                    await live.editor.salesforce(next(live.sf_side)[0], token)
                else:
                    await live.editor.copernica(next(live.cp_side)[1], token)

        await asyncio.gather(*(pusher() for _ in range(PUSHERS)))
        return [t for _, t in sf_work], [t for _, t in cp_work]

    return push


async def live_phases(env: Environment, plan: Plan, results: Results) -> None:
    """Latency, throughput, API calls and CPU on a synced environment whose bridge streams."""
    assert env.setup is not None and env.bridge is not None
    info = env.emulators.info
    if not await wait_for_async(lambda: streaming(info), 30):
        print("  live: the bridge never subscribed to the CDC channel", flush=True)
    pairs = await linked_pairs(info, env.setup.tenant.copernica_database or "0")
    half = len(pairs) // 2
    async with aiohttp.ClientSession() as http:
        recorder = Recorder(http, info, TOKEN_PREFIX)
        await recorder.start()
        live = Live(env, recorder, Editor(env, http), itertools.cycle(pairs[:half]),
                    itertools.cycle(pairs[half:]))
        try:
            await live.settle()
            print(f"  live: {len(pairs)} linked pairs; sandbox floor ...", flush=True)
            await measure_floor(live, results)
            steps: list[tuple[str, Callable[[], Awaitable[Edits]]]] = [
                (f"steady {rate}/s", steady(live, rate, plan.steady_seconds, f"L{rate}"))
                for rate in RATES
            ]
            steps += [
                ("burst Salesforce → Copernica", burst(live, "B1", plan.one_way, 0)),
                ("burst Copernica → Salesforce", burst(live, "B2", 0, plan.one_way)),
                ("burst both ways (sustained)", burst(live, "B3", plan.mixed // 2, plan.mixed // 2)),
            ]
            for label, push in steps:
                print(f"  live: {label} ...", flush=True)
                results.phases[label] = await live.measure(label, push)
        finally:
            await recorder.stop()
    results.live_hwm_kib = env.bridge.memory().get("VmHWM", 0)


async def wait_for_async(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def run(plan: Plan) -> Results:
    results = Results(plan)
    postgres = Postgres()
    await postgres.start()
    try:
        for size in (plan.live_contacts, *plan.full_syncs):
            env = Environment(postgres)
            try:
                results.full.append(await synced(postgres, size, env))
                if size == plan.live_contacts:
                    await live_phases(env, plan, results)
            finally:
                await env.stop()
    finally:
        await postgres.stop()
    results.full.sort(key=lambda f: f.size)
    return results


# --- report -----------------------------------------------------------------------------------


def _ms(samples: list[float]) -> str:
    return " ".join(f"{percentile(samples, q):>7.1f}" for q in (0.5, 0.95, 0.99))


def _per_1000(calls: tuple[int, int], changes: int) -> tuple[float, float]:
    if not changes:
        return float("nan"), float("nan")
    return calls[0] * 1000 / changes, calls[1] * 1000 / changes


CPU_COLUMNS = f"{'brdg':>4} {'SF':>4} {'CP':>4} {'pg':>4} {'bnch':>4} {'else':>4}"


def _cpu(usage: Usage) -> str:
    return " ".join(f"{usage.share(seconds):>4.0f}" for seconds in (
        usage.bridge, usage.salesforce, usage.copernica, usage.postgres, usage.bench, usage.others
    ))


def report(results: Results) -> None:
    plan = results.plan
    print(
        f"\nmachine: {platform.node()}, {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}),"
        f" Python {platform.python_version()}; {datetime.now().astimezone():%Y-%m-%d %H:%M %Z};"
        f" load average now {os.getloadavg()[0]:.1f}, at start {results.load_at_start:.1f};"
        f" {'quick' if plan == QUICK else 'full'} run took {time.monotonic() - results.started:.0f} s"
    )
    print(f"live phases on {plan.live_contacts} synced contacts; sandboxes, bridge and PostgreSQL"
          " each in their own processes; the Copernica sandbox sends"
          f" {WEBHOOK_CONCURRENCY} webhook(s) at once (BENCH_WEBHOOK_CONCURRENCY)")

    print("\nSandbox floor: one REST GET through the bridge's clients (ms)    n     p50     p99")
    for label, samples in (("Salesforce", results.floor_sf), ("Copernica", results.floor_cp)):
        print(f"  {label:<61}{len(samples):>4} {percentile(samples, 0.5):>7.2f}"
              f" {percentile(samples, 0.99):>7.2f}")

    print(
        "\nPhases (steady: paced, half the edits on each side; bursts: as fast as the sandboxes"
        f" take them, {PUSHERS} clients). latency ms: edit stored → bridge's write stored on the"
        " other side."
        " SF/1k, CP/1k: API calls per 1,000 changes\n  until all landed (and until settled)."
        " CPU ms/chg: the bridge's. CPU %: of one core, start → all landed,\n  for the bridge,"
        " the Salesforce and Copernica sandboxes, PostgreSQL, the bench, and every other process"
        " of the machine."
    )
    print(
        f"  {'phase':<30}{'chg':>5} {'push/s':>7} {'land/s':>7}  {'direction':<8}{'n':>5}"
        f" {'p50':>7} {'p95':>7} {'p99':>7} {'lost':>4}  {'SF/1k':>11} {'CP/1k':>11}"
        f" {'CPU ms/chg':>10}  {CPU_COLUMNS}  busiest"
    )
    for phase in results.phases.values():
        sf_landed, cp_landed = _per_1000(phase.calls_landed, phase.changes)
        sf_settled, cp_settled = _per_1000(phase.calls_settled, phase.changes)
        directions = [("SF → CP", phase.sf_to_cp), ("CP → SF", phase.cp_to_sf)]
        directions = [(label, samples) for label, samples in directions if samples] or directions
        for n, (label, samples) in enumerate(directions):
            head = (f"  {phase.label:<30}{phase.changes:>5} {phase.achieved:>7.0f}"
                    f" {phase.landed:>7.0f}" if n == 0 else " " * 52)
            tail = (f" {phase.lost:>4}  {sf_landed:>5.0f} ({sf_settled:>3.0f}) {cp_landed:>5.0f}"
                    f" ({cp_settled:>3.0f}) {phase.cpu_ms_per_change():>10.2f}  {_cpu(phase.busy)}"
                    f"  {phase.busy.bottleneck()}" if n == 0 else "")
            print(f"{head}  {label:<8}{len(samples):>5} {_ms(samples)}{tail}")
    _ceiling(results.phases["burst both ways (sustained)"])
    print("\nCopernica webhook deliveries to the bridge: the sandbox's POST → the bridge's answer"
          " (ms; verify, drop or store, commit), and before it the wait\n  in the sandbox's queue"
          f" ({WEBHOOK_CONCURRENCY} go out at once): long waits beside short answers are the"
          " sandbox holding changes back, not the bridge")
    print(f"  {'phase':<30}{'n':>6} {'p50':>7} {'p95':>7} {'p99':>7}   queued {'p50':>7}"
          f" {'p95':>7} {'p99':>7}")
    for phase in results.phases.values():
        print(f"  {phase.label:<30}{len(phase.answers):>6} {_ms(phase.answers)}"
              f"          {_ms(phase.queued)}")

    print(
        "\nFirst full sync: seeded Salesforce contacts → empty Copernica, fresh bridge process;"
        " MiB: the bridge's VmHWM when /readyz first\n  answered and when the run was done, and"
        " the largest VmRSS sampled during the run;"
        " calls per 1,000 contacts; hooks: webhook deliveries\n  (the echoes of its writes) the"
        " Copernica sandbox had not sent yet when the run was done; CPU % of one core over the run"
    )
    print(
        f"  {'contacts':>9} {'run s':>8} {'rec/s':>7} {'ready MiB':>10} {'peak MiB':>9} {'max RSS':>8}"
        f" {'SF/1k':>6} {'CP/1k':>6} {'profiles':>9} {'hooks':>6} {'held':>5} {'errors':>6}"
        f"  {CPU_COLUMNS}  busiest; state"
    )
    for f in results.full:
        sf, cp = _per_1000(f.calls, f.size)
        print(
            f"  {f.size:>9} {f.seconds:>8.1f} {f.size / max(f.seconds, 1e-9):>7.0f}"
            f" {f.ready_kib / 1024:>10.1f} {f.hwm_kib / 1024:>9.1f} {f.rss_kib / 1024:>8.1f}"
            f" {sf:>6.0f} {cp:>6.0f}"
            f" {f.profiles:>9} {f.queued_hooks:>6} {f.held:>5} {f.errors:>6}  {_cpu(f.usage)}"
            f"  {f.usage.bottleneck()};"
            f" {f.state}{': ' + f.message if f.message else ''}"
        )
    if results.live_hwm_kib:
        print(f"  (the bridge of the live phases, {plan.live_contacts} contacts, after all of"
              f" them: peak RSS {results.live_hwm_kib / 1024:.1f} MiB)")


def _ceiling(phase: Phase) -> None:
    """What held the sustained phase back: the CPU its changes cost every process of the machine
    (start → settled), and the rate the machine's cores, or one core for the bridge alone, could
    give at that cost."""
    work, cores = phase.work, len(os.sched_getaffinity(0))
    costs = {
        "bridge": work.bridge, "Salesforce sandbox": work.salesforce,
        "Copernica sandbox": work.copernica, "PostgreSQL": work.postgres, "bench": work.bench,
        "others": work.others,
    }
    each = ", ".join(f"{name} {cpu * 1000 / phase.changes:.2f}" for name, cpu in costs.items())
    machine = work.machine_busy * 1000 / phase.changes
    print(f"\n{phase.label}: {phase.sustained:.0f} changes/s in the middle 80 % of the landings"
          f" ({phase.landed:.0f}/s from the first push to the last landing)."
          " CPU ms per change, every process of"
          f" the machine: {machine:.2f} ({each}):\n  at that cost the {cores} cores hold at most"
          f" {cores * 1000 / machine:.0f} changes/s, and one core for the bridge alone"
          f" {1000 / phase.cpu_ms_per_change():.0f}/s")


def summary(results: Results) -> dict[str, float]:
    """What bench/results.json holds: numbers only (NaN, where nothing was measured, as null)."""
    phases = results.phases
    out: dict[str, float] = {}
    for key, label in (("sf_to_cp", "burst Salesforce → Copernica"),
                       ("cp_to_sf", "burst Copernica → Salesforce")):
        phase = phases[label]
        sf, cp = _per_1000(phase.calls_landed, phase.changes)
        out[f"sf_calls_per_1000_{key}"] = round(sf, 1)
        out[f"cp_calls_per_1000_{key}"] = round(cp, 1)
    steady_100 = phases["steady 100/s"]
    out["p99_ms_sf_to_cp_100"] = round(percentile(steady_100.sf_to_cp, 0.99), 1)
    out["p99_ms_cp_to_sf_100"] = round(percentile(steady_100.cp_to_sf, 0.99), 1)
    sustained = phases["burst both ways (sustained)"]
    out["cpu_ms_per_change"] = round(sustained.cpu_ms_per_change(), 3)
    out["sustained_changes_per_s"] = round(sustained.sustained, 1)
    out["landed_changes_per_s"] = round(sustained.landed, 1)
    out["machine_cpu_ms_per_change"] = round(
        sustained.work.machine_busy * 1000 / sustained.changes, 3
    )
    out["webhook_answer_ms_p50"] = round(percentile(steady_100.answers, 0.5), 2)
    for f in results.full:
        out[f"full_sync_s_{f.size}"] = round(f.seconds, 1)
        out[f"full_sync_peak_rss_mb_{f.size}"] = round(f.hwm_kib / 1024, 1)
    return out


def write_results(values: dict[str, float], path: Path = RESULTS) -> None:
    clean = {k: (None if v != v else v) for k, v in values.items()}  # JSON has no NaN
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def main() -> None:
    plan = QUICK if "--quick" in sys.argv[1:] else FULL  # `python -m bench sync --quick` too
    results = run_loop(run(plan))
    report(results)
    write_results(summary(results))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
