"""The safety net and the first merge: compare both sides page by page, queue what differs.

A run reads Salesforce contacts (REST query pages of ≤ 2,000, or one Bulk API 2.0 query job
from ``BULK_FROM`` records on) and Copernica profiles (pages of 1,000), compares each record's
fingerprints with its link, and queues a ``sync`` job for every record that is unlinked or
differs, carrying the record as the scan read it (``bridge.sync.snapshot``): the engine does not
read it again. Memory holds one page (plus the set of Copernica profile ids, to find profiles
deleted in Copernica, and for a full run the ``CopernicaIndex``). ``full`` and ``manual`` runs
compare everything; ``reconcile`` runs only what changed since the watermark of the last run.

First merge without a search per contact: a full run that scans Salesforce builds, from the
Copernica pages it reads anyway (or, in the direction Salesforce → Copernica, from one extra pass
when that is cheaper than the searches it saves), an index of link-field values and e-mail
addresses → profile id. Each unlinked contact is then queued with the profile the engine would
have matched, or with the "no profile matches" key: 0 Copernica searches instead of 2.

Deletes the real-time path missed are found too: Salesforce contacts come from ``queryAll``
(the recycle bin included; a delete moves ``SystemModstamp``), and a linked contact that is
deleted there is queued, so the engine applies the delete as the tenant's settings say; links
whose Copernica profile is no longer in the synced database are queued as Copernica deletes, by
every full run and by the first reconcile of each day (that look reads every profile id: an
idle tenant's hourly reconcile costs a COUNT and a query in Salesforce, a page in Copernica).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncGenerator
from collections.abc import Mapping as ReadMapping
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.copernica.client import MAX_PAGE
from bridge.copernica.models import Profile
from bridge.db import QUERIES, Pool
from bridge.salesforce.bulk import bulk_query_pages
from bridge.slices import in_slices
from bridge.sync.context import TenantContext
from bridge.sync.engine import copernica_key, salesforce_key
from bridge.sync.jobs import Job, JobQueue
from bridge.sync.mapping import Mapping, fingerprints, from_copernica, from_salesforce
from bridge.sync.snapshot import (
    copernica_absent_payload,
    copernica_profile_payload,
    salesforce_record_payload,
)
from bridge.vocabulary import SYNC

log = logging.getLogger(__name__)

WATERMARK = "reconcile"
OVERLAP = timedelta(minutes=2)  # re-read a little before the watermark: clocks and commits lag
DRAIN_POLL = 0.25
DELETES_WATERMARK = "copernica_deletes"  # when a run last looked for missed Copernica deletes
DELETES_EVERY = timedelta(days=1)
BULK_FROM = 10_000  # Salesforce reads of at least this many records go through Bulk API 2.0


async def run_reconcile(ctx: TenantContext, pool: Pool, queue: JobQueue, job: Job) -> None:
    """Carry out the run of ``job`` (a ``reconcile`` job), recording progress on it."""
    run_id = int(job.payload["run_id"])
    tenant = ctx.tenant
    async with pool.acquire() as conn:
        since = None
        if job.payload.get("kind") == "reconcile":
            since = await conn.fetchval(QUERIES["get_watermark"], tenant.id, WATERMARK)
        await conn.execute(QUERIES["start_run"], run_id, tenant.id, None)
        checked = await conn.fetchval(QUERIES["get_watermark"], tenant.id, DELETES_WATERMARK)
    started = datetime.now(UTC)
    # Copernica deletes come as webhooks; looking for missed ones reads every profile id, so a
    # reconcile does it once a day, and a full run always.
    find_deletes = since is None or checked is None or started - checked >= DELETES_EVERY
    mapping = await ctx.mapping()
    progress = _Progress(pool, tenant.id, run_id)
    try:
        cp_ids: set[str] = set()
        if find_deletes:
            cp_ids = {str(i) for i in await ctx.copernica.profile_ids(ctx.database)}
        sf_count = 0
        if tenant.sf_to_cp:
            sf_count = await ctx.salesforce.count(
                "SELECT COUNT() FROM Contact" + _changed_since(since)
            )
        progress.total = sf_count
        if tenant.cp_to_sf:
            progress.total += len(cp_ids)  # at most; a reconcile reads only the changed ones
        # First, before this run links anything: the ids are a snapshot.
        queued = await _find_copernica_deletes(ctx, pool, queue, cp_ids) if find_deletes else 0
        index = None
        if since is None and tenant.sf_to_cp:
            async with pool.acquire() as conn:
                linked = int(await conn.fetchval(QUERIES["count_links"], tenant.id))
            # the index is free when Copernica is scanned anyway, else it costs a pass of pages
            if tenant.cp_to_sf or sf_count - linked > _pages(len(cp_ids)):
                index = CopernicaIndex(ctx.key, mapping)
        if tenant.cp_to_sf:  # first: profiles this run creates are not scanned again
            queued += await _scan_copernica(ctx, pool, queue, mapping, since, progress, job, index)
        elif index is not None:
            await _index_copernica(ctx, pool, index, queue, job)
        if tenant.sf_to_cp:
            queued += await _scan_salesforce(
                ctx, pool, queue, mapping, since, progress, job, sf_count, index
            )
        del cp_ids, index
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
        if find_deletes:
            await conn.execute(QUERIES["set_watermark"], tenant.id, DELETES_WATERMARK, started)
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


def _pages(count: int) -> int:
    """Copernica calls to page through ``count`` profiles (the last page comes back short)."""
    return count // MAX_PAGE + 1


class CopernicaIndex:
    """The profile the engine's first-merge rule (``engine._match_unlinked``) would match to an
    unlinked contact, without a search: the first profile whose link field holds the contact's
    id, else the one profile with the contact's e-mail address if its link field is empty.
    A profile already linked is no match (nor is an address that several profiles share).

    Values are kept as keyed 64-bit hashes of their casefolded text (Copernica compares text
    that way), ids as ints: measured, 12 MB per 100,000 profiles with an e-mail address, 21 MB
    when they hold a link value too (two dicts of ints).
    """

    NO_MATCH = 0  # the engine would find a profile it cannot use: create a new one

    def __init__(self, key: bytes, mapping: Mapping) -> None:
        self.key = key[:64]
        self.link_field = mapping.link_field
        email = next((f for f in mapping.fields if f.sf_name == "Email"), None)
        self.email_cp = email.cp_name if email else None
        self.by_link: dict[int, int] = {}
        self.by_email: dict[int, int] = {}

    def _hash(self, value: str) -> int:
        digest = hashlib.blake2b(value.casefold().encode(), key=self.key, digest_size=8)
        return int.from_bytes(digest.digest(), "big")

    def add(self, profile: Profile, linked: bool) -> None:
        claimed = profile.fields.get(self.link_field, "")
        if claimed:
            self.by_link.setdefault(self._hash(claimed), self.NO_MATCH if linked else profile.id)
        address = profile.fields.get(self.email_cp, "") if self.email_cp else ""
        if address:
            hashed = self._hash(address)
            usable = not linked and not claimed
            self.by_email[hashed] = (
                self.NO_MATCH if hashed in self.by_email or not usable else profile.id
            )

    def match(self, record: ReadMapping[str, Any]) -> int | None:
        """The profile id to link ``record`` (a contact) to, or None: no profile matches."""
        found = self.by_link.get(self._hash(str(record["Id"])))
        if found is None and self.email_cp and record.get("Email"):
            found = self.by_email.get(self._hash(str(record["Email"])))
        return found or None


async def _index_copernica(
    ctx: TenantContext, pool: Pool, index: CopernicaIndex, queue: JobQueue, job: Job
) -> None:
    page: list[Profile] = []
    async for profile in ctx.copernica.profiles(ctx.database):
        page.append(profile)
        if len(page) == MAX_PAGE:
            await _add_to_index(pool, ctx.tenant.id, index, page)
            await queue.extend([job])
            page = []
    await _add_to_index(pool, ctx.tenant.id, index, page)


async def _add_to_index(
    pool: Pool, tenant_id: int, index: CopernicaIndex, page: list[Profile]
) -> None:
    if not page:
        return
    async with pool.acquire() as conn:
        rows = await conn.fetch(QUERIES["links_of"], tenant_id, [], [str(p.id) for p in page])
    linked = {r["copernica_id"] for r in rows}
    async for profile in in_slices(page):
        index.add(profile, str(profile.id) in linked)


async def _salesforce_pages(
    ctx: TenantContext, mapping: Mapping, since: datetime | None, expected: int
) -> AsyncGenerator[list[dict[str, Any]], None]:
    select = f"SELECT {', '.join(mapping.salesforce_select())} FROM Contact{_changed_since(since)}"
    if expected < BULK_FROM:
        async for page in ctx.salesforce.query_pages(select + " ORDER BY Id", include_deleted=True):
            yield page
        return
    # no ORDER BY: it turns off Salesforce's chunking of bulk queries
    bulk = bulk_query_pages(ctx.salesforce, select, sobject="Contact", include_deleted=True)
    async with aclosing(bulk) as pages:  # a scan that fails deletes the job at once
        async for page in pages:
            yield page


async def _scan_salesforce(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping,
    since: datetime | None, progress: _Progress, job: Job, expected: int,
    index: CopernicaIndex | None,
) -> int:
    queued = 0
    read_at = time.time()  # values are known from the query's start on (the engine checks)
    async with aclosing(_salesforce_pages(ctx, mapping, since, expected)) as pages:
        async for page in pages:
            queued += await _queue_contacts(ctx, pool, queue, mapping, page, index, read_at)
            await progress.add(len(page))
            await queue.extend([job])
    return queued


async def _queue_contacts(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping,
    page: list[dict[str, Any]], index: CopernicaIndex | None, read_at: float,
) -> int:
    async with pool.acquire() as conn:
        links = {
            r["salesforce_id"]: r
            for r in await conn.fetch(
                QUERIES["links_of"], ctx.tenant.id, [r["Id"] for r in page], []
            )
        }
        due = []
        async for record in in_slices(page):
            link = links.get(record["Id"])
            payload = {"sf_id": record["Id"]} | salesforce_record_payload(record, read_at)
            if record.get("IsDeleted"):  # in the recycle bin: news only for a live link
                if link is not None and link["sf_deleted_at"] is None:
                    due.append((salesforce_key(record["Id"]), payload))
                continue
            values = fingerprints(ctx.key, mapping, from_salesforce(mapping, record))
            if link is None and index is not None:
                matched = index.match(record)
                payload |= {"cp_id": str(matched)} if matched else copernica_absent_payload()
            if link is None or _differs(values, link["agreed"]):
                due.append((salesforce_key(record["Id"]), payload))
        await queue.enqueue_many(ctx.tenant.id, SYNC, due, conn=conn)
    return len(due)


async def _scan_copernica(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping,
    since: datetime | None, progress: _Progress, job: Job, index: CopernicaIndex | None,
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
        if len(page) == MAX_PAGE:
            queued += await _queue_profiles(ctx, pool, queue, mapping, page, index)
            await progress.add(len(page))
            await queue.extend([job])
            page = []
    if page:
        queued += await _queue_profiles(ctx, pool, queue, mapping, page, index)
        await progress.add(len(page))
    return queued


async def _queue_profiles(
    ctx: TenantContext, pool: Pool, queue: JobQueue, mapping: Mapping, page: list[Profile],
    index: CopernicaIndex | None,
) -> int:
    read_at = time.time()
    async with pool.acquire() as conn:
        links = {
            r["copernica_id"]: r
            for r in await conn.fetch(
                QUERIES["links_of"], ctx.tenant.id, [], [str(p.id) for p in page]
            )
        }
        due = []
        async for profile in in_slices(page):
            link = links.get(str(profile.id))
            if index is not None:
                index.add(profile, link is not None)
            values = fingerprints(ctx.key, mapping, from_copernica(mapping, profile.fields))
            if link is not None and not _differs(values, link["agreed"]):
                continue
            payload = {"cp_id": str(profile.id)} | copernica_profile_payload(profile, read_at)
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
    """Wait until the changes the run queued are applied (or held), with those of the tenant
    queued before them, but not the real-time changes that keep coming after (a busy tenant's
    run would never end); return the tenant's held count."""
    async with pool.acquire() as conn:
        upto = await conn.fetchval(QUERIES["last_job_id"])
    while True:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(QUERIES["tenant_jobs_pending"], tenant_id, SYNC, upto)
        assert row is not None  # an aggregate: always one row
        if row["pending"] == 0:
            return int(row["held"])
        await queue.extend([job])
        await asyncio.sleep(DRAIN_POLL)
