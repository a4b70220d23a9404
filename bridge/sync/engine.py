"""Apply: bring records to agreement on both sides, a batch of ``sync`` jobs at a time.

A job says which record changed (``sf_id`` and/or ``cp_id``) and carries what the change event
or webhook said of it (``bridge.sync.snapshot``). Per record the engine knows each side from
those payloads where that is certain and reads it otherwise (``_take_payloads``), builds a frozen
``Snapshot``, lets the pure planner decide (``bridge.sync.plan``: the 3-way merge against the
fingerprints both sides last agreed on), writes, and records the new agreement. Merging current
state against agreement makes every job idempotent, stale or out-of-order deliveries harmless
(news known before the last agreement are read again), and echoes of the bridge's own writes
"nothing to do".

A batch belongs to one tenant: Salesforce reads and writes go out as one query and sObject
Collections calls (≤ 200 records); Copernica, which has no batch writes, gets one call per profile.

Only the synced database is ever written: a profile of another database (Copernica profile ids
are unique across an account, so a stale link or job may name one after the synced database
was switched) counts as not there, and a delete first checks that the database is still the
synced one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping as ReadMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bridge.db import QUERIES, Pool, connection_trouble
from bridge.errors import ApiError, MappingError
from bridge.metrics import Metrics
from bridge.slices import in_slices
from bridge.sync.context import TenantContext
from bridge.sync.jobs import Failure, Job, JobQueue, failure_from
from bridge.sync.mapping import Mapping
from bridge.sync.mapping import to_copernica as copernica_values
from bridge.sync.mapping import to_salesforce as salesforce_values
from bridge.sync.objects import CONTACT
from bridge.sync.plan import (
    NOTHING,
    Audit,
    CopernicaSide,
    LinkState,
    Plan,
    SalesforceSide,
    Settings,
    Snapshot,
    plan,
)
from bridge.sync.snapshot import read_payloads, what_is_known
from bridge.vocabulary import PUSH_ERRORS, SYNC, Direction

log = logging.getLogger(__name__)

COPERNICA_CONCURRENCY = 12
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def salesforce_key(sf_id: str) -> str:
    return f"sf:{sf_id}"


def copernica_key(cp_id: str | int) -> str:
    return f"cp:{cp_id}"


def valid_salesforce_id(value: object) -> bool:
    return isinstance(value, str) and bool(_SALESFORCE_ID.match(value))


@dataclass
class Item:
    """One record of the batch: who it is, what is known of both sides, its plan and how the
    execution went (ids of what was created, audits of what was written)."""

    sf_id: str | None
    cp_id: str | None
    link: asyncpg.Record | None
    jobs: list[Job] = field(default_factory=list)
    sf: SalesforceSide | None = None
    cp: CopernicaSide | None = None
    plan: Plan = NOTHING
    audits: list[Audit] = field(default_factory=list)
    failure: Failure | None = None
    # what the jobs' payloads leave to be read (bridge.sync.snapshot)
    read_sf: bool = True
    read_cp: bool = True
    search_cp: bool = True  # look for a profile to link an unlinked contact to

    @property
    def sf_alive(self) -> bool:
        return self.sf is not None and not self.sf.deleted


async def sync_batch(
    ctx: TenantContext, pool: Pool, queue: JobQueue, jobs: list[Job],
    *, metrics: Metrics | None = None,
) -> dict[int, Failure]:
    """The handler of ``sync`` jobs: returns the failures by job id. ``metrics`` hears the
    sync lag of every write and the announced changes that needed none (echoes)."""
    mapping = await ctx.mapping()
    items = await _identify(ctx, pool, jobs)
    async for item in in_slices(items):
        _take_payloads(ctx, mapping, item)
    await _read(ctx, mapping, items)
    await _match_unlinked(ctx, pool, mapping, items)
    async for item in in_slices(_unique(items)):
        item.plan = plan(mapping, _snapshot(ctx, item), CONTACT)
        item.audits.extend(item.plan.audits)
        if item.plan.refused:
            item.failure = failure_from(MappingError(item.plan.refused))
    # The last look at the database before the first write: from the first write on, nothing
    # may fail for want of the database until what was written is recorded.
    async with pool.acquire() as conn:
        synced = await conn.fetchval(QUERIES["tenant_database"], ctx.tenant.id)
    if synced != ctx.database:  # switched away meanwhile: plans made on the old one are void
        _database_changed([i for i in items if i.failure is None])
    await _write_salesforce(ctx, mapping, items)
    # The webhooks of these updates may come before the links say what was agreed: the door
    # knows them as echoes meanwhile.
    writing = {
        i.cp_id: (i.sf_id, i.plan.merged.agreed)
        for i in items
        if i.plan.copernica == "update" and i.failure is None and i.cp_id and i.sf_id
        and i.plan.merged
    }
    # And those of the profiles created for contacts, which may come before the create returns.
    creating = {
        i.sf_id: i.plan.merged.agreed
        for i in items
        if i.plan.copernica == "create" and i.failure is None and i.sf_id and i.plan.merged
    }
    ctx.writing.update(writing)
    ctx.creating.update(creating)
    try:
        await _write_copernica(ctx, pool, mapping, items)
        await _record_patiently(ctx, pool, queue, mapping, items, jobs)
    finally:
        for cp_id in writing:
            ctx.writing.pop(cp_id, None)
        for sf_id in creating:
            ctx.creating.pop(sf_id, None)
    if metrics is not None:
        _observe(metrics, items)
    return {job.id: item.failure for item in items for job in item.jobs if item.failure}


def _observe(metrics: Metrics, items: list[Item]) -> None:
    """Lag from the source's commit (``sf_at``/``cp_at`` of the jobs, the oldest) to the write
    on the other side; an announced change that wrote nothing is an echo."""
    now = time.time()
    for item in items:
        if item.failure is not None:
            continue
        sf_at = [float(j.payload["sf_at"]) for j in item.jobs if j.payload.get("sf_at")]
        cp_at = [float(j.payload["cp_at"]) for j in item.jobs if j.payload.get("cp_at")]
        wrote = False
        if item.plan.copernica is not None:
            wrote = True
            if sf_at:
                metrics.sync_lag.labels(direction="sf_to_cp").observe(max(0.0, now - min(sf_at)))
        if item.plan.salesforce is not None and item.sf_id:
            wrote = True
            if cp_at:
                metrics.sync_lag.labels(direction="cp_to_sf").observe(max(0.0, now - min(cp_at)))
        if not wrote and item.plan.link in ("save", "none"):
            if cp_at:
                metrics.echoes.labels(platform="copernica").inc()
            elif sf_at:
                metrics.echoes.labels(platform="salesforce").inc()


# --- 1. who is who ------------------------------------------------------------------------


async def _identify(ctx: TenantContext, pool: Pool, jobs: list[Job]) -> list[Item]:
    sf_ids = [j.payload["sf_id"] for j in jobs if valid_salesforce_id(j.payload.get("sf_id"))]
    cp_ids = [str(j.payload["cp_id"]) for j in jobs if j.payload.get("cp_id")]
    async with pool.acquire() as conn:
        links = await conn.fetch(QUERIES["links_of"], ctx.tenant.id, sf_ids, cp_ids)
    by_sf = {r["salesforce_id"]: r for r in links}
    by_cp = {r["copernica_id"]: r for r in links}
    items: dict[str, Item] = {}
    for job in jobs:
        sf_id = job.payload.get("sf_id") if valid_salesforce_id(job.payload.get("sf_id")) else None
        cp_id = str(job.payload["cp_id"]) if job.payload.get("cp_id") else None
        link = by_sf.get(sf_id) if sf_id else by_cp.get(cp_id or "")
        if link is None and cp_id and cp_id in by_cp:
            link = by_cp[cp_id]
        if link is not None:
            sf_id, cp_id = link["salesforce_id"], link["copernica_id"]
        identity = salesforce_key(sf_id) if sf_id else copernica_key(cp_id or "?")
        item = items.setdefault(identity, Item(sf_id=sf_id, cp_id=cp_id, link=link))
        item.cp_id = item.cp_id or cp_id
        item.jobs.append(job)
    return list(items.values())


def _unique(items: list[Item]) -> list[Item]:
    """Items that turned out to be the same record (matched in this batch) are planned once."""
    seen: set[tuple[str | None, str | None]] = set()
    unique = []
    for item in items:
        pair = (item.sf_id, item.cp_id)
        if item.sf_id and item.cp_id and pair in seen:
            continue  # its plan stays NOTHING
        seen.add(pair)
        unique.append(item)
    return unique


# --- 2. what the payloads say, then read what they leave open ------------------------------


def _take_payloads(ctx: TenantContext, mapping: Mapping, item: Item) -> None:
    """Know what the jobs' payloads make certain (``bridge.sync.snapshot.what_is_known``)."""
    evidence = read_payloads(job.payload for job in sorted(item.jobs, key=lambda j: j.id))
    known = what_is_known(
        evidence, mapping, ctx.key, _link_state(item.link), sf_id=item.sf_id, cp_id=item.cp_id
    )
    item.sf, item.cp = known.sf, known.cp
    item.read_sf, item.read_cp = known.read_sf, known.read_cp
    # A failed attempt may have made the profile all the same (a reply that named no id, a
    # time-out): its retry looks for it rather than trust the scan that found none.
    item.search_cp = known.search_cp or any(job.attempts > 1 for job in item.jobs)


async def _read(ctx: TenantContext, mapping: Mapping, items: list[Item]) -> None:
    records = await _salesforce_records(
        ctx, mapping, [i.sf_id for i in items if i.sf_id and i.read_sf]
    )
    profiles = await _copernica_profiles(
        ctx, [i.cp_id for i in items if i.cp_id and i.read_cp]
    )
    for item in items:
        if item.sf_id and item.read_sf:
            record = records.get(item.sf_id)
            item.sf = SalesforceSide(record) if record is not None else None
        if item.cp_id and item.read_cp:
            item.cp = profiles.get(item.cp_id)


async def _salesforce_records(
    ctx: TenantContext, mapping: Mapping, ids: list[str | None]
) -> dict[str, dict[str, Any]]:
    """The records of ``ids``, deleted ones too (a delete or merge is what some jobs announce)."""
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return await ctx.salesforce.records_by_id(
        CONTACT.sobject, mapping.salesforce_select(), wanted, include_deleted=True
    )


async def _copernica_profiles(
    ctx: TenantContext, ids: list[str | None]
) -> dict[str, CopernicaSide | None]:
    limit = asyncio.Semaphore(COPERNICA_CONCURRENCY)

    async def one(cp_id: str) -> tuple[str, CopernicaSide | None]:
        async with limit:
            try:
                profile = await ctx.copernica.profile(int(cp_id))
            except ApiError as error:
                if error.category == "not_found":
                    return cp_id, None
                raise
        if profile.removed or (
            profile.database is not None and str(profile.database) != ctx.database
        ):
            return cp_id, None  # gone, or in a database that is not (any more) the synced one
        return cp_id, CopernicaSide(profile.fields, profile.modified)

    pairs = await asyncio.gather(*(one(i) for i in sorted({i for i in ids if i})))
    return dict(pairs)


async def _match_unlinked(
    ctx: TenantContext, pool: Pool, mapping: Mapping, items: list[Item]
) -> None:
    """First merge: link by the Salesforce Id kept in Copernica, then by a unique e-mail.

    A candidate already linked to another record is no match: two contacts sharing an address
    must not end up sharing (and overwriting) one profile.
    """
    email = next((f for f in mapping.fields if f.sf_name == "Email"), None)
    for item in items:
        if item.link is not None:
            continue
        if item.sf_alive and item.cp is None and ctx.tenant.sf_to_cp and item.search_cp:
            assert item.sf is not None
            sf_id, address = item.sf.id, item.sf.record.get("Email")
            found = await ctx.copernica.find_profiles(
                ctx.database, {mapping.link_field: sf_id}, limit=2
            )
            if not found and email and address:
                found = await ctx.copernica.find_profiles(
                    ctx.database, {email.cp_name: address}, limit=2
                )
                claimed = _field(found[0].fields, mapping.link_field) if len(found) == 1 else ""
                found = found if len(found) == 1 and claimed in ("", sf_id) else []
            if found:
                link = await _link(pool, ctx.tenant.id, cp_id=str(found[0].id))
                if link is None or link["salesforce_id"] == sf_id:  # free, or linked meanwhile
                    item.cp = CopernicaSide(found[0].fields, found[0].modified)
                    item.cp_id, item.link = str(found[0].id), link
        elif item.cp is not None and item.sf is None and ctx.tenant.cp_to_sf:
            candidate = None
            claimed = _field(item.cp.fields, mapping.link_field)
            if valid_salesforce_id(claimed):
                candidate = (await _salesforce_records(ctx, mapping, [claimed])).get(claimed)
            elif email and _field(item.cp.fields, email.cp_name):
                matches = await ctx.salesforce.records_by_field(
                    CONTACT.sobject, mapping.salesforce_select(), "Email",
                    _field(item.cp.fields, email.cp_name), limit=2,
                )
                candidate = matches[0] if len(matches) == 1 else None
            if candidate is not None:
                link = await _link(pool, ctx.tenant.id, sf_id=candidate["Id"])
                if link is None or link["copernica_id"] == item.cp_id:  # free, or linked meanwhile
                    item.sf, item.sf_id, item.link = SalesforceSide(candidate), candidate["Id"], link


async def _link(
    pool: Pool, tenant_id: int, *, sf_id: str | None = None, cp_id: str | None = None
) -> asyncpg.Record | None:
    """The link of a record now (another worker may have linked it since this batch began)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            QUERIES["links_of"], tenant_id, [sf_id] if sf_id else [], [cp_id] if cp_id else []
        )
    return rows[0] if rows else None


def _field(fields: ReadMapping[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in fields.items() if k.lower() == lowered), "")


# --- 3. decide (bridge.sync.plan) ----------------------------------------------------------


def _snapshot(ctx: TenantContext, item: Item) -> Snapshot:
    tenant = ctx.tenant
    settings = Settings(tenant.direction, tenant.apply_deletes, tenant.conflict_rule, ctx.key)
    return Snapshot(settings, item.sf_id, item.cp_id, _link_state(item.link), item.sf, item.cp)


def _link_state(link: asyncpg.Record | None) -> LinkState | None:
    if link is None:
        return None
    return LinkState(
        link["salesforce_id"], link["copernica_id"], dict(link["agreed"]),
        sf_deleted=link["sf_deleted_at"] is not None, agreed_at=link["synced_at"].timestamp(),
    )


def _audit(
    item: Item, direction: Direction, action: str, fields: list[str], outcome: str
) -> Audit:
    return Audit(direction, action, tuple(fields), outcome, item.sf_id, item.cp_id)


# --- 4. write -----------------------------------------------------------------------------


async def _write_salesforce(ctx: TenantContext, mapping: Mapping, items: list[Item]) -> None:
    ready = [i for i in items if i.failure is None and i.plan.merged is not None]
    updates = [i for i in ready if i.plan.salesforce == "update" and i.plan.merged.to_salesforce]  # type: ignore[union-attr]
    creates = [i for i in ready if i.plan.salesforce == "create"]
    for batch, action in ((updates, "update"), (creates, "create")):
        if not batch:
            continue
        records = [salesforce_values(mapping, i.plan.merged.to_salesforce) for i in batch]  # type: ignore[union-attr]
        try:
            if action == "update":
                results = await ctx.salesforce.update_many(
                    CONTACT.sobject,
                    [{"Id": i.sf_id, **r} for i, r in zip(batch, records, strict=True)],
                )
            else:
                results = await ctx.salesforce.create_many(CONTACT.sobject, records)
        except ApiError as error:
            for item in batch:
                item.failure = failure_from(error)
            continue
        for item, result in zip(batch, results, strict=True):
            fields = sorted(item.plan.merged.to_salesforce)  # type: ignore[union-attr]
            if result.success:
                if action == "create":
                    item.sf_id = result.id
                    item.sf = SalesforceSide({"Id": result.id})
                item.audits.append(_audit(item, "cp_to_sf", action, fields, "ok"))
            else:
                item.failure = failure_from(result.error())


async def _write_copernica(
    ctx: TenantContext, pool: Pool, mapping: Mapping, items: list[Item]
) -> None:
    limit = asyncio.Semaphore(COPERNICA_CONCURRENCY)
    writes = [i for i in items if i.plan.copernica and i.failure is None]

    async def one(item: Item) -> None:
        merged, action = item.plan.merged, item.plan.copernica
        values = copernica_values(mapping, merged.to_copernica) if merged else {}
        if item.sf_id and action in ("update", "create"):
            values[mapping.link_field] = item.sf.id if item.sf else item.sf_id
        async with limit:
            try:
                if action == "delete":
                    await ctx.copernica.delete_profile(int(item.cp_id or 0))
                    item.audits.append(_audit(item, "sf_to_cp", "delete", [], "ok"))
                elif action == "create":
                    item.cp_id = str(await ctx.copernica.create_profile(ctx.database, values))
                    item.audits.append(_audit(item, "sf_to_cp", "create", sorted(values), "ok"))
                else:
                    await ctx.copernica.update_profile_fields(int(item.cp_id or 0), values)
                    changed = sorted(merged.to_copernica) if merged else []
                    if changed:
                        item.audits.append(_audit(item, "sf_to_cp", "update", changed, "ok"))
            except ApiError as error:
                item.failure = failure_from(error)

    deletes = [i for i in writes if i.plan.copernica == "delete"]
    await asyncio.gather(*(one(i) for i in writes if i.plan.copernica != "delete"))
    if not deletes:
        return
    # A delete holds a share lock on the tenant's row while it runs, so a switch of the synced
    # database waits for it, and no delete starts after a switch. Without the database the
    # deletes wait for the next try (what was written so far must still be recorded).
    try:
        async with pool.acquire() as conn, conn.transaction():
            synced = await conn.fetchval(QUERIES["lock_tenant_database"], ctx.tenant.id)
            if synced != ctx.database:
                _database_changed(deletes)
                return
            await asyncio.gather(*(one(i) for i in deletes))
    except Exception as error:
        if not connection_trouble(error):
            raise
        for item in deletes:
            if item.failure is None and not any(a.action == "delete" for a in item.audits):
                item.failure = failure_from(error)


def _database_changed(items: list[Item]) -> None:
    for item in items:
        item.failure = Failure("the synced Copernica database changed meanwhile; looking again")


# --- 5. remember --------------------------------------------------------------------------


async def _record(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping, items: list[Item]
) -> None:
    """Links, audits and resolved reports of the batch in one round trip (``record_batch``,
    migration 0011); a merge's re-link also queues its master, in the same transaction."""
    tenant_id = ctx.tenant.id
    audits: list[dict[str, Any]] = []
    saves: list[dict[str, Any]] = []
    drops: list[str] = []
    masters: list[str] = []
    for item in items:
        audits.extend(audit.row() for audit in item.audits)
        if item.failure is not None:
            continue
        action, link = item.plan.link, item.link
        if action == "save" and item.sf_id and item.cp_id and item.plan.merged:
            saves.append(_link_row(item.sf_id, item.cp_id, item.plan.merged.agreed))
        elif action == "drop" and link is not None:
            drops.append(link["salesforce_id"])
        elif action == "tombstone" and link is not None:
            saves.append(_link_row(link["salesforce_id"], link["copernica_id"], link["agreed"],
                                   datetime.now(UTC)))
        elif action == "relink" and item.plan.relink_to and item.cp_id:
            # the profile's link moves to the master (its old link gives way), agreeing on nothing
            saves.append(_link_row(item.plan.relink_to, item.cp_id, {}))
            masters.append(item.plan.relink_to)
    synced = [i for item in items if item.failure is None for i in (item.sf_id, item.cp_id) if i]
    async with pool.acquire() as conn:
        async with conn.transaction() if masters else contextlib.nullcontext():
            row = await conn.fetchrow(
                QUERIES["record_batch"], tenant_id, ctx.database, saves, drops, audits, synced
            )
            assert row is not None  # the function always answers
            if not row["database_ok"]:
                # switched meanwhile: links of this batch would point into the old database
                _database_changed([i for i in items if i.failure is None])
                return
            for master in masters:
                await queue.enqueue(
                    tenant_id, SYNC, salesforce_key(master), {"sf_id": master}, conn=conn
                )
        if row["pushed"]:  # resolved reports that Salesforce shows: their status follows
            await queue.enqueue(tenant_id, PUSH_ERRORS, "errors", {}, conn=conn)


def _link_row(
    sf_id: str, cp_id: str, agreed: ReadMapping[str, str], deleted_at: datetime | None = None
) -> dict[str, Any]:
    return {"sf": sf_id, "cp": cp_id, "agreed": dict(agreed),
            "deleted_at": deleted_at.isoformat() if deleted_at else None}


RECORD_PATIENCE = 300.0  # seconds a batch that wrote waits for the database to record it


async def _record_patiently(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping, items: list[Item],
    jobs: list[Job],
) -> None:
    """``_record``, again while the database is away: what was just written to the platforms
    is known only to this process until the links say so, and a write whose fingerprints were
    never recorded would look like a user's change at the next sync (and could win a conflict
    over a newer change on the other side). The leases are kept meanwhile where possible."""
    deadline = time.monotonic() + RECORD_PATIENCE
    attempt = 0
    while True:
        try:
            await _record(ctx, pool, queue, mapping, items)
            return
        except Exception as error:
            attempt += 1
            if not connection_trouble(error) or time.monotonic() >= deadline:
                raise
            if attempt == 1:
                log.warning("a batch waits for the database to record what it wrote (%s)",
                            type(error).__name__)
            await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
            with contextlib.suppress(Exception):
                await queue.extend(jobs)
