"""The safety net and the first merge: compare both sides page by page, queue what differs.

A run reads Salesforce contacts (pages of ≤ 2,000) and Copernica profiles (pages of ≤ 1,000),
compares each record's fingerprints with its link, and queues a ``sync`` job for every record that
is unlinked or differs; the engine does the rest. Memory holds one page (plus the set of
Copernica profile ids, to find profiles deleted in Copernica). ``full`` and ``manual`` runs
compare everything; ``reconcile`` runs only what changed since the watermark of the last run.

Deletes the real-time path missed are found by every run: Salesforce contacts come from
``queryAll`` (the recycle bin included; a delete moves ``SystemModstamp``), and a linked contact
that is deleted there is queued, so the engine applies the delete as the tenant's settings say;
links whose Copernica profile is no longer in the synced database are queued as Copernica deletes.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.copernica.models import Profile
from bridge.db import QUERIES, Pool
from bridge.sync.context import TenantContext
from bridge.sync.engine import copernica_key, salesforce_key
from bridge.sync.jobs import Job, JobQueue
from bridge.sync.mapping import Mapping, fingerprints, from_copernica, from_salesforce
from bridge.vocabulary import SYNC

log = logging.getLogger(__name__)

WATERMARK = "reconcile"
OVERLAP = timedelta(minutes=2)  # re-read a little before the watermark: clocks and commits lag
DRAIN_POLL = 0.25


async def run_reconcile(ctx: TenantContext, pool: Pool, queue: JobQueue, job: Job) -> None:
    """Carry out the run of ``job`` (a ``reconcile`` job), recording progress on it."""
    run_id = int(job.payload["run_id"])
    tenant = ctx.tenant
    async with pool.acquire() as conn:
        since = None
        if job.payload.get("kind") == "reconcile":
            since = await conn.fetchval(QUERIES["get_watermark"], tenant.id, WATERMARK)
        await conn.execute(QUERIES["start_run"], run_id, tenant.id, None)
    started = datetime.now(UTC)
    mapping = await ctx.mapping()
    progress = _Progress(pool, tenant.id, run_id)
    try:
        cp_ids = {str(i) for i in await ctx.copernica.profile_ids(ctx.database)}
        progress.total = 0
        if tenant.sf_to_cp:
            progress.total += await ctx.salesforce.count(
                "SELECT COUNT() FROM Contact" + _changed_since(since)
            )
        if tenant.cp_to_sf:
            progress.total += len(cp_ids)  # at most; a reconcile reads only the changed ones
        # First, before this run links anything: the ids are a snapshot.
        queued = await _find_copernica_deletes(ctx, pool, queue, cp_ids)
        if tenant.cp_to_sf:  # first: profiles this run creates are not scanned again
            queued += await _scan_copernica(ctx, pool, queue, mapping, since, progress, job)
        if tenant.sf_to_cp:
            queued += await _scan_salesforce(ctx, pool, queue, mapping, since, progress, job)
        del cp_ids
        await progress.save(f"bringing {queued} record(s) up to date")
        held = await _drain(pool, queue, tenant.id, job)
    except Exception as error:
        async with pool.acquire() as conn:
            await conn.execute(
                QUERIES["finish_run"], run_id, tenant.id, "failed", f"{type(error).__name__}: {error}"
            )
        raise
    async with pool.acquire() as conn:
        await conn.execute(QUERIES["set_watermark"], tenant.id, WATERMARK, started)
        message = f"{progress.done} record(s) compared, {queued} brought up to date"
        if held:
            message += f", {held} held (see the error reports)"
        await conn.execute(QUERIES["finish_run"], run_id, tenant.id, "done", message)


class _Progress:
    def __init__(self, pool: Pool, tenant_id: int, run_id: int) -> None:
        self.pool, self.tenant_id, self.run_id = pool, tenant_id, run_id
        self.done = 0
        self.total: int | None = None

    async def add(self, count: int) -> None:
        self.done += count
        if self.total is not None and self.done > self.total:
            self.total = self.done
        await self.save()

    async def save(self, message: str | None = None) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                QUERIES["run_progress"], self.run_id, self.tenant_id, self.done, self.total, message
            )


def _changed_since(since: datetime | None) -> str:
    if since is None:
        return ""
    return f" WHERE SystemModstamp >= {(since - OVERLAP).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


async def _scan_salesforce(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping,
    since: datetime | None, progress: _Progress, job: Job,
) -> int:
    soql = (
        f"SELECT {', '.join(mapping.salesforce_select())} FROM Contact{_changed_since(since)}"
        " ORDER BY Id"
    )
    queued = 0
    async for page in ctx.salesforce.query_pages(soql, include_deleted=True):
        async with pool.acquire() as conn:
            links = {
                r["salesforce_id"]: r
                for r in await conn.fetch(
                    QUERIES["links_by_salesforce"], ctx.tenant.id, [r["Id"] for r in page]
                )
            }
            due = []
            for record in page:
                link = links.get(record["Id"])
                if record.get("IsDeleted"):  # in the recycle bin: news only for a live link
                    if link is not None and link["sf_deleted_at"] is None:
                        due.append((salesforce_key(record["Id"]), {"sf_id": record["Id"]}))
                    continue
                values = fingerprints(ctx.key, mapping, from_salesforce(mapping, record))
                if link is None or _differs(values, link["agreed"]):
                    due.append((salesforce_key(record["Id"]), {"sf_id": record["Id"]}))
            await queue.enqueue_many(ctx.tenant.id, SYNC, due, conn=conn)
            queued += len(due)
        await progress.add(len(page))
        await queue.extend([job])
    return queued


async def _scan_copernica(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping,
    since: datetime | None, progress: _Progress, job: Job,
) -> int:
    if since is None:
        profiles = ctx.copernica.profiles(ctx.database)
    else:
        local = (since - OVERLAP).astimezone(ZoneInfo(mapping.timezone))
        profiles = ctx.copernica.profiles_modified_since(ctx.database, local.replace(tzinfo=None))
    queued = 0
    page: list[Profile] = []
    async for profile in profiles:
        page.append(profile)
        if len(page) == 1000:
            queued += await _queue_profiles(ctx, pool, queue, mapping, page)
            await progress.add(len(page))
            await queue.extend([job])
            page = []
    if page:
        queued += await _queue_profiles(ctx, pool, queue, mapping, page)
        await progress.add(len(page))
    return queued


async def _queue_profiles(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping, page: list[Profile]
) -> int:
    async with pool.acquire() as conn:
        links = {
            r["copernica_id"]: r
            for r in await conn.fetch(
                QUERIES["links_by_copernica"], ctx.tenant.id, [str(p.id) for p in page]
            )
        }
        due = []
        for profile in page:
            link = links.get(str(profile.id))
            values = fingerprints(ctx.key, mapping, from_copernica(mapping, profile.fields))
            if link is not None and not _differs(values, link["agreed"]):
                continue
            payload = {"cp_id": str(profile.id)}
            if link is not None:
                payload["sf_id"] = link["salesforce_id"]
            due.append(
                (salesforce_key(link["salesforce_id"]) if link else copernica_key(profile.id), payload)
            )
        await queue.enqueue_many(ctx.tenant.id, SYNC, due, conn=conn)
    return len(due)


async def _find_copernica_deletes(
    ctx: TenantContext, pool: Pool, queue: JobQueue, cp_ids: set[str]
) -> int:
    """Links whose profile is gone: deleted in Copernica while no webhook reached us."""
    queued, after = 0, ""
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["links_page"], ctx.tenant.id, after, 1000)
            due = [
                (salesforce_key(r["salesforce_id"]),
                 {"sf_id": r["salesforce_id"], "cp_id": r["copernica_id"]})
                for r in rows
                if r["copernica_id"] not in cp_ids
            ]
            await queue.enqueue_many(ctx.tenant.id, SYNC, due, conn=conn)
            queued += len(due)
        if len(rows) < 1000:
            return queued
        after = rows[-1]["salesforce_id"]


def _differs(current: dict[str, str], agreed: dict[str, str]) -> bool:
    return any(agreed.get(name) != value for name, value in current.items())


async def _drain(pool: Pool, queue: JobQueue, tenant_id: int, job: Job) -> int:
    """Wait until the tenant's queued changes are applied (or held); return the held count."""
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(QUERIES["tenant_jobs_pending"], tenant_id, SYNC)
        assert row is not None  # an aggregate: always one row
        if row["pending"] == 0:
            return int(row["held"])
        await queue.extend([job])
        await asyncio.sleep(DRAIN_POLL)
