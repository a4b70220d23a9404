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
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

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
from bridge.sync.engine import salesforce_key, valid_salesforce_id
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
JUDGEMENTS = 3  # reads of a tenant whose settings keep changing, before a change is put off


async def ingest_salesforce(
    conn: Conn,
    queue: JobQueue,
    tenant: Tenant,
    items: Sequence[StreamItem],
    *,
    client_id: str,
    owner: str,
    mapping: Mapping | None = None,
) -> int | None:
    """Store the jobs of a delivery of stream items with its replay marker, in one statement
    (in one transaction with the full sync that an overflow or a lost marker asks for).

    Returns the number of records queued; None when ``tenant`` is no longer the tenant's
    current settings (its ``settings_version`` changed): nothing is stored, and the caller
    reads the tenant anew and hands the delivery in again. The bridge's own writes
    (``changeOrigin`` carrying its client id) and changes while Salesforce → Copernica is
    switched off only move the marker.
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
            current = await conn.fetchval(QUERIES["lock_tenant_settings"], tenant.id)
            if current != tenant.settings_version:
                return None
            await request_sync(queue, tenant.id, "full", full_sync, conn=conn)
        if marked:
            last = marked[-1]
            millis = str(int(last.commit_timestamp.timestamp() * 1000))
            queued = await conn.fetchval(
                QUERIES["ingest_changes"], tenant.id, tenant.settings_version, SYNC,
                [{"key": key, "payload": payload} for key, payload in jobs.items()],
                queue.retry.max_attempts, last.channel, last.replay_id, millis, owner,
            )
            if queued is None:
                return None
    return len(jobs)


@dataclass(frozen=True)
class Verdict:
    """What a Copernica webhook is, as far as its tenant and the process's memory tell:
    ``intake`` "stored" (its job is stored, unless the profile's link shows an echo: ``carried``),
    "ignored" or "echo" (of a write this process is making or just made).

    ``carried``: the contact the profile's link field names and the fingerprints of every mapped
    field, when the delivery carries them all under the workers' current mapping; the statement
    that stores the delivery compares them with the link's agreement."""

    intake: Intake
    carried: tuple[str, dict[str, str]] | None = None


def copernica_verdict(
    tenant: Tenant, event: WebhookEvent, context: TenantContext | None = None
) -> Verdict:
    """"ignored" when the event is not for this bridge (another database, not a profile, a
    direction switched off); "echo" when, by the mapping of the workers' ``context``, the
    profile's fields are exactly what a worker of this process is writing or creating for that
    contact (the bridge's own write coming back: nothing to do); else "stored" (deletes whatever
    the direction: they only drop the link; and while auto-sync is off, for the status bar's
    note)."""
    if not isinstance(event, ProfileEvent) or str(event.database_id) != tenant.copernica_database:
        return Verdict("ignored")
    if event.type != "delete" and not tenant.cp_to_sf:
        return Verdict("ignored")
    if not tenant.auto_sync or event.type == "delete" or context is None:
        return Verdict("stored")
    carried = _carried(context, tenant, event.fields)
    if carried is None:
        return Verdict("stored")
    claimed, fingerprints = carried
    writing_for, writing = context.writing.get(str(event.profile_id), ("", {}))
    agreements = [writing] if writing_for == claimed else []
    if claimed in context.creating:
        agreements.append(context.creating[claimed])
    if any(_agrees(agreed, fingerprints) for agreed in agreements):
        return Verdict("echo")
    return Verdict("stored", carried)


def _carried(
    context: TenantContext, tenant: Tenant, fields: dict[str, str]
) -> tuple[str, dict[str, str]] | None:
    """The contact the link field names and the fingerprints of the mapped fields, when a
    current mapping is cached and ``fields`` hold the link field and every mapped field."""
    mapping = context.cached_mapping(tenant)
    carried = {name.lower(): value for name, value in fields.items()}
    if mapping is None or any(fm.cp_name.lower() not in carried for fm in mapping.fields):
        return None
    claimed = carried.get(mapping.link_field.lower(), "")
    if not claimed:
        return None
    key, values = tenant.fingerprint_key.encode(), from_copernica(mapping, fields)
    return claimed, {fm.sf_name: fingerprint(key, fm, values[fm.sf_name]) for fm in mapping.fields}


def _agrees(agreed: dict[str, str], fingerprints: dict[str, str]) -> bool:
    return all(agreed.get(name) == value for name, value in fingerprints.items())


Taken = Literal["stored", "ignored", "echo", "replay", "stale"]


class WebhookIntake:
    """The webhook endpoint's round trips to PostgreSQL. The tenant of a hook token is read once
    and kept (``tenant``); a delivery then costs one statement (``take_webhook_deliveries``),
    made once for all the deliveries that come while the previous one is on its way
    (``Coalescer``): during a burst or a full sync's echoes the database commits once for many
    deliveries, not for each. That statement refuses to act on settings that changed since the
    tenant was read ("stale"): the caller reads it anew and judges the delivery again."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._tenants: dict[str, Tenant] = {}
        self._takes: Coalescer[tuple[Any, ...], str] = Coalescer(self._take)

    def kept(self, token: str) -> Tenant | None:
        """The tenant of hook token ``token`` as last read, if it was."""
        return self._tenants.get(token)

    async def tenant(self, token: str) -> Tenant | None:
        """The tenant of hook token ``token`` read now (None: unknown), and kept."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(QUERIES["tenant_by_hook_token"], token)
        if row is None:
            self._tenants.pop(token, None)
            return None
        tenant = self._tenants[token] = Tenant.from_row(row)
        return tenant

    async def take(
        self, tenant: Tenant, delivery: bytes, remember_for: float, cp_id: str,
        carried: tuple[str, dict[str, str]] | None, payload: dict[str, Any] | None,
        max_attempts: int, window: float,
    ) -> str:
        """``take_webhook_delivery``'s outcome for one delivery."""
        claimed, fingerprints = carried if carried is not None else (None, None)
        return await self._takes((
            tenant.id, tenant.settings_version, delivery, remember_for, cp_id, claimed,
            fingerprints, SYNC, payload, max_attempts, window,
        ))

    async def _take(self, deliveries: list[tuple[Any, ...]]) -> list[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["take_webhook_deliveries"], *_columns(deliveries))
        return [row["outcome"] for row in rows]


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as columns: the arrays a statement over ``unnest`` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


async def store_copernica(
    intake: WebhookIntake, queue: JobQueue, tenant: Tenant, event: WebhookEvent, verdict: Verdict,
    delivery: bytes, remember_for: float,
) -> Taken:
    """Remember the delivery (its key, for ``remember_for`` seconds) and store what the
    verdict says, in one statement: the job of a "stored" profile ("stored"; with auto-sync
    off only a note that a change waits for "Sync manually": "ignored"), nothing more for an
    echo or an event not for this bridge. "replay": nothing stored, the delivery came before;
    "stale": nothing done, ``tenant`` is not the tenant's current settings."""
    if verdict.intake == "stored" and not tenant.auto_sync:
        assert isinstance(event, ProfileEvent)  # only a profile's change is stored
        async with intake.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(QUERIES["lock_tenant_settings"], tenant.id)
            if current != tenant.settings_version:
                return "stale"
            if not await conn.fetchval(
                QUERIES["claim_webhook_delivery"], tenant.id, delivery, remember_for,
                None, None, None, None, None,
            ):
                return "replay"
            changed = _changed_at(event, tenant.copernica_timezone)
            await note_waiting_change(conn, tenant.id, str(event.profile_id), changed)
        return "ignored"
    payload, window = None, 0.0
    cp_id = str(event.profile_id) if isinstance(event, ProfileEvent) else ""
    if verdict.intake == "stored":
        assert isinstance(event, ProfileEvent)
        payload = _copernica_payload(tenant, event)
        # Changes towards Salesforce wait for the tenant's batching window: one Collections call.
        window = queue.batch_window if event.type != "delete" else 0.0
    outcome = await intake.take(
        tenant, delivery, remember_for, cp_id, verdict.carried, payload,
        queue.retry.max_attempts, window,
    )
    return verdict.intake if outcome == "kept" else cast(Taken, outcome)


def _copernica_payload(tenant: Tenant, event: ProfileEvent) -> dict[str, Any]:
    """The payload of the job of a changed profile (``take_webhook_delivery`` adds the linked
    contact's id)."""
    changed = _changed_at(event, tenant.copernica_timezone)
    payload: dict[str, Any] = {"cp_id": str(event.profile_id)}
    if changed is not None:
        payload["cp_at"] = changed
    if event.type == "delete" or changed is None:
        payload |= copernica_read_payload()
    else:
        payload |= copernica_webhook_payload(event.fields, event.modified, changed)
    return payload


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
