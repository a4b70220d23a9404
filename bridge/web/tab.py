"""The Salesforce web tab (``/sfcp``): what Salesforce shows in its "Copernica" tab.

Status bar (JSON under the tab, polled by ``static/status.js``), "Sync manually", "Terminate
session", create/delete a Copernica database, emailings (send, result, statistics of recent
sends) and the error reports with a requeue button. Database management and emailings are only
offered in the direction "Both ways", as the product manual says.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from bridge.copernica.errors import CreatedWithoutId, NotSent
from bridge.copernica.models import Product
from bridge.db import QUERIES
from bridge.errors import ApiError
from bridge.hosts import HostRefused
from bridge.security.sessions import revoke
from bridge.sync import reconcile, reports, runs
from bridge.tenants import Tenant, load_tenant
from bridge.vocabulary import ADVICE, DIRECTION_WORDS, LINK_FIELD_FALLBACK
from bridge.web import platforms
from bridge.web.guard import current, end_session, login_required, redirect, safe_next
from bridge.web.keys import POOL, QUEUE, RECORD_COUNTS
from bridge.web.render import render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

RECENT_SENDS = 5
SKIPPED_CONTACT_FIELDS = frozenset({"IsDeleted", "MasterRecordId", "SystemModstamp"})


async def _tenant(request: web.Request) -> Tenant:
    async with request.app[POOL].acquire() as conn:
        return await load_tenant(conn, current(request).tenant_id)


@routes.get("/sfcp")
@login_required
async def tab(request: web.Request) -> web.Response:
    session = current(request)
    tenant = await _tenant(request)
    async with request.app[POOL].acquire() as conn:
        status = await runs.status(conn, tenant.id)
        errors = await reports.error_reports(conn, tenant.id, 50)
        sends = await conn.fetch(QUERIES["recent_emailing_sends"], tenant.id, RECENT_SENDS)
    context: dict[str, Any] = {
        "tenant": tenant, "status": status, "errors": errors, "advice": ADVICE,
        "ways": DIRECTION_WORDS,
        "manage": tenant.direction == "both",
        "sends": [], "databases": [], "contents": [], "targets": [], "contact_fields": [],
        "problems": [],
        "send_key": secrets.token_urlsafe(18),  # one send per page view: a retry sends nothing
    }
    if context["manage"]:
        await _copernica_sections(request, tenant, sends, context)
        await _salesforce_fields(request, tenant, context)
    context["contacts"] = await platforms.contacts_named(request, tenant.id, errors)
    context["sync_cost"] = await sync_cost(request, tenant)
    context["record_name"] = reports.record_name
    context["is_admin"] = session.role == "admin"
    return render(request, "tab.html", context)


async def _copernica_sections(
    request: web.Request, tenant: Tenant, sends: list[Any], context: dict[str, Any]
) -> None:
    try:
        client = await platforms.copernica(request, tenant.id)
        databases, templates, documents = await platforms.bounded(asyncio.gather(
            platforms.collect(client.databases()),
            platforms.collect(client.templates()),
            platforms.collect(client.documents()),
        ))
        views = []
        if tenant.copernica_database:
            views = await platforms.bounded(
                platforms.collect(client.views(tenant.copernica_database))
            )
        context["sends"] = await _with_statistics(client, sends)
    except platforms.FAILURES as exc:
        context["problems"].append(f"Copernica could not be reached: {platforms.user_message(exc)}")
        context["sends"] = [{"send": s, "stats": None} for s in sends]
        return
    live = [d for d in databases if not d.archived]
    context["databases"] = live
    synced = next((d for d in databases if str(d.id) == tenant.copernica_database), None)
    context["synced_database"] = synced
    context["contents"] = [t for t in templates if not t.archived] + [
        d for d in documents if not d.archived
    ]
    if synced is not None:
        context["targets"] = [("database", synced.id, f"Database: {synced.name}")] + [
            ("view", v.id, f"Selection: {v.label}") for v in views
        ]


async def _with_statistics(client: Any, sends: list[Any]) -> list[dict[str, Any]]:
    async def one(send: Any) -> dict[str, Any]:
        if send["emailing_id"] is None:  # Copernica did not say its id, or the outcome is open
            return {"send": send, "stats": None}
        try:
            stats = await client.emailing_statistics(send["emailing_id"], send["product"])
        except ApiError:
            stats = None
        return {"send": send, "stats": stats}

    return list(await platforms.bounded(asyncio.gather(*(one(s) for s in sends))))


async def _salesforce_fields(request: web.Request, tenant: Tenant, context: dict[str, Any]) -> None:
    try:
        client = await platforms.salesforce(request, tenant.id)
        fields = await platforms.bounded(client.fields("Contact"))
    except platforms.FAILURES as exc:
        context["problems"].append(
            f"Salesforce could not be reached: {platforms.user_message(exc)}"
        )
        fields = {}
    context["contact_fields"] = sorted(
        (name for name in fields if name not in SKIPPED_CONTACT_FIELDS),
        key=lambda n: (n not in platforms.DEFAULT_DATABASE_FIELDS, n),
    )
    context["default_fields"] = platforms.DEFAULT_DATABASE_FIELDS


COUNTS_TTL = 900.0  # seconds the counts behind the estimate are shown before counting again


async def sync_cost(request: web.Request, tenant: Tenant) -> dict[str, Any]:
    """What "Sync manually" would cost, shown beside the button: ``cost`` (``runs.SyncCost``)
    with the counts it comes from and when they were counted, or ``problem`` when a side cannot
    say now. Counting costs a Salesforce COUNT and one Copernica page; a process counts a
    tenant's records again only after ``COUNTS_TTL`` or a run, however often the pages are
    shown."""
    if not tenant.copernica_database:
        return {"problem": "no Copernica database is chosen yet"}
    counts = request.app[RECORD_COUNTS]
    key = (tenant.id, tenant.copernica_database)
    known = counts.get(key)
    if known is not None:
        async with request.app[POOL].acquire() as conn:
            synced_at = await conn.fetchval(QUERIES["last_run_finished"], tenant.id)
        if time.monotonic() - known[0] > COUNTS_TTL or (synced_at and synced_at > known[1]):
            known = None  # old, or a run has changed the records since
    if known is None:
        try:
            salesforce = await platforms.salesforce(request, tenant.id)
            copernica = await platforms.copernica(request, tenant.id)
            contacts, profiles = await platforms.bounded(asyncio.gather(
                salesforce.count("SELECT COUNT() FROM Contact"),
                copernica.profile_count(tenant.copernica_database),
            ))
        except platforms.FAILURES as exc:
            return {"problem": platforms.user_message(exc)}
        known = counts[key] = (time.monotonic(), datetime.now(UTC), contacts, profiles)
    _, counted_at, contacts, profiles = known
    cost = runs.full_sync_cost(
        contacts, profiles, tenant.direction, bulk_from=reconcile.BULK_FROM
    )
    return {"cost": cost, "contacts": contacts, "profiles": profiles, "counted_at": counted_at,
            "every_minutes": round(COUNTS_TTL / 60)}


@routes.get("/sfcp/status.json")
@login_required
async def status_json(request: web.Request) -> web.Response:
    """The status bar: current run with progress, stream state, queue depth, last success."""
    async with request.app[POOL].acquire() as conn:
        status = await runs.status(conn, current(request).tenant_id)
    return web.json_response(status, headers={"Cache-Control": "no-store"})


@routes.get(r"/sfcp/runs/{run_id:\d+}.json")
@login_required
async def run_json(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        run = await runs.get_run(conn, current(request).tenant_id, int(request.match_info["run_id"]))
    if run is None:
        raise web.HTTPNotFound()
    return web.json_response(run.as_json())


@routes.post("/sfcp/sync")
@login_required
async def sync_manually(request: web.Request) -> web.StreamResponse:
    """"Sync manually", from the tab or the config page (``back``: where the button was)."""
    session = current(request)
    form = await request.post()
    back = safe_next(str(form.get("back", "")), "/sfcp#session")
    run_id = await runs.request_sync(request.app[QUEUE], session.tenant_id, "manual", session.email)
    log.info("manual sync requested: run %s", run_id)
    raise redirect(request, back,
                   f"Your request has been added to the queue (run {run_id}). "
                   "The status bar of the Copernica tab shows how it goes.")


@routes.post("/sfcp/terminate")
@login_required
async def terminate(request: web.Request) -> web.StreamResponse:
    """"Terminate session": log the Salesforce user out of the bridge."""
    async with request.app[POOL].acquire() as conn:
        await revoke(conn, current(request).id_hash)
    response = redirect(request, "/login?next=/sfcp", "Your session has been terminated.")
    end_session(request, response)
    raise response


def _require_both(tenant: Tenant, request: web.Request) -> None:
    if tenant.direction != "both":
        raise redirect(request, "/sfcp", "Databases and emailings can only be managed when the "
                       "data sync direction is Both ways.", "error")


@routes.post("/sfcp/databases")
@login_required
async def create_database(request: web.Request) -> web.StreamResponse:
    tenant = await _tenant(request)
    _require_both(tenant, request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    chosen = [str(v) for v in form.getall("fields", [])]
    if not name:
        raise redirect(request, "/sfcp#databases", "Fill in a name for the new database.", "error",
                       typed=form)
    try:
        sf = await platforms.salesforce(request, tenant.id)
        described = await platforms.bounded(sf.fields("Contact"))
        unknown = [f for f in chosen if f not in described]
        if unknown:
            raise redirect(request, "/sfcp#databases",
                           f"Salesforce contacts have no field {unknown[0]}.", "error", typed=form)
        fields = [(f, str(described[f].get("type", "string"))) for f in chosen]
        client = await platforms.copernica(request, tenant.id)
        database_id = await platforms.bounded(platforms.create_database(client, name, fields))
    except platforms.FAILURES as exc:
        raise redirect(request, "/sfcp#databases",
                       f"The database was not created: {platforms.user_message(exc)}",
                       "error", typed=form) from None
    note = ""
    if any(f.lower() == "id" for f in chosen):
        note = (f" The Salesforce Id is kept in the field {LINK_FIELD_FALLBACK}"
                " (Copernica does not allow a field named Id).")
    log.info("created Copernica database %s", database_id)
    raise redirect(request, "/sfcp#databases",
                   f"Database {name} created with {len(fields)} field"
                   f"{'s' if len(fields) != 1 else ''}.{note}")


@routes.post("/sfcp/databases/delete")
@login_required
async def delete_database(request: web.Request) -> web.StreamResponse:
    """First post: a confirmation page. Second post (``confirm=yes``): delete, or archive."""
    tenant = await _tenant(request)
    _require_both(tenant, request)
    form = await request.post()
    database_id = str(form.get("database", ""))
    if not database_id.isdigit():
        raise redirect(request, "/sfcp#databases", "Choose the database to delete.", "error")
    if database_id == tenant.copernica_database:
        raise redirect(request, "/sfcp#databases",
                       "This is the database the bridge synchronises; choose another one in the "
                       "settings before deleting it.", "error")
    try:
        client = await platforms.copernica(request, tenant.id)
        database = await platforms.bounded(client.database(int(database_id)))
        if form.get("confirm") != "yes":
            return render(request, "delete_database.html", {"database": database})
        deleted = await platforms.bounded(platforms.delete_or_archive(client, database.id))
    except platforms.FAILURES as exc:
        raise redirect(request, "/sfcp#databases",
                       f"The database was not deleted: {platforms.user_message(exc)}",
                       "error") from None
    if deleted:
        raise redirect(request, "/sfcp#databases", f"Database {database.name} deleted.")
    log.info("Copernica database %s archived (delete refused)", database.id)
    raise redirect(request, "/sfcp#databases",
                   f"Copernica does not allow deleting databases through its API, so database "
                   f"{database.name} was archived instead: it no longer shows in Copernica's "
                   "lists, and its profiles are kept.", "warning")


@routes.post("/sfcp/emailings")
@login_required
async def send_emailing(request: web.Request) -> web.StreamResponse:
    """First post: a confirmation naming the target and its number of profiles. Second post
    (``confirm=yes``, the same ``send_key``): send, once."""
    session = current(request)
    tenant = await _tenant(request)
    _require_both(tenant, request)
    form = await request.post()
    content = str(form.get("content", ""))
    target = str(form.get("target", ""))
    send_key = str(form.get("send_key", "")).strip()[:64] or secrets.token_urlsafe(18)
    chosen_product, _, content_id = content.partition(":")
    chosen_target, _, target_id = target.partition(":")
    if chosen_product not in ("ms", "publisher") or not content_id.isdigit():
        raise redirect(request, "/sfcp#emailings", "Choose a template or document.", "error", typed=form)
    if chosen_target not in ("database", "view") or not target_id.isdigit():
        raise redirect(request, "/sfcp#emailings", "Choose who receives the emailing.", "error", typed=form)
    product: Product = "ms" if chosen_product == "ms" else "publisher"
    target_type: Literal["database", "view"] = "database" if chosen_target == "database" else "view"
    if not tenant.copernica_database:
        raise redirect(request, "/sfcp#emailings", "Choose the Copernica database in the "
                       "settings first.", "error")
    try:
        client = await platforms.copernica(request, tenant.id)
        synced = await platforms.bounded(client.database(tenant.copernica_database))
        names = {"database": {synced.id: synced.name}, "view": {
            v.id: v.label for v in await platforms.bounded(
                platforms.collect(client.views(synced.id)))
        }}
        target_name = names[target_type].get(int(target_id))
        if target_name is None:  # only the synced database and its selections
            raise redirect(request, "/sfcp#emailings",
                           "Choose the synchronised database or one of its selections.", "error")
        listing = client.templates() if product == "ms" else client.documents()
        item = next((t for t in await platforms.bounded(platforms.collect(listing))
                     if t.id == int(content_id)), None)
        if item is None:
            raise redirect(request, "/sfcp#emailings",
                           "That template or document does not exist (any more).", "error")
        if form.get("confirm") != "yes":  # first say to whom it goes, and how many they are
            profiles = await platforms.bounded(
                platforms.profile_count(client, target_type, int(target_id)))
            return render(request, "confirm_send.html", {
                "item": item, "content": content, "target": target, "send_key": send_key,
                "target_kind": "database" if target_type == "database" else "selection",
                "target_name": target_name, "profiles": profiles,
            })
    except platforms.FAILURES as exc:
        raise redirect(request, "/sfcp#emailings",
                       f"The emailing was not sent: {platforms.user_message(exc)}",
                       "error") from None
    pool = request.app[POOL]
    async with pool.acquire() as conn:  # recorded before it goes out: a retry finds it here
        send_id = await conn.fetchval(
            QUERIES["claim_emailing_send"], tenant.id, product, item.id, item.name, target_type,
            int(target_id), target_name, session.email, send_key,
        )
        if send_id is None:
            earlier = await conn.fetchrow(QUERIES["emailing_send_by_key"], tenant.id, send_key)
    if send_id is None:
        raise redirect(request, "/sfcp#emailings", _already_sent(earlier), "warning")
    emailing_id: int | None
    try:
        if product == "ms":
            emailing_id = await platforms.bounded(
                client.send_emailing(item.id, int(target_id), target_type))
        else:
            emailing_id = await platforms.bounded(
                client.send_publisher_emailing(item.id, int(target_id), target_type))
    except CreatedWithoutId:
        emailing_id = None  # sent: only its id is unknown
    except platforms.FAILURES as exc:
        async with pool.acquire() as conn:
            if _not_sent(exc):
                await conn.execute(QUERIES["drop_emailing_send"], send_id, tenant.id)
                raise redirect(request, "/sfcp#emailings",
                               f"The emailing was not sent: {platforms.user_message(exc)}",
                               "error") from None
            await conn.execute(QUERIES["emailing_send_unknown"], send_id, tenant.id)
        log.warning("emailing send %s: outcome unknown (%s)", send_id, type(exc).__name__)
        raise redirect(request, "/sfcp#emailings",
                       "Copernica did not say whether the emailing went out "
                       f"({platforms.user_message(exc)}). Check Copernica's emailings before "
                       "sending it again: this form will not send it a second time.",
                       "error") from None
    async with pool.acquire() as conn:  # at once: nothing after the send may undo the record
        await conn.execute(QUERIES["emailing_sent"], send_id, tenant.id, emailing_id)
    log.info("emailing %s sent", emailing_id)
    if emailing_id is None:
        raise redirect(request, "/sfcp#emailings",
                       f"Emailing sent: {item.name} to {target_name}. Copernica's answer did not "
                       "say the emailing's id, so its statistics cannot be shown here.", "warning")
    destinations = ""
    try:
        emailing = await platforms.bounded(client.emailing(emailing_id, product))
        count = emailing.destinations
        destinations = f", {count} destination{'s' if count != 1 else ''}"
    except platforms.FAILURES as exc:  # it went out: only the details are missing
        log.info("emailing %s: details not read (%s)", emailing_id, type(exc).__name__)
    raise redirect(request, "/sfcp#emailings",
                   f"Emailing {emailing_id} sent: {item.name} to {target_name}{destinations}.")


def _not_sent(exc: BaseException) -> bool:
    """Copernica certainly did not send: it refused (4xx, its balancer's 503), or nothing
    reached it (no connection, a host outside the policy)."""
    if isinstance(exc, NotSent | HostRefused):
        return True
    return isinstance(exc, ApiError) and exc.status is not None and (
        400 <= exc.status < 500 or exc.status == 503
    )


def _already_sent(earlier: Any) -> str:
    if earlier is not None and earlier["state"] == "sent":
        which = f"emailing {earlier['emailing_id']}" if earlier["emailing_id"] else "an emailing"
        return (f"This form was sent already ({which}); it is not sent twice. Choose again to "
                "send another emailing.")
    return ("This emailing may have gone out already (Copernica did not answer); it is not "
            "sent twice. Check Copernica's emailings, then choose again to send another.")


@routes.post(r"/sfcp/errors/{report_id:\d+}/requeue")
@login_required
async def requeue(request: web.Request) -> web.StreamResponse:
    tenant_id = current(request).tenant_id
    report_id = int(request.match_info["report_id"])
    async with request.app[POOL].acquire() as conn:
        report = await conn.fetchrow(QUERIES["error_report"], report_id, tenant_id)
    if report is None:
        raise web.HTTPNotFound()
    if report["status"] == "resolved":
        raise redirect(request, "/sfcp#errors", f"Error report {report_id} is resolved: its "
                       "record went through since, so there is nothing to requeue.", "warning")
    if not await reports.requeue_report(request.app[QUEUE], tenant_id, report_id):
        raise redirect(request, "/sfcp#errors", f"Error report {report_id} has no held job to "
                       "requeue: it is queued already, or its record went through.", "warning")
    raise redirect(request, "/sfcp#errors", f"The job of error report {report_id} was requeued. "
                   "If it fails again on the same cause, this report opens again.")
