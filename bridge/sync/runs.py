"""Sync runs and the status bar: what is running, how far it got, what waits and what failed.

A run is a row of ``sync_runs`` that a job of kind ``reconcile`` carries out; the UI and the CLI
only read it. ``request_sync`` is what "Sync manually" does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from bridge.db import QUERIES, Conn
from bridge.sync import health
from bridge.sync.jobs import JobQueue
from bridge.vocabulary import RECONCILE

RunKind = Literal["full", "reconcile", "manual"]


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    state: str  # queued, running, done, failed
    done: int
    total: int | None
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Run:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.state == "done" else None
        return min(100, round(100 * self.done / self.total))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "done": self.done,
            "total": self.total, "percent": self.percent, "message": self.message,
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
    await queue.enqueue(
        tenant_id, RECONCILE, f"run-{run_id}", {"run_id": run_id, "kind": kind}, conn=conn
    )
    return int(run_id)


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


async def get_run(conn: Conn, tenant_id: int, run_id: int) -> Run | None:
    row = await conn.fetchrow(QUERIES["get_run"], run_id, tenant_id)
    return None if row is None else Run.from_row(row)


async def recent_runs(conn: Conn, tenant_id: int, limit: int = 10) -> list[Run]:
    return [Run.from_row(r) for r in await conn.fetch(QUERIES["recent_runs"], tenant_id, limit)]


async def status(conn: Conn, tenant_id: int) -> dict[str, Any]:
    """Everything the status bar shows, as JSON-ready values."""
    counts = await conn.fetchrow(QUERIES["sync_status"], tenant_id)
    assert counts is not None  # an aggregate: always one row
    runs = await recent_runs(conn, tenant_id, 1)
    streams = await conn.fetch(QUERIES["stream_states"], tenant_id)
    problems = await health.problems(conn, tenant_id)
    return {
        "current_run": runs[0].as_json() if runs else None,
        "queue_depth": counts["queue_depth"],
        "held_jobs": counts["held_jobs"],
        "open_errors": counts["open_errors"],
        "last_success": _iso(counts["last_success"]),
        "last_change": _iso(counts["last_change"]),
        # "Salesforce failing since 10:02 UTC, retrying (attempt 4)", one per failing platform
        "problems": [p.as_json() for p in problems],
        "streams": [
            {"channel": s["channel"], "owner": s["owner"], "replay_id": s["replay_id"],
             "updated_at": _iso(s["updated_at"])}
            for s in streams
        ],
    }
