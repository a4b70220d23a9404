"""The supervisor of long-lived tasks: failures are logged with their traceback, restarted with
back-off and counted; a long failure is reported once; recovery ends the episode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from prometheus_client import generate_latest

from bridge.metrics import Metrics
from bridge.retry import RetryPolicy
from bridge.supervise import Supervisor, TaskState, healthy

QUICK = RetryPolicy(max_attempts=10**9, base=0.01, cap=0.02, jitter=0.0)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:  # polling a condition of plain objects: no event to wait on
            if condition():
                return
            await asyncio.sleep(0.005)


async def test_a_failing_task_is_logged_restarted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    supervisor = Supervisor(metrics, retry=QUICK, healthy_after=60.0)
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise ConnectionRefusedError("no database")
        healthy()
        done.set()
        await asyncio.Event().wait()

    caplog.set_level(logging.ERROR, logger="bridge.supervise")
    supervisor.spawn("worker:sync:0", flaky, kind="worker_sync")
    async with asyncio.timeout(10):
        await done.wait()
    assert runs == 4
    assert sample(metrics, "bridge_task_restarts_total", task="worker_sync") == 3
    assert sample(metrics, "bridge_tasks_failing", task="worker_sync") == 0
    assert not supervisor.failing()
    first = caplog.records[0]
    assert "worker:sync:0" in first.getMessage() and first.exc_info is not None  # the traceback
    assert all(r.exc_info is None for r in caplog.records[1:])  # the same error: one line each
    await supervisor.stop(within=2)
    assert not supervisor.tasks


async def test_a_sustained_failure_is_reported_once_and_recovery_heard() -> None:
    supervisor = Supervisor(Metrics(), retry=QUICK, healthy_after=60.0, report_after=0.1)
    reported: list[TaskState] = []
    recovered: list[TaskState] = []
    failing = True

    async def on_sustained(state: TaskState, error: BaseException) -> None:
        reported.append(state)

    async def on_recovery(state: TaskState) -> None:
        recovered.append(state)

    supervisor.on_sustained.append(on_sustained)
    supervisor.on_recovery.append(on_recovery)

    async def stream() -> None:
        if failing:
            raise OSError("Salesforce is down")
        healthy()
        await asyncio.Event().wait()

    supervisor.spawn("stream:7", stream, tenant_id=7, platform="salesforce")
    await wait_for(lambda: bool(reported))
    await asyncio.sleep(0.2)  # it keeps failing: still one report
    assert len(reported) == 1 and reported[0].tenant_id == 7
    assert [s.name for s in supervisor.failing(longer_than=0.1)] == ["stream:7"]
    assert supervisor.failing()[0].failing_since is not None
    failing = False
    await wait_for(lambda: bool(recovered))
    assert recovered[0].attempts > 1 and not supervisor.failing()
    await supervisor.stop(within=2)


async def test_running_long_enough_counts_as_healthy_and_poke_restarts_at_once() -> None:
    slow = RetryPolicy(max_attempts=10**9, base=30.0, cap=30.0, jitter=0.0)
    supervisor = Supervisor(Metrics(), retry=slow, healthy_after=0.05)
    runs = 0

    async def once_broken() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # works, without saying so

    supervisor.spawn("scheduler", once_broken)
    await wait_for(lambda: bool(supervisor.failing()))
    supervisor.poke()  # what was in the way is back: no 30 s back-off
    await wait_for(lambda: runs == 2, within=5)
    await wait_for(lambda: not supervisor.failing(), within=5)
    await supervisor.stop(within=2)


async def test_a_listener_that_cannot_write_does_not_take_the_task_down() -> None:
    supervisor = Supervisor(Metrics(), retry=QUICK, report_after=0.0)
    runs = 0

    async def broken_listener(state: TaskState, error: BaseException) -> None:
        raise ConnectionRefusedError("the database is down as well")

    supervisor.on_failure.append(broken_listener)
    supervisor.on_sustained.append(broken_listener)

    async def task() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("still failing")

    supervisor.spawn("housekeeping", task)
    await wait_for(lambda: runs >= 3)
    assert not supervisor.states["housekeeping"].reported  # tried again at the next failure
    await supervisor.stop(within=2)


async def test_stop_is_bounded_even_for_a_task_that_ignores_cancellation() -> None:
    supervisor = Supervisor(Metrics(), retry=QUICK)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # refuses to stop

    supervisor.spawn("stubborn", stubborn)
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await supervisor.stop(within=0.2)
    assert loop.time() - started < 1.0
    release.set()


def test_metrics_of_two_apps_do_not_clash() -> None:
    first, second = Metrics(), Metrics()
    first.task_restarts.labels(task="stream").inc()
    assert sample(first, "bridge_task_restarts_total", task="stream") == 1
    assert sample(second, "bridge_task_restarts_total", task="stream") is None
    text = generate_latest(first.registry).decode()
    assert "# TYPE bridge_sync_lag_seconds histogram" in text
    assert "_created" not in text
