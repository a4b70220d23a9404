"""The daily statistics run: emailings sent from the Salesforce tab get their Copernica results
(destinations, deliveries, impressions, clicks, errors, unsubscribes) as ``Copernica_Emailing__c``
records in Salesforce, upserted by the Copernica emailing id so a rerun updates in place.

Impressions and clicks go to Salesforce as totals (every open and click counted); the tab shows
the unique counts (people) beside them, each labelled. "Refresh statistics" runs it now."""

from __future__ import annotations

from bridge.db import QUERIES, Pool
from bridge.salesforce.objects import EMAILING
from bridge.sync.context import TenantContext
from bridge.sync.jobs import Failure, JobQueue, failure_from
from bridge.vocabulary import STATISTICS

WINDOW_DAYS = 30  # emailings older than this keep their last figures
DAILY_KEY = "daily"  # the one waiting statistics job of a tenant


async def refresh_now(queue: JobQueue, tenant_id: int) -> None:
    """Bring the daily run forward to now (a waiting one merges; the scheduler re-arms it)."""
    await queue.enqueue(tenant_id, STATISTICS, DAILY_KEY, {})


async def push_statistics(ctx: TenantContext, pool: Pool) -> dict[str, Failure]:
    """Upsert the figures of the tenant's recent sends; return failures by emailing id."""
    async with pool.acquire() as conn:
        sends = await conn.fetch(QUERIES["sends_for_statistics"], ctx.tenant.id, WINDOW_DAYS)
    records = []
    for send in sends:
        figures = await ctx.copernica.emailing_statistics(send["emailing_id"], send["product"])
        records.append({
            "Emailing_Id__c": f"{send['product']}-{send['emailing_id']}",
            "Name": send["content_name"][:80],
            "Target__c": f"{send['target_type']}: {send['target_name']}"[:255],
            "Sent_At__c": send["sent_at"].isoformat(),
            "Destinations__c": figures.destinations,
            "Deliveries__c": figures.deliveries,
            "Impressions__c": figures.impressions,
            "Clicks__c": figures.clicks,
            "Errors__c": figures.errors,
            "Unsubscribes__c": figures.unsubscribes,
        })
    if not records:
        return {}
    results = await ctx.salesforce.upsert_many(EMAILING, "Emailing_Id__c", records)
    return {
        record["Emailing_Id__c"]: failure_from(result.error())
        for record, result in zip(records, results, strict=True)
        if not result.success
    }
