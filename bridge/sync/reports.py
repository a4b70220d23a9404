"""Error reports: every held job and permanent error becomes one, visible in the bridge and
pushed to Salesforce as ``Copernica_Sync_Error__c`` records."""

from __future__ import annotations

import asyncpg

from bridge.db import QUERIES, Conn
from bridge.errors import without_values
from bridge.sync.jobs import JobQueue
from bridge.vocabulary import ADVICE, Category, OneWay, Operation, Platform


async def record_error(
    conn: Conn,
    tenant_id: int,
    *,
    category: Category,
    operation: Operation,
    message: str,
    direction: OneWay | None = None,
    record_id: str | None = None,
    details: str | None = None,
    job_id: int | None = None,
    platform: Platform | None = None,
) -> int:
    """Report a failure; the same failure of the same record again refreshes its open report
    (and replaces its older held job) instead of adding another. Reports are kept and pushed
    to Salesforce, so anything in the texts that may be a customer's value is masked."""
    message = without_values(message)
    details = without_values(details) if details else details
    same = await conn.fetchrow(QUERIES["open_report_like"], tenant_id, record_id, category, message)
    if same is None:
        return int(
            await conn.fetchval(
                QUERIES["create_error_report"], tenant_id, category, operation, direction,
                record_id, message, details, job_id, platform,
            )
        )
    if same["job_id"] is not None and same["job_id"] != job_id:
        await conn.execute(QUERIES["delete_held_job"], same["job_id"], tenant_id)
    await conn.execute(QUERIES["refresh_report"], same["id"], tenant_id, job_id)
    return int(same["id"])


async def error_reports(
    conn: Conn, tenant_id: int, limit: int = 50
) -> list[asyncpg.Record]:
    return await conn.fetch(QUERIES["error_reports"], tenant_id, limit)


async def requeue_report(queue: JobQueue, tenant_id: int, report_id: int) -> bool:
    """Requeue the held job behind a report; False when the report is not the tenant's or has
    no held job any more."""
    async with queue.pool.acquire() as conn:
        report = await conn.fetchrow(QUERIES["error_report"], report_id, tenant_id)
    if report is None or report["job_id"] is None:
        return False
    if not await queue.requeue(report["job_id"], tenant_id):
        return False
    async with queue.pool.acquire() as conn:
        await conn.execute(QUERIES["mark_report"], report_id, tenant_id, "requeued")
    return True


def salesforce_record(report: asyncpg.Record) -> dict[str, object]:
    """The ``Copernica_Sync_Error__c`` record of a report (field names: bridge.salesforce.objects)."""
    record_id = report["record_id"] or ""
    return {
        "Category__c": report["category"],
        "Operation__c": report["operation"],
        "Direction__c": report["direction"],
        "Record_Id__c": record_id[:255] or None,
        "Contact__c": record_id if record_id.startswith("003") else None,
        "Message__c": report["message"][:255],
        "Details__c": "\n\n".join(
            p for p in (report["message"], report["details"], _advice(report)) if p
        )[:32768],
        "Occurred_At__c": report["occurred_at"].isoformat(),
        "Status__c": "resolved" if report["status"] == "resolved" else "open",
    }


def _advice(report: asyncpg.Record) -> str | None:
    advice = ADVICE.get(report["category"])
    return f"What to do: {advice}." if advice else None
