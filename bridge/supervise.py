"""One supervisor for every long-lived task of a bridge process: job workers, the stream
supervisor and each tenant's stream, the scheduler, housekeeping, the waker's LISTEN connection.

A task that raises is logged with its traceback, waits the back-off of the one ``RetryPolicy``
and starts again. Restarts are counted (``bridge_task_restarts_total``). A task counts as
healthy again once it has run ``healthy_after`` seconds without failing, or at once when it
calls ``healthy()`` (a stream that connected, a worker that claimed). Listeners hear of every
failure, of the first failure of an episode that lasted ``report_after`` seconds (the runtime
files an error report then) and of the recovery. ``/readyz`` asks ``failing(longer_than=…)``.

Nothing here knows PostgreSQL or the platforms: the runtime wires the listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.metrics import Metrics
from bridge.retry import RetryPolicy
from bridge.vocabulary import Platform

log = logging.getLogger(__name__)

# Restarts never stop; the waits grow to half a minute. A long outage is a report, not silence.
RESTARTS = RetryPolicy(max_attempts=sys.maxsize, base=0.5, cap=30.0)
LISTENER_TIMEOUT = 5.0  # a listener that writes to a database that is down gives up after this


@dataclass
class TaskState:
    """How one supervised task is doing."""

    name: str  # unique in the process, e.g. "stream:12"
    kind: str  # what the metrics call it, e.g. "stream"
    tenant_id: int | None = None
    platform: Platform | None = None  # the platform whose failures it reports
    attempts: int = 0  # failures in a row (0: healthy)
    restarts: int = 0
    failing_since: datetime | None = None
    last_error: str | None = None
    reported: bool = False  # the current episode has been reported
    generation: int = 0  # bumps at every (re)start
    _failing_clock: float | None = field(default=None, repr=False)

    @property
    def failing(self) -> bool:
        return self.attempts > 0

    def failing_for(self) -> float:
        """Seconds since the first failure of the current episode (0 while healthy)."""
        return time.monotonic() - self._failing_clock if self._failing_clock is not None else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "task": self.name, "attempts": self.attempts,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "failing_for": round(self.failing_for(), 1),
        }


Listener = Callable[[TaskState, BaseException], Awaitable[None]]
RecoveryListener = Callable[[TaskState], Awaitable[None]]

_current: contextvars.ContextVar[tuple[Supervisor, TaskState] | None] = contextvars.ContextVar(
    "supervised_task", default=None
)


def healthy() -> None:
    """The calling supervised task works (again): end its failure episode now. Tasks it
    started inherit it; outside a supervised task this does nothing."""
    current = _current.get()
    if current is not None:
        supervisor, state = current
        supervisor._recover(state)


class Supervisor:
    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        retry: RetryPolicy = RESTARTS,
        healthy_after: float = 10.0,
        report_after: float = 60.0,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.retry = retry
        self.healthy_after = healthy_after
        self.report_after = report_after
        self.states: dict[str, TaskState] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.on_failure: list[Listener] = []
        self.on_sustained: list[Listener] = []
        self.on_recovery: list[RecoveryListener] = []
        self._side_tasks: set[asyncio.Task[bool]] = set()
        self._poke = asyncio.Event()

    # --- running ---------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        work: Callable[[], Awaitable[None]],
        *,
        kind: str | None = None,
        tenant_id: int | None = None,
        platform: Platform | None = None,
    ) -> asyncio.Task[None]:
        """Run ``work()`` until it returns, restarting it whenever it raises."""
        if name in self.tasks and not self.tasks[name].done():
            raise ValueError(f"a task named {name!r} runs already")
        state = TaskState(name, kind or name.split(":")[0], tenant_id, platform)
        self.states[name] = state
        task = asyncio.get_running_loop().create_task(self._run(state, work), name=name)
        self.tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))
        return task

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self.tasks.get(name) is task:
            del self.tasks[name]
            state = self.states.pop(name, None)
            if state is not None and state.failing:
                self.metrics.tasks_failing.labels(task=state.kind).dec()

    def poke(self) -> None:
        """What was in the way is back (the database answers again): every task waiting to
        restart starts now instead of at the end of its back-off."""
        self._poke.set()
        self._poke = asyncio.Event()

    def running(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done()

    async def cancel(self, name: str, within: float = 5.0) -> None:
        """Stop one task (e.g. a stream the tenant no longer wants), waiting ``within`` s at most."""
        task = self.tasks.get(name)
        if task is not None:
            await _cancel([task], within)

    async def stop(self, within: float = 5.0) -> None:
        """Cancel every task and wait for them, ``within`` seconds at most in all."""
        await _cancel([*self.tasks.values(), *self._side_tasks], within)

    async def _run(self, state: TaskState, work: Callable[[], Awaitable[None]]) -> None:
        _current.set((self, state))
        loop = asyncio.get_running_loop()
        while True:
            state.generation += 1
            timer = loop.call_later(self.healthy_after, self._healthy_timer, state, state.generation)
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure is logged and restarted
                await self._failed(state, error)
            else:
                self._recover(state)
                return  # done: a task that returns has finished its work
            finally:
                timer.cancel()
            poke = self._poke
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poke.wait(), self.retry.delay(state.attempts))
            state.restarts += 1
            self.metrics.task_restarts.labels(task=state.kind).inc()

    def _healthy_timer(self, state: TaskState, generation: int) -> None:
        if state.generation == generation:
            self._recover(state)

    async def _failed(self, state: TaskState, error: Exception) -> None:
        if not state.failing:
            state.failing_since = datetime.now(UTC)
            state._failing_clock = time.monotonic()
            self.metrics.tasks_failing.labels(task=state.kind).inc()
        state.attempts += 1
        text = f"{type(error).__name__}: {error}"
        # The traceback once per episode and whenever the error changes; one line otherwise.
        same = text == state.last_error
        state.last_error = text
        log.error(
            "task %s failed (attempt %d, failing for %.0f s): %s; restarting with back-off",
            state.name, state.attempts, state.failing_for(), text,
            exc_info=None if same else error,
        )
        for listener in self.on_failure:
            await self._tell(listener(state, error), state)
        if not state.reported and state.failing_for() >= self.report_after:
            ok = True
            for listener in self.on_sustained:
                ok = await self._tell(listener(state, error), state) and ok
            state.reported = ok  # a report that could not be written is tried again next time

    def _recover(self, state: TaskState) -> None:
        if not state.failing:
            return
        log.info("task %s works again after %d failure(s)", state.name, state.attempts)
        self.metrics.tasks_failing.labels(task=state.kind).dec()
        recovered = TaskState(
            state.name, state.kind, state.tenant_id, state.platform, state.attempts,
            state.restarts, state.failing_since, state.last_error, state.reported,
        )
        state.attempts, state.failing_since, state._failing_clock = 0, None, None
        state.reported, state.last_error = False, None
        for listener in self.on_recovery:
            task = asyncio.get_running_loop().create_task(self._tell(listener(recovered), state))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _tell(self, call: Awaitable[None], state: TaskState) -> bool:
        try:
            async with asyncio.timeout(LISTENER_TIMEOUT):
                await call
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a listener must not take the task down
            log.warning("could not record the state of task %s", state.name, exc_info=True)
            return False
        return True

    # --- asking ----------------------------------------------------------------------

    def failing(self, longer_than: float = 0.0) -> list[TaskState]:
        """The tasks failing now, for longer than ``longer_than`` seconds."""
        return [
            s for s in self.states.values() if s.failing and s.failing_for() >= longer_than
        ]


async def _cancel(tasks: list[asyncio.Task[None]] | list[asyncio.Task[Any]], within: float) -> None:
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        log.warning("task %s did not stop within %.0f s of its cancellation", task.get_name(), within)
    with contextlib.suppress(Exception):
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("task %s ended with %r", task.get_name(), task.exception())
