"""Sync runs and the status bar: what is running, how far it got, what waits and what failed.

A run is a row of ``sync_runs`` that a job of kind ``reconcile`` carries out; the UI and the CLI
only read it. ``request_sync`` is what "Sync manually" does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from bridge.copernica.client import MAX_PAGE
from bridge.db import QUERIES, Conn
from bridge.salesforce.bulk import SET_SIZE
from bridge.salesforce.client import CHUNK
from bridge.sync import health
from bridge.sync.jobs import JobQueue
from bridge.vocabulary import RECONCILE

RunKind = Literal["full", "reconcile", "manual"]


@dataclass(frozen=True)
class Run:
    id: int
    tenant_id: int
    kind: str
    state: str  # queued, running, done, failed
    done: int  # records compared and applied (while running: see _progressed)
    total: int | None
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress_at: datetime | None = None
    compared: int | None = None  # records compared so far (while running)
    summary: dict[str, int] | None = None  # of a done run: written in each direction, errors

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Run:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})

    @property
    def percent(self) -> int | None:
        if self.state == "done":
            return 100
        if not self.total:
            return None
        return min(100, round(100 * self.done / self.total))

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace so far (None before there is a pace)."""
        if self.state != "running" or not self.total or not self.done or self.started_at is None:
            return None
        elapsed = (datetime.now(UTC) - self.started_at).total_seconds()
        return max(0.0, (self.total - self.done) * elapsed / self.done)

    def line(self) -> str:
        """The status bar's sentence: "Run #1 (full sync): 1,234 of 5,000 done, about 3 min left"."""
        name = f"Run #{self.id} ({KIND_NAMES.get(self.kind, self.kind)})"
        if self.state == "queued":
            return f"{name} is queued: it starts when a worker is free."
        if self.state == "running":
            if self.total is None:
                return f"{name}: counting the records to compare."
            eta = self.eta_seconds
            left = _left(eta) if eta is not None else "estimating the time left"
            return f"{name}: {self.done:,} of {self.total:,} done, {left}."
        when = _time(self.finished_at) if self.finished_at else ""
        if self.state == "done":
            did = _summary_text(self.done, self.summary) if self.summary is not None else "done"
            return f"{name} finished at {when}: {did}."
        return f"{name} stopped at {when}: {self.message or 'failed'}."

    def as_json(self) -> dict[str, Any]:
        eta = self.eta_seconds
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "done": self.done,
            "compared": self.compared, "total": self.total, "percent": self.percent,
            "eta_seconds": round(eta) if eta is not None else None, "message": self.message,
            "summary": self.summary if self.state == "done" else None, "text": self.line(),
            "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def request_sync(
    queue: JobQueue,
    tenant_id: int,
    kind: RunKind = "manual",
    requested_by: str | None = None,
    *,
    conn: Conn | None = None,
) -> int:
    """Queue a reconcile run (``full`` and ``manual`` compare everything, ``reconcile`` what
    changed since the last one); return the run id the status bar follows."""
    if conn is None:
        async with queue.pool.acquire() as own, own.transaction():
            return await request_sync(queue, tenant_id, kind, requested_by, conn=own)
    run_id = await conn.fetchval(QUERIES["create_run"], tenant_id, kind, requested_by)
    await conn.execute(QUERIES["forget_waiting_changes"], tenant_id)
    await queue.enqueue(
        tenant_id, RECONCILE, f"run-{run_id}", {"run_id": run_id, "kind": kind}, conn=conn
    )
    return int(run_id)


REST_PAGE = 2_000  # records per REST query page
BULK_POLLS = 5  # looks at a bulk query job's state, typically (it depends on Salesforce's pace)


@dataclass(frozen=True)
class SyncCost:
    """At most how many API calls a full comparison costs, by side and purpose."""

    salesforce_reads: int
    salesforce_writes: int
    copernica_reads: int
    copernica_writes: int
    bulk: bool  # Salesforce is read through a Bulk API 2.0 query job

    @property
    def salesforce(self) -> int:
        return self.salesforce_reads + self.salesforce_writes

    @property
    def copernica(self) -> int:
        return self.copernica_reads + self.copernica_writes


def full_sync_cost(contacts: int, profiles: int, direction: str, *, bulk_from: int) -> SyncCost:
    """The calls of a full comparison of ``contacts`` Salesforce contacts and ``profiles``
    Copernica profiles, at most (a record already equal on both sides costs no write):

    - Salesforce reads, when contacts flow to Copernica: 1 COUNT, then REST query pages of
      2,000, or from ``bulk_from`` contacts on one Bulk API 2.0 job (create, about 5 looks at its
      state, one call per 50,000 records, delete);
    - Salesforce writes, when profiles flow to Salesforce: sObject Collections of 200;
    - Copernica reads: the profile ids and the profiles, pages of 1,000 each (the last page
      comes back short);
    - Copernica writes, when contacts flow to Copernica: one per profile created or updated.
    """
    to_copernica = direction in ("both", "sf_to_cp")
    to_salesforce = direction in ("both", "cp_to_sf")
    bulk = to_copernica and contacts >= bulk_from
    sf_reads = 0
    if to_copernica:
        pages = 2 + BULK_POLLS + math.ceil(contacts / SET_SIZE) if bulk else _pages(contacts, REST_PAGE)
        sf_reads = 1 + pages
    pages_of_profiles = profiles // MAX_PAGE + 1
    return SyncCost(
        salesforce_reads=sf_reads,
        salesforce_writes=math.ceil(profiles / CHUNK) if to_salesforce else 0,
        copernica_reads=2 * pages_of_profiles,
        copernica_writes=contacts if to_copernica else 0,
        bulk=bulk,
    )


def _pages(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


async def request_catch_up(
    queue: JobQueue, tenant_id: int, reason: str, *, conn: Conn
) -> int | None:
    """After an outage (this process, its database, the tenant's stream): a reconcile from the
    last watermark now, or the first full sync when the tenant never had one; nothing when a
    run waits for a worker already. Returns the new run's id."""
    if await conn.fetchval(QUERIES["waiting_run"], tenant_id) is not None:
        return None
    last = await conn.fetchval(QUERIES["last_run_of_kind"], tenant_id, None)
    kind: RunKind = "full" if last is None else "reconcile"
    return await request_sync(queue, tenant_id, kind, reason, conn=conn)


async def note_waiting_change(
    conn: Conn, tenant_id: int, cp_id: str, changed_at: float | None
) -> None:
    """A Copernica change arrived while automatic sync is off: it is not applied (nor kept),
    but the status bar says that changes wait for "Sync manually" until a run compares them.
    The echoes of a run's own writes are none: they arrive while it runs, or are not newer
    than the link the run saved."""
    moment = datetime.fromtimestamp(changed_at, UTC) if changed_at is not None else None
    await conn.execute(QUERIES["note_waiting_change"], tenant_id, cp_id, moment)


async def get_run(conn: Conn, tenant_id: int, run_id: int) -> Run | None:
    row = await conn.fetchrow(QUERIES["get_run"], run_id, tenant_id)
    return None if row is None else await _progressed(conn, Run.from_row(row))


async def recent_runs(conn: Conn, tenant_id: int, limit: int = 10) -> list[Run]:
    return [Run.from_row(r) for r in await conn.fetch(QUERIES["recent_runs"], tenant_id, limit)]


async def _progressed(conn: Conn, run: Run) -> Run:
    """The run with ``done`` counting what is applied, not only compared: a first sync compares
    5,000 contacts in seconds and applies them for minutes. The comparison queues a job for each
    record that differs, then records how far it got; of those jobs, the ones still waiting are
    not done. It queues before it records, and real-time changes arriving meanwhile are not
    counted, so ``done`` only grows."""
    if run.state != "running" or run.progress_at is None:
        return run
    pending = await conn.fetchval(QUERIES["run_pending"], run.tenant_id, run.progress_at)
    return dataclasses.replace(run, compared=run.done, done=max(0, run.done - pending))


async def status(conn: Conn, tenant_id: int) -> dict[str, Any]:
    """Everything the status bar shows, as JSON-ready values; ``lines`` are its sentences."""
    counts = await conn.fetchrow(QUERIES["sync_status"], tenant_id)
    assert counts is not None  # an aggregate: always one row
    latest = await recent_runs(conn, tenant_id, 1)
    run = await _progressed(conn, latest[0]) if latest else None
    streams = await conn.fetch(QUERIES["stream_states"], tenant_id)
    problems = await health.problems(conn, tenant_id)
    return {
        "current_run": run.as_json() if run is not None else None,
        "waiting": counts["waiting"] + (counts["held_back"] or 0),
        "retrying": counts["retrying"],
        "held_jobs": counts["held_jobs"],
        "open_errors": counts["open_errors"],
        "auto_sync": counts["auto_sync"],
        "last_success": _iso(counts["last_success"]),
        # "Salesforce failing since 10:02 UTC, retrying (attempt 4)", one per failing platform
        "problems": [p.as_json() for p in problems],
        "streams": [
            {"channel": s["channel"], "owner": s["owner"], "replay_id": s["replay_id"],
             "updated_at": _iso(s["updated_at"])}
            for s in streams
        ],
        "lines": {
            "realtime": _realtime_line(counts["auto_sync"], counts["direction"], streams),
            "run": run.line() if run is not None else "No sync has run yet.",
            "waiting": _waiting_line(counts),
            "errors": _count(counts["open_errors"], "open error report", "no open error reports"),
        },
    }


KIND_NAMES = {"full": "full sync", "reconcile": "reconcile", "manual": "manual sync"}


def _count(n: int, thing: str, none: str) -> str:
    return none if n == 0 else f"{n:,} {thing}{'' if n == 1 else 's'}"


def _time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    today = moment.date() == datetime.now(UTC).date()
    return f"{moment:%H:%M} UTC" if today else f"{moment:%Y-%m-%d %H:%M} UTC"


def _left(seconds: float) -> str:
    if seconds < 60:
        return "less than a minute left"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


def _summary_text(compared: int, summary: dict[str, int]) -> str:
    """"2,431 compared, 12 updated in Copernica, 3 in Salesforce, 1 error"."""
    return (
        f"{compared:,} compared, {summary['to_copernica']:,} updated in Copernica, "
        f"{summary['to_salesforce']:,} in Salesforce, "
        f"{_count(summary['errors'], 'error', 'no errors')}"
    )


def _realtime_line(auto_sync: bool, direction: str, streams: list[asyncpg.Record]) -> str:
    if not auto_sync:
        return "Automatic sync is off: nothing moves until someone presses “Sync manually”."
    webhooks = "Copernica changes arrive by webhook"
    if direction == "cp_to_sf":
        return f"{webhooks}."
    owned = [s for s in streams if s["owner"]]
    stream = (
        "Listening to Salesforce changes" if owned else "Not connected to Salesforce's changes yet"
    )
    return f"{stream}; {webhooks}." if direction == "both" else f"{stream}."


def _waiting_line(counts: asyncpg.Record) -> str:
    """"12 changes waiting, 3 of them retrying after an error"; with automatic sync off, the
    changes that arrived since and wait for "Sync manually"."""
    waiting, retrying, held_back = counts["waiting"], counts["retrying"], counts["held_back"]
    parts = []
    if waiting:
        line = f"{_count(waiting, 'change', '')} waiting"
        parts.append(line + (f", {retrying:,} of them retrying after an error" if retrying else ""))
    if held_back:
        since = _time(counts["held_back_since"])
        parts.append(f"{_count(held_back, 'Copernica change', '')} waiting since {since}")
    if not parts:
        return "No changes waiting."
    line = "; ".join(parts)
    if not counts["auto_sync"]:
        line += ": automatic sync is off, press “Sync manually” to apply them"
    return line[0].upper() + line[1:] + "."
