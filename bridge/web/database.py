"""Choosing the synced Copernica database (``POST /config/database``), the database part of the
config page.

The first choice is saved at once. Switching to another database is a planned operation
(``bridge.sync.switch``): the page first says what will happen — links to the old database are
dropped, nothing in the old database is deleted or changed, a first merge with the new one runs
with progress — and asks to confirm; then the webhooks move to the new database.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bridge import tenants
from bridge.copernica.client import CopernicaClient
from bridge.sync import switch
from bridge.sync.jobs import requeue_fixed
from bridge.web import platforms
from bridge.web.guard import admin_required, current, redirect
from bridge.web.keys import POOL, QUEUE, SETTINGS
from bridge.web.render import render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post("/config/database")
@admin_required
async def choose_database(request: web.Request) -> web.StreamResponse:
    session = current(request)
    form = await request.post()
    database = str(form.get("database", "")).strip()
    confirmed = form.get("confirm") == "yes"
    pool = request.app[POOL]
    if not database:
        raise redirect(request, "/config#database", "Choose a Copernica database.", "error")
    try:
        client = await platforms.copernica(request, session.tenant_id)
        known = {
            str(d.id): d for d in await platforms.bounded(platforms.collect(client.databases()))
        }
    except platforms.FAILURES as exc:
        raise redirect(request, "/config#database",
                       f"The databases could not be fetched: {platforms.user_message(exc)}",
                       "error") from None
    if database not in known:
        raise redirect(request, "/config#database",
                       "That Copernica database does not exist (any more).", "error")
    async with pool.acquire() as conn:
        planned = await switch.plan(conn, session.tenant_id, database)
    if planned.unchanged:
        message = f"{known[database].name} is the synced database already."
        raise redirect(request, "/config#database", await _webhooks(request, client, message))
    if not planned.first_choice and not confirmed:
        old = known.get(planned.old or "")
        return render(request, "confirm_database.html", {
            "old": old, "old_id": planned.old, "new": known[database], "links": planned.links,
        })
    switched = await switch.switch_database(
        pool, request.app[QUEUE], session.tenant_id, database, f"switch by {session.email}"
    )
    log.info(
        "synced Copernica database switched from %s to %s (%d links dropped)",
        planned.old, database, switched.dropped,
    )
    async with pool.acquire() as conn:
        await requeue_fixed(conn, session.tenant_id, "copernica")  # jobs held for "no database"
    if planned.first_choice:
        message = f"Database {known[database].name} saved."
    else:
        message = (f"Switched to {known[database].name}: nothing in the old database was changed; "
                   "the first merge runs now and the status bar shows its progress.")
    raise redirect(request, "/config#database", await _webhooks(request, client, message))


async def _webhooks(request: web.Request, client: CopernicaClient, message: str) -> str:
    """Point the webhooks at the synced database (removing those of the old one)."""
    tenant_id = current(request).tenant_id
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        tenant = await tenants.load_tenant(conn, tenant_id)
        before = await tenants.stored_webhooks(conn, tenant_id)
    try:
        hooks, created = await platforms.bounded(
            tenants.ensure_webhooks(client, request.app[SETTINGS], tenant, before)
        )
    except platforms.FAILURES as exc:
        return (f"{message} The Copernica webhooks could not be set up: "
                f"{platforms.user_message(exc)} (save the Copernica settings to try again).")
    async with pool.acquire() as conn:
        await tenants.save_webhooks(conn, tenant_id, hooks)
    return f"{message} Copernica webhook {'registered' if created else 'checked'}."
