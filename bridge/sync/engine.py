"""Apply: bring records to agreement on both sides, a batch of ``sync`` jobs at a time.

A job only says *which* record changed (``sf_id`` and/or ``cp_id``); the engine always reads the
current record on both sides and merges it against the fingerprints both sides last agreed on
(``bridge.sync.merge``). That makes every job idempotent, makes stale or out-of-order deliveries
harmless, and turns echoes of the bridge's own writes into "nothing to do".

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from bridge.copernica.models import Profile
from bridge.db import QUERIES, Conn, Pool, connection_trouble
from bridge.errors import ApiError, MappingError
from bridge.metrics import Metrics
from bridge.salesforce.client import parse_datetime
from bridge.sync.context import TenantContext
from bridge.sync.jobs import Failure, Job, JobQueue, failure_from
from bridge.sync.mapping import Mapping, from_copernica, from_salesforce
from bridge.sync.mapping import to_copernica as copernica_values
from bridge.sync.mapping import to_salesforce as salesforce_values
from bridge.sync.merge import MergeResult, merge
from bridge.sync.reports import resolve_synced
from bridge.vocabulary import SYNC, Direction

log = logging.getLogger(__name__)

COPERNICA_CONCURRENCY = 8
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def salesforce_key(sf_id: str) -> str:
    return f"sf:{sf_id}"


def copernica_key(cp_id: str | int) -> str:
    return f"cp:{cp_id}"


def valid_salesforce_id(value: object) -> bool:
    return isinstance(value, str) and bool(_SALESFORCE_ID.match(value))


def soql_quote(value: str) -> str:
    """A SOQL string literal (quotes and backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Item:
    """One record of the batch, as both sides know it now."""

    sf_id: str | None
    cp_id: str | None
    link: asyncpg.Record | None
    jobs: list[Job] = field(default_factory=list)
    sf: dict[str, Any] | None = None  # Salesforce record (queryAll: deleted ones too)
    cp: Profile | None = None  # live Copernica profile
    # the plan
    merged: MergeResult | None = None
    sf_action: str | None = None  # "update" | "create"
    cp_action: str | None = None  # "update" | "create" | "delete"
    link_action: str = "save"  # "save" | "drop" | "tombstone" | "none"
    audits: list[dict[str, Any]] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def sf_alive(self) -> bool:
        return self.sf is not None and not self.sf.get("IsDeleted")


async def sync_batch(
    ctx: TenantContext, pool: Pool, queue: JobQueue, jobs: list[Job],
    *, metrics: Metrics | None = None,
) -> dict[int, Failure]:
    """The handler of ``sync`` jobs: returns the failures by job id. ``metrics`` hears the
    sync lag of every write and the announced changes that needed none (echoes)."""
    mapping = await ctx.mapping()
    items = await _identify(ctx, pool, jobs)
    await _read(ctx, mapping, items)
    await _match_unlinked(ctx, pool, mapping, items)
    for item in _unique(items):
        _plan(ctx, mapping, item)
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
        i.cp_id: (i.sf_id, i.merged.agreed)
        for i in items
        if i.cp_action == "update" and i.failure is None and i.cp_id and i.sf_id and i.merged
    }
    ctx.writing.update(writing)
    try:
        await _write_copernica(ctx, pool, mapping, items)
        await _record_patiently(ctx, pool, queue, mapping, items, jobs)
    finally:
        for cp_id in writing:
            ctx.writing.pop(cp_id, None)
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
        if item.cp_action is not None:
            wrote = True
            if sf_at:
                metrics.sync_lag.labels(direction="sf_to_cp").observe(max(0.0, now - min(sf_at)))
        if item.sf_action is not None and item.sf_id:
            wrote = True
            if cp_at:
                metrics.sync_lag.labels(direction="cp_to_sf").observe(max(0.0, now - min(cp_at)))
        if not wrote and item.link_action in ("save", "none"):
            if cp_at:
                metrics.echoes.labels(platform="copernica").inc()
            elif sf_at:
                metrics.echoes.labels(platform="salesforce").inc()


# --- 1. who is who ------------------------------------------------------------------------


async def _identify(ctx: TenantContext, pool: Pool, jobs: list[Job]) -> list[Item]:
    sf_ids = [j.payload["sf_id"] for j in jobs if valid_salesforce_id(j.payload.get("sf_id"))]
    cp_ids = [str(j.payload["cp_id"]) for j in jobs if j.payload.get("cp_id")]
    async with pool.acquire() as conn:
        by_sf = {
            r["salesforce_id"]: r
            for r in await conn.fetch(QUERIES["links_by_salesforce"], ctx.tenant.id, sf_ids)
        }
        by_cp = {
            r["copernica_id"]: r
            for r in await conn.fetch(QUERIES["links_by_copernica"], ctx.tenant.id, cp_ids)
        }
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
            item.link_action = "none"
            continue
        seen.add(pair)
        unique.append(item)
    return unique


# --- 2. read both sides -------------------------------------------------------------------


async def _read(ctx: TenantContext, mapping: Mapping, items: list[Item]) -> None:
    records = await _salesforce_records(ctx, mapping, [i.sf_id for i in items if i.sf_id])
    profiles = await _copernica_profiles(ctx, [i.cp_id for i in items if i.cp_id])
    for item in items:
        if item.sf_id:
            item.sf = records.get(item.sf_id)
        if item.cp_id:
            item.cp = profiles.get(item.cp_id)


async def _salesforce_records(
    ctx: TenantContext, mapping: Mapping, ids: list[str | None]
) -> dict[str, dict[str, Any]]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    soql = (
        f"SELECT {', '.join(mapping.salesforce_select())} FROM Contact "
        f"WHERE Id IN ({', '.join(soql_quote(i) for i in wanted)})"
    )
    found: dict[str, dict[str, Any]] = {}
    async for record in ctx.salesforce.query(soql, include_deleted=True):
        found[record["Id"]] = record
        found[record["Id"][:15]] = record  # 15- and 18-character ids name the same record
    return {i: found[i] for i in wanted if i in found}


async def _copernica_profiles(
    ctx: TenantContext, ids: list[str | None]
) -> dict[str, Profile | None]:
    limit = asyncio.Semaphore(COPERNICA_CONCURRENCY)

    async def one(cp_id: str) -> tuple[str, Profile | None]:
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
        return cp_id, profile

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
        if item.sf_alive and item.cp is None and ctx.tenant.sf_to_cp:
            assert item.sf is not None
            sf_id = item.sf["Id"]
            found = await ctx.copernica.find_profiles(
                ctx.database, {mapping.link_field: sf_id}, limit=2
            )
            if not found and email and item.sf.get("Email"):
                found = await ctx.copernica.find_profiles(
                    ctx.database, {email.cp_name: item.sf["Email"]}, limit=2
                )
                claimed = _field(found[0].fields, mapping.link_field) if len(found) == 1 else ""
                found = found if len(found) == 1 and claimed in ("", sf_id) else []
            if found:
                link = await _link(pool, ctx.tenant.id, cp_id=str(found[0].id))
                if link is None or link["salesforce_id"] == sf_id:  # free, or linked meanwhile
                    item.cp, item.cp_id, item.link = found[0], str(found[0].id), link
        elif item.cp is not None and item.sf is None and ctx.tenant.cp_to_sf:
            candidate = None
            claimed = _field(item.cp.fields, mapping.link_field)
            if valid_salesforce_id(claimed):
                candidate = (await _salesforce_records(ctx, mapping, [claimed])).get(claimed)
            elif email and _field(item.cp.fields, email.cp_name):
                address = _field(item.cp.fields, email.cp_name)
                soql = (
                    f"SELECT {', '.join(mapping.salesforce_select())} FROM Contact "
                    f"WHERE Email = {soql_quote(address)} LIMIT 2"
                )
                matches = [r async for r in ctx.salesforce.query(soql)]
                candidate = matches[0] if len(matches) == 1 else None
            if candidate is not None:
                link = await _link(pool, ctx.tenant.id, sf_id=candidate["Id"])
                if link is None or link["copernica_id"] == item.cp_id:  # free, or linked meanwhile
                    item.sf, item.sf_id, item.link = candidate, candidate["Id"], link


async def _link(
    pool: Pool, tenant_id: int, *, sf_id: str | None = None, cp_id: str | None = None
) -> asyncpg.Record | None:
    """The link of a record now (another worker may have linked it since this batch began)."""
    async with pool.acquire() as conn:
        if sf_id is not None:
            rows = await conn.fetch(QUERIES["links_by_salesforce"], tenant_id, [sf_id])
        else:
            rows = await conn.fetch(QUERIES["links_by_copernica"], tenant_id, [cp_id])
    return rows[0] if rows else None


def _field(fields: dict[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in fields.items() if k.lower() == lowered), "")


# --- 3. decide ----------------------------------------------------------------------------


def _plan(ctx: TenantContext, mapping: Mapping, item: Item) -> None:
    tenant = ctx.tenant
    deleted_in_salesforce = (item.sf is not None and item.sf.get("IsDeleted")) or (
        item.link is not None and item.sf is None
    )
    if deleted_in_salesforce:
        _plan_salesforce_delete(ctx, item)
        return
    if item.link is not None and item.cp is None:
        # Deleted in Copernica: that never touches Salesforce; only the link goes.
        item.link_action = "drop"
        item.audits.append(_audit(item, "cp_to_sf", "copernica_delete", [], "link dropped"))
        return
    if item.sf is None and item.cp is None:
        item.link_action = "none"
        return
    if (item.sf is None and not tenant.cp_to_sf) or (item.cp is None and not tenant.sf_to_cp):
        item.link_action = "none"  # a record of the side that is switched off
        return
    agreed = dict(item.link["agreed"]) if item.link is not None else {}
    sf_values = from_salesforce(mapping, item.sf) if item.sf is not None else None
    cp_values = from_copernica(mapping, item.cp.fields) if item.cp is not None else None
    result = merge(
        mapping, ctx.key, agreed, sf_values, cp_values,
        direction=tenant.direction, rule=tenant.conflict_rule,
        salesforce_modified=_sf_modified(item.sf),
        copernica_modified=_cp_modified(item.cp, mapping.timezone),
    )
    item.merged = result
    if result.to_salesforce or (item.sf is None and tenant.cp_to_sf):
        item.sf_action = "update" if item.sf is not None else "create"
    link_value = _field(item.cp.fields, mapping.link_field) if item.cp is not None else ""
    # The profile keeps the Salesforce Id (for a contact created now: once it has one).
    needs_link_field = item.sf_action == "create" or (
        item.sf is not None and link_value != item.sf["Id"]
    )
    if result.to_copernica or item.cp is None or needs_link_field:
        item.cp_action = "update" if item.cp is not None else "create"
    for conflict in result.conflicts:
        item.audits.append(_audit(
            item, "both", "conflict", [conflict.field], f"{conflict.winner} wins",
            detail={"salesforce": conflict.salesforce, "copernica": conflict.copernica,
                    "rule": tenant.conflict_rule},
        ))


def _plan_salesforce_delete(ctx: TenantContext, item: Item) -> None:
    tenant = ctx.tenant
    master = item.sf.get("MasterRecordId") if item.sf else None
    if master and item.cp is not None:
        # A merge: the profile follows the surviving contact instead of becoming an orphan.
        item.link_action = "relink"
        item.audits.append(_audit(item, "sf_to_cp", "merge", [], f"relinked to {master}"))
        return
    if item.link is None and item.cp is None:
        item.link_action = "none"
        return
    if tenant.apply_deletes and tenant.sf_to_cp and item.cp is not None:
        item.cp_action = "delete"
        item.link_action = "drop"
        return
    item.link_action = "tombstone" if item.link is not None else "none"
    if item.link is not None and item.link["sf_deleted_at"] is None:
        item.audits.append(_audit(item, "sf_to_cp", "delete", [], "profile kept (apply deletes off)"))


def _sf_modified(record: dict[str, Any] | None) -> datetime | None:
    text = (record or {}).get("LastModifiedDate")
    return parse_datetime(text) if text else None


def _cp_modified(profile: Profile | None, timezone: str) -> datetime | None:
    if profile is None or not profile.modified or profile.modified.startswith("0000"):
        return None
    local = datetime.strptime(profile.modified, "%Y-%m-%d %H:%M:%S")
    return local.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _audit(
    item: Item, direction: Direction, action: str, fields: list[str], outcome: str,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "direction": direction, "salesforce_id": item.sf_id, "copernica_id": item.cp_id,
        "action": action, "fields": fields, "outcome": outcome, "detail": detail,
    }


# --- 4. write -----------------------------------------------------------------------------


async def _write_salesforce(ctx: TenantContext, mapping: Mapping, items: list[Item]) -> None:
    updates = [i for i in items if i.sf_action == "update" and i.merged and i.merged.to_salesforce]
    creates = [i for i in items if i.sf_action == "create" and i.merged]
    for item in creates:
        assert item.merged is not None
        if not item.merged.to_salesforce.get("LastName"):
            item.failure = failure_from(MappingError(
                "this Copernica profile has no LastName, which Salesforce requires for a contact"
            ))
    creates = [i for i in creates if i.failure is None]
    for batch, action in ((updates, "update"), (creates, "create")):
        if not batch:
            continue
        records = [salesforce_values(mapping, i.merged.to_salesforce) for i in batch]  # type: ignore[union-attr]
        try:
            if action == "update":
                results = await ctx.salesforce.update_many(
                    "Contact", [{"Id": i.sf_id, **r} for i, r in zip(batch, records, strict=True)]
                )
            else:
                results = await ctx.salesforce.create_many("Contact", records)
        except ApiError as error:
            for item in batch:
                item.failure = failure_from(error)
            continue
        for item, result in zip(batch, results, strict=True):
            fields = sorted(item.merged.to_salesforce)  # type: ignore[union-attr]
            if result.success:
                if action == "create":
                    item.sf_id = result.id
                    item.sf = {"Id": result.id}
                item.audits.append(_audit(item, "cp_to_sf", action, fields, "ok"))
            else:
                item.failure = failure_from(result.error())


async def _write_copernica(
    ctx: TenantContext, pool: Pool, mapping: Mapping, items: list[Item]
) -> None:
    limit = asyncio.Semaphore(COPERNICA_CONCURRENCY)
    writes = [i for i in items if i.cp_action and i.failure is None]

    async def one(item: Item) -> None:
        values = copernica_values(mapping, item.merged.to_copernica) if item.merged else {}
        if item.sf_id and item.cp_action in ("update", "create"):
            values[mapping.link_field] = item.sf["Id"] if item.sf else item.sf_id
        async with limit:
            try:
                if item.cp_action == "delete":
                    await ctx.copernica.delete_profile(int(item.cp_id or 0))
                    item.audits.append(_audit(item, "sf_to_cp", "delete", [], "ok"))
                elif item.cp_action == "create":
                    item.cp_id = str(await ctx.copernica.create_profile(ctx.database, values))
                    item.audits.append(_audit(item, "sf_to_cp", "create", sorted(values), "ok"))
                else:
                    await ctx.copernica.update_profile_fields(int(item.cp_id or 0), values)
                    changed = sorted(item.merged.to_copernica) if item.merged else []
                    if changed:
                        item.audits.append(_audit(item, "sf_to_cp", "update", changed, "ok"))
            except ApiError as error:
                item.failure = failure_from(error)

    deletes = [i for i in writes if i.cp_action == "delete"]
    await asyncio.gather(*(one(i) for i in writes if i.cp_action != "delete"))
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
            if item.failure is None and not any(a["action"] == "delete" for a in item.audits):
                item.failure = failure_from(error)


def _database_changed(items: list[Item]) -> None:
    for item in items:
        item.failure = Failure("the synced Copernica database changed meanwhile; looking again")


# --- 5. remember --------------------------------------------------------------------------


async def _record(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping, items: list[Item]
) -> None:
    tenant_id = ctx.tenant.id
    audits = []
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(QUERIES["lock_tenant_database"], tenant_id) != ctx.database:
            # switched meanwhile: links of this batch would point into the old database
            _database_changed([i for i in items if i.failure is None])
            return
        for item in items:
            audits.extend(item.audits)
            if item.failure is not None:
                continue
            if item.link_action == "save" and item.sf_id and item.cp_id and item.merged:
                await _save_link(conn, tenant_id, item.sf_id, item.cp_id, item.merged.agreed)
            elif item.link_action == "drop" and item.link is not None:
                await conn.execute(QUERIES["drop_link"], tenant_id, item.link["salesforce_id"])
            elif item.link_action == "tombstone" and item.link is not None:
                await _save_link(
                    conn, tenant_id, item.link["salesforce_id"], item.link["copernica_id"],
                    item.link["agreed"], deleted_at=datetime.now(UTC),
                )
            elif item.link_action == "relink" and item.sf is not None and item.cp_id:
                master = item.sf["MasterRecordId"]
                if item.link is not None:
                    await conn.execute(QUERIES["drop_link"], tenant_id, item.link["salesforce_id"])
                await _save_link(conn, tenant_id, master, item.cp_id, {})
                await queue.enqueue(
                    tenant_id, SYNC, salesforce_key(master), {"sf_id": master}, conn=conn
                )
        if audits:
            await conn.execute(QUERIES["write_audit"], tenant_id, audits)
        synced = [i for item in items if item.failure is None for i in (item.sf_id, item.cp_id) if i]
        await resolve_synced(conn, queue, tenant_id, synced)  # their error reports are over


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


async def _save_link(
    conn: Conn, tenant_id: int, sf_id: str, cp_id: str, agreed: dict[str, str],
    *, deleted_at: datetime | None = None,
) -> None:
    """Link the pair; an older link of either record gives way (a merge, a re-created profile)."""
    await conn.execute(QUERIES["unlink_either"], tenant_id, sf_id, cp_id)
    await conn.execute(QUERIES["save_link"], tenant_id, sf_id, cp_id, agreed, deleted_at)
