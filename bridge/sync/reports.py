"""Error reports: every held job and permanent error becomes one, visible in the bridge and
pushed to Salesforce as ``Copernica_Sync_Error__c`` records.

A report has a life cycle: one report per record and cause, ``open`` → ``requeued`` (someone
requeued its job) → ``resolved`` (the record went through later, or the credentials were
fixed); failing again on the same cause opens the same report again and adds its attempts.
Its Salesforce record follows at the next push (``push_reports``).

A report says in a sentence what failed, on which record, and why (``message``); the platform's
own words (``cause``, which tells causes apart) and error code come with it. Reports are kept
and pushed to Salesforce, so no customer value goes in: records are named by their ids. The
Salesforce record links the contact by its lookup (Salesforce shows the name); the bridge's
pages read names and record links from Salesforce when they show reports (``contacts_of``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from bridge.db import QUERIES, Conn, Pool
from bridge.errors import without_values
from bridge.salesforce.client import SalesforceClient
from bridge.salesforce.objects import SYNC_ERROR
from bridge.sync.context import TenantContext
from bridge.sync.jobs import Failure, Job, JobQueue
from bridge.sync.objects import CONTACT
from bridge.vocabulary import ADVICE, PUSH_ERRORS, SYNC, Category, OneWay, Operation, Platform

NAMES: dict[str, str] = {"salesforce": "Salesforce", "copernica": "Copernica"}
PUSH_BATCH = 200  # records per sObject Collections call
_CONTACT_ID = re.compile(r"^003[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")


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
    code: str | None = None,
    attempts: int = 1,
) -> int:
    """Report a failure (``message``: the cause, in the platform's words); the same cause of
    the same record again reopens its unresolved report (and replaces its older held job)
    instead of adding another. Anything in the texts that may be a customer's value is masked."""
    cause = without_values(message)
    details = without_values(details) if details else details
    same = await conn.fetchrow(QUERIES["open_report_like"], tenant_id, record_id, category, cause)
    if same is None:
        text = sentence(category, operation, direction, record_id, cause, platform, attempts)
        return int(
            await conn.fetchval(
                QUERIES["create_error_report"], tenant_id, category, operation, direction,
                record_id, text, details, job_id, platform, cause, code, attempts,
            )
        )
    if same["job_id"] is not None and same["job_id"] != job_id:
        await conn.execute(QUERIES["delete_held_job"], same["job_id"], tenant_id)
    total = int(same["attempts"]) + attempts
    text = sentence(category, operation, direction, record_id, cause, platform, total)
    await conn.execute(QUERIES["refresh_report"], same["id"], tenant_id, job_id, text, attempts, code)
    return int(same["id"])


async def report_held(conn: Conn, queue: JobQueue, job: Job, failure: Failure, operation: Operation) -> int:
    """A job out of attempts: its report (see ``record_error``), pushed to Salesforce next."""
    report_id = await record_error(
        conn, job.tenant_id, category=failure.category, operation=operation,
        message=failure.message, direction=direction(job, failure),
        record_id=job.payload.get("sf_id") or job.payload.get("cp_id"), job_id=job.id,
        platform=failure.platform, code=failure.code, attempts=job.attempts,
    )
    if job.kind != PUSH_ERRORS:  # a failing push must not feed itself
        await queue.enqueue(job.tenant_id, PUSH_ERRORS, "errors", {}, conn=conn)
    return report_id


def direction(job: Job, failure: Failure) -> OneWay | None:
    """Which way the change that failed was going: towards the platform that refused it (a
    Copernica change that Salesforce rejects is ``cp_to_sf`` whatever the job's key), else
    from the side the job came from."""
    if job.kind != SYNC:
        return None
    if failure.platform is not None:
        return "cp_to_sf" if failure.platform == "salesforce" else "sf_to_cp"
    return "cp_to_sf" if job.key.startswith("cp:") else "sf_to_cp"


def sentence(
    category: str, operation: str, direction: str | None, record_id: str | None, cause: str,
    platform: str | None, attempts: int,
) -> str:
    """"The change of contact 0035g00000Xyz could not be saved in Salesforce: Salesforce
    answered INVALID_EMAIL_ADDRESS on Email (1 attempt)."""
    if direction is not None:
        target = "Salesforce" if direction == "cp_to_sf" else "Copernica"
        what = f"The change of {record_name(record_id)} could not be saved in {target}"
    elif operation == "emailing":
        what = "Emailing statistics could not be brought to Salesforce"
    else:
        what = "The sync could not go on"
    if platform is None:
        why = cause
    elif category in ("transient", "rate_limit"):
        why = f"{NAMES[platform]} did not answer properly ({cause})"
    else:
        why = f"{NAMES[platform]} answered {cause}"
    tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
    return f"{what}: {why} ({tries})."


def record_name(record_id: str | None) -> str:
    if not record_id:
        return "a record"
    if record_id.startswith("003"):
        return f"contact {record_id}"
    return f"Copernica profile {record_id}" if record_id.isdigit() else f"record {record_id}"


async def error_reports(
    conn: Conn, tenant_id: int, limit: int = 50
) -> list[asyncpg.Record]:
    return await conn.fetch(QUERIES["error_reports"], tenant_id, limit)


@dataclass(frozen=True)
class Contact:
    """A contact a report names, as Salesforce has it now: its name and its record page."""

    name: str
    url: str


async def contacts_of(
    salesforce: SalesforceClient, reports: list[asyncpg.Record]
) -> dict[str, Contact]:
    """The contacts the reports name, by record id, read from Salesforce when shown (a name is
    the customer's data: reports never keep it). Contacts gone since are left out."""
    ids = sorted({r["record_id"] for r in reports if _CONTACT_ID.match(r["record_id"] or "")})
    if not ids:
        return {}
    base = (await salesforce.session()).instance_url.rstrip("/")
    records = await salesforce.records_by_id(CONTACT.sobject, ["Id", "Name"], ids)
    return {
        i: Contact(record.get("Name") or record["Id"], f"{base}/{record['Id']}")
        for i, record in records.items()
    }


async def requeue_report(queue: JobQueue, tenant_id: int, report_id: int) -> bool:
    """Requeue the held job behind a report; False when the report is not the tenant's, is
    resolved, or has no held job any more (requeued already: it is waiting)."""
    async with queue.pool.acquire() as conn:
        report = await conn.fetchrow(QUERIES["error_report"], report_id, tenant_id)
    if report is None or report["job_id"] is None or report["status"] == "resolved":
        return False
    if not await queue.requeue(report["job_id"], tenant_id):
        return False
    async with queue.pool.acquire() as conn:
        await conn.execute(QUERIES["mark_requeued"], report_id, tenant_id, report["occurred_at"])
    return True


async def push_reports(ctx: TenantContext, pool: Pool, queue: JobQueue) -> None:
    """Copy new error reports to Salesforce (``Copernica_Sync_Error__c``), 200 per call, and
    the reports changed since they were pushed (resolved, failed again) over their records."""
    tenant_id = ctx.tenant.id
    async with pool.acquire() as conn:
        new = await conn.fetch(QUERIES["unpushed_error_reports"], tenant_id, PUSH_BATCH)
        changed = await conn.fetch(QUERIES["reports_with_new_status"], tenant_id, PUSH_BATCH)
    if new:
        results = await ctx.salesforce.create_many(SYNC_ERROR, [salesforce_record(r) for r in new])
        async with pool.acquire() as conn:
            for report, result in zip(new, results, strict=True):
                if result.success:
                    await conn.execute(QUERIES["mark_report_pushed"], report["id"], tenant_id, result.id)
    if changed:
        updates = [{"Id": r["salesforce_id"], **salesforce_record(r)} for r in changed]
        results = await ctx.salesforce.update_many(SYNC_ERROR, updates)
        async with pool.acquire() as conn:
            for report, result in zip(changed, results, strict=True):
                if result.success:
                    await conn.execute(QUERIES["mark_status_pushed"], report["id"], tenant_id)
    if len(new) == PUSH_BATCH or len(changed) == PUSH_BATCH:  # more are waiting
        await queue.enqueue(tenant_id, PUSH_ERRORS, "errors", {})


def salesforce_record(report: asyncpg.Record) -> dict[str, object]:
    """The ``Copernica_Sync_Error__c`` record of a report (field names: bridge.salesforce.objects)."""
    record_id = report["record_id"] or ""
    facts = [
        f"{NAMES.get(report['platform'] or '', 'The platform')} said: {report['cause']}"
        if report["cause"] else None,
        f"Error code: {report['code']}" if report["code"] else None,
        f"Attempts: {report['attempts']}",
        report["details"],
        _advice(report),
    ]
    return {
        "Category__c": report["category"],
        "Operation__c": report["operation"],
        "Direction__c": report["direction"],
        "Record_Id__c": record_id[:255] or None,
        "Contact__c": record_id if record_id.startswith("003") else None,
        "Message__c": report["message"][:255],
        "Details__c": "\n\n".join(p for p in (report["message"], *facts) if p)[:32768],
        "Occurred_At__c": report["occurred_at"].isoformat(),
        "Status__c": "resolved" if report["status"] == "resolved" else "open",
    }


def _advice(report: asyncpg.Record) -> str | None:
    advice = ADVICE.get(report["category"])
    return f"What to do: {advice}." if advice else None
