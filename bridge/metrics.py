"""The bridge's Prometheus metrics, through ``prometheus_client``.

Each app (and each runtime outside an app, e.g. ``bridge sync``) has a ``Metrics`` of its own on
its own ``CollectorRegistry``, never the library's global one, so several apps in one process
(the tests) do not share or clash. ``/metrics`` (``bridge.web.health``) renders ``registry``.
The README lists every metric and the alerts worth setting on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bridge.usage import ApiUsage

# The ``*_created`` twin of every counter says when the process started counting: noise here.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

# Seconds from the source's commit to the write on the other side: a second is the promise,
# a minute is an outage, an hour is the safety net doing the work.
LAG_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
# How late the event loop runs what is ready: under a millisecond on a process with room to
# spare; tens of milliseconds and every change it handles waits that long at each step.
LOOP_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
LOOP_LOOK_EVERY = 0.1  # seconds between two looks at the event loop


class Metrics:
    """Every metric of one bridge app, by purpose."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.http_requests = Counter(
            "bridge_http_requests_total", "HTTP requests served, by route and status",
            ["route", "status"], registry=registry,
        )
        self.webhooks = Counter(
            "bridge_webhooks_total", "Copernica webhook deliveries, by outcome",
            ["outcome"], registry=registry,
        )
        self.sync_lag = Histogram(
            "bridge_sync_lag_seconds",
            "Seconds from a change's commit at its source (CDC commitTimestamp, Copernica "
            "modified) to the bridge's write on the other side, by direction",
            ["direction"], buckets=LAG_BUCKETS, registry=registry,
        )
        self.api_calls = Counter(
            "bridge_api_calls_total", "API calls the bridge made, by platform",
            ["platform"], registry=registry,
        )
        self.jobs = Gauge(
            "bridge_jobs", "Jobs in the queue, by kind and state (read at each scrape)",
            ["kind", "state"], registry=registry,
        )
        self.echoes = Counter(
            "bridge_echoes_suppressed_total",
            "Changes announced by a platform that were the bridge's own writes (or changed "
            "nothing the mapping covers) and cost no write, by the announcing platform",
            ["platform"], registry=registry,
        )
        self.task_restarts = Counter(
            "bridge_task_restarts_total",
            "Restarts of the bridge's long-lived tasks after a failure, by task",
            ["task"], registry=registry,
        )
        self.tasks_failing = Gauge(
            "bridge_tasks_failing", "Long-lived tasks failing now (restarting with back-off), by task",
            ["task"], registry=registry,
        )
        self.stream_connected = Gauge(
            "bridge_stream_connected",
            "1 while this process holds a connected CDC stream for the tenant, else 0",
            ["tenant"], registry=registry,
        )
        self.database_up = Gauge(
            "bridge_database_up", "1 while PostgreSQL answers this process, else 0",
            registry=registry,
        )
        self.database_up.set(1)
        self.loop_lag = Histogram(
            "bridge_event_loop_lag_seconds",
            f"How late this process's event loop woke a task that slept {LOOP_LOOK_EVERY} s "
            "(looked at every time): the wait of every step of every change it handles",
            buckets=LOOP_LAG_BUCKETS, registry=registry,
        )
        self._made: dict[str, Counter] = {}

    def api_call(self, usage: ApiUsage) -> None:
        """A ``UsageCounter`` listener: every API call of every tenant's clients."""
        self.api_calls.labels(platform=usage.platform).inc(usage.calls)

    def set_jobs(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.jobs.clear()
        for (kind, state), count in counts.items():
            self.jobs.labels(kind=kind, state=state).set(count)

    async def watch_event_loop(self) -> None:
        """Observe ``loop_lag`` for as long as it runs (a task of the process's supervisor).
        The clock is ``time.monotonic``: uvloop's ``loop.time()`` counts whole milliseconds."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(LOOP_LOOK_EVERY)
            self.loop_lag.observe(max(0.0, time.monotonic() - started - LOOP_LOOK_EVERY))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def counter(self, name: str, help_text: str) -> LabelledCounter:
        """The older way to count, ``metrics.counter(name, help).inc(label=value)``: a counter
        defined above by its exposed name, or a new one with the labels of its first use."""
        known: dict[str, Counter] = {
            "bridge_webhooks_total": self.webhooks,
            "bridge_http_requests_total": self.http_requests,
        }
        return LabelledCounter(self, name, help_text, known.get(name))


class LabelledCounter:
    def __init__(self, metrics: Metrics, name: str, help_text: str, metric: Counter | None) -> None:
        self._metrics, self._name, self._help, self._metric = metrics, name, help_text, metric

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        if self._metric is None:
            made = self._metrics._made
            if self._name not in made:
                made[self._name] = Counter(
                    self._name, self._help, sorted(labels), registry=self._metrics.registry
                )
            self._metric = made[self._name]
        (self._metric.labels(**labels) if labels else self._metric).inc(amount)
