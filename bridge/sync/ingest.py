"""Ingestion: a change announced by either platform becomes a durable job.

Nothing is acknowledged to its source before the job is committed: the CDC replay marker is
written in the same statement as the jobs it covers, and the webhook endpoint answers 2xx only
after ``store_copernica``'s transaction committed (or, for a delivery that stores nothing, after
it remembered the delivery).

A job carries when its change was committed at the source (``sf_at``: the CDC
``commitTimestamp``; ``cp_at``: the webhook's time of the change), in Unix seconds: the sync lag
metric measures from there to the write on the other side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from asyncpg import Record

from bridge.copernica.webhooks import ProfileEvent, WebhookEvent
from bridge.db import QUERIES, Coalescer, Conn, Pool
from bridge.salesforce.stream import (
    ChangeEvent,
    GapEvent,
    OverflowEvent,
    ReplayIdInvalid,
    StreamItem,
)
from bridge.sync.context import TenantContext
from bridge.sync.engine import copernica_key, salesforce_key, valid_salesforce_id
from bridge.sync.jobs import JobQueue
from bridge.sync.mapping import Mapping, fingerprint, from_copernica
from bridge.sync.objects import CONTACT
from bridge.sync.runs import note_waiting_change, request_sync
from bridge.sync.snapshot import (
    copernica_read_payload,
    copernica_webhook_payload,
    salesforce_change_payload,
    salesforce_read_payload,
)
from bridge.tenants import Tenant
from bridge.vocabulary import SYNC

Intake = Literal["stored", "ignored", "echo"]  # what became of a Copernica webhook


async def ingest_salesforce(
    conn: Conn,
    queue: JobQueue,
    tenant: Tenant,
    items: Sequence[StreamItem],
    *,
    client_id: str,
    owner: str,
    mapping: Mapping | None = None,
) -> int:
    """Store the jobs of a delivery of stream items with its replay marker, in one statement
    (in one transaction with the full sync that an overflow or a lost marker asks for).

    Returns the number of records queued. The bridge's own writes (``changeOrigin`` carrying its
    client id) and changes while Salesforce → Copernica is switched off only move the marker.
    A job keeps the values an update event carried (``bridge.sync.snapshot``): with the workers'
    ``mapping``, only those of mapped fields. Events of one record in a delivery make one job,
    the later values winning (as the queue merges them).
    """
    relevant = {*mapping.salesforce_select()} if mapping is not None else None
    jobs: dict[str, dict[str, Any]] = {}
    full_sync = None
    for item in items:
        if isinstance(item, ChangeEvent | GapEvent) and item.entity == CONTACT.sobject:
            own_write = isinstance(item, ChangeEvent) and item.origin_client == client_id
            if tenant.sf_to_cp and tenant.auto_sync and not own_write:
                carried = (
                    salesforce_change_payload(item, relevant)
                    if isinstance(item, ChangeEvent) else salesforce_read_payload()
                )
                committed = item.commit_timestamp.timestamp()
                for record_id in item.record_ids:
                    if valid_salesforce_id(record_id):
                        jobs.setdefault(salesforce_key(record_id), {}).update(
                            {"sf_id": record_id, "sf_at": committed, **carried}
                        )
        elif isinstance(item, OverflowEvent | ReplayIdInvalid) and tenant.auto_sync:
            # Changes were missed or are too many to describe: compare everything.
            full_sync = f"stream: {type(item).__name__}"
    marked = [item for item in items if not isinstance(item, ReplayIdInvalid)]
    async with conn.transaction() if full_sync else contextlib.nullcontext():
        if full_sync:
            await request_sync(queue, tenant.id, "full", full_sync, conn=conn)
        if marked:
            last = marked[-1]
            millis = str(int(last.commit_timestamp.timestamp() * 1000))
            await conn.execute(
                QUERIES["ingest_changes"], tenant.id, SYNC,
                [{"key": key, "payload": payload} for key, payload in jobs.items()],
                queue.retry.max_attempts, last.channel, last.replay_id, millis, owner,
            )
    return len(jobs)


@dataclass(frozen=True)
class Link:
    """A Copernica profile's link, as a webhook needs it."""

    salesforce_id: str
    agreed: dict[str, str]
    sf_deleted_at: datetime | None = None

    @classmethod
    def of_webhook_tenant(cls, row: Record) -> Link | None:
        """The link in a ``webhook_tenant`` row, if the profile has one."""
        if not row["linked"]:
            return None
        return cls(row["link_salesforce_id"], row["link_agreed"] or {}, row["link_sf_deleted_at"])


@dataclass(frozen=True)
class Verdict:
    """What a Copernica webhook is, known before anything is written: ``intake`` "stored" (it
    is to be stored: ``store_copernica``), "ignored" or "echo"; ``link`` the profile's link."""

    intake: Intake
    link: Link | None = None


def copernica_verdict(
    tenant: Tenant, event: WebhookEvent, link: Link | None,
    context: TenantContext | None = None,
) -> Verdict:
    """"ignored" when the event is not for this bridge (another database, not a profile, a
    direction switched off); "echo" when, by the mapping of the workers' ``context``, the
    profile's fields are exactly what both sides agreed on (the bridge's own write coming back:
    nothing to do); else "stored" (deletes whatever the direction: they only drop the link; and
    while auto-sync is off, for the status bar's note). ``link``: the profile's, read with the
    tenant."""
    if not isinstance(event, ProfileEvent) or str(event.database_id) != tenant.copernica_database:
        return Verdict("ignored")
    if event.type != "delete" and not tenant.cp_to_sf:
        return Verdict("ignored")
    if not tenant.auto_sync:
        return Verdict("stored")
    cp_id = str(event.profile_id)
    if context is not None and event.type != "delete" and _echo(
        context, tenant, cp_id, link, event.fields
    ):
        return Verdict("echo", link)
    return Verdict("stored", link)


class WebhookIntake:
    """The webhook endpoint's round trips to PostgreSQL: the look-up of tenant and link, and
    remembering the delivery with its job — the latter made once for all the deliveries that
    come while the previous one is on its way (``Coalescer``): during a burst or a full sync's
    echoes the database commits once for many deliveries, not for each."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._claims: Coalescer[tuple[Any, ...], bool] = Coalescer(self._claim)

    async def look_up(self, token: str, profile: str | None) -> Record | None:
        """The ``webhook_tenant`` row of a delivery: None, an unknown hook token."""
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(QUERIES["webhook_tenant"], token, profile)

    async def claim(
        self, tenant: Tenant, delivery: bytes, remember_for: float, key: str | None,
        payload: dict[str, Any] | None, max_attempts: int, window: float,
    ) -> bool:
        """``claim_webhook_delivery``: False, a replay (nothing stored)."""
        return await self._claims(
            (tenant.id, delivery, remember_for, SYNC, key, payload, max_attempts, window)
        )

    async def _claim(self, deliveries: list[tuple[Any, ...]]) -> list[bool]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["claim_webhook_deliveries"], *_columns(deliveries))
        return [row["fresh"] for row in rows]


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as columns: the arrays a statement over ``unnest`` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


async def store_copernica(
    intake: WebhookIntake, queue: JobQueue, tenant: Tenant, event: WebhookEvent, verdict: Verdict,
    delivery: bytes, remember_for: float,
) -> Intake | None:
    """Remember the delivery (its key, for ``remember_for`` seconds) and store what the
    verdict says, in one statement: the job of a "stored" profile ("stored"; with auto-sync
    off only a note that a change waits for "Sync manually": "ignored"), nothing more for an
    echo or an event not for this bridge. None, and nothing stored: a replay."""
    key, payload, window = None, None, 0.0
    if verdict.intake == "stored" and not tenant.auto_sync:
        assert isinstance(event, ProfileEvent)  # only a profile's change is stored
        async with intake.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                QUERIES["claim_webhook_delivery"], tenant.id, delivery, remember_for,
                None, None, None, None, None,
            ):
                return None
            changed = _changed_at(event, tenant.copernica_timezone)
            await note_waiting_change(conn, tenant.id, str(event.profile_id), changed)
        return "ignored"
    if verdict.intake == "stored":
        assert isinstance(event, ProfileEvent)
        key, payload = _copernica_job(tenant, event, verdict)
        # Changes towards Salesforce wait for the tenant's batching window: one Collections call.
        window = queue.batch_window if event.type != "delete" else 0.0
    fresh = await intake.claim(
        tenant, delivery, remember_for, key, payload, queue.retry.max_attempts, window
    )
    return verdict.intake if fresh else None


def _copernica_job(
    tenant: Tenant, event: ProfileEvent, verdict: Verdict
) -> tuple[str, dict[str, Any]]:
    """The key and payload of the job of a changed profile."""
    cp_id = str(event.profile_id)
    changed = _changed_at(event, tenant.copernica_timezone)
    linked = verdict.link.salesforce_id if verdict.link is not None else None
    payload: dict[str, Any] = {"cp_id": cp_id}
    if linked:
        payload["sf_id"] = linked
    if changed is not None:
        payload["cp_at"] = changed
    if event.type == "delete" or changed is None:
        payload |= copernica_read_payload()
    else:
        payload |= copernica_webhook_payload(event.fields, event.modified, changed)
    return (salesforce_key(linked) if linked else copernica_key(cp_id)), payload


def _echo(
    context: TenantContext, tenant: Tenant, cp_id: str, link: Link | None,
    fields: dict[str, str],
) -> bool:
    """Whether the engine would certainly find nothing to do on Copernica's side: a current
    mapping is cached, the payload carries the link field (holding the contact) and every mapped
    field, each fingerprinting to an agreement — of a live link, of an update a worker is
    writing now, or, with no link yet, of a profile a worker is creating for that contact.
    Anything short of that is not an echo."""
    mapping = context.cached_mapping(tenant)
    carried = {name.lower(): value for name, value in fields.items()}
    if mapping is None or any(fm.cp_name.lower() not in carried for fm in mapping.fields):
        return False
    claimed = carried.get(mapping.link_field.lower(), "")
    if link is None:
        agreements = [context.creating[claimed]] if claimed in context.creating else []
    elif link.sf_deleted_at is not None or claimed != link.salesforce_id:
        return False
    else:
        writing_for, writing = context.writing.get(cp_id, ("", {}))
        agreements = [link.agreed, writing] if writing_for == claimed else [link.agreed]
    key, values = tenant.fingerprint_key.encode(), from_copernica(mapping, fields)
    return any(
        all(agreed.get(fm.sf_name) == fingerprint(key, fm, values[fm.sf_name]) for fm in mapping.fields)
        for agreed in agreements
    )


def _changed_at(event: ProfileEvent, timezone: str) -> float | None:
    """When Copernica made the change, in Unix seconds: the event's ``time``, else its
    ``modified`` (or ``timestamp``) read in the account's timezone."""
    if event.time:
        return float(event.time)
    for text in (event.modified, event.timestamp):
        try:
            local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
        return local.replace(tzinfo=ZoneInfo(timezone)).timestamp()
    return None
