"""Editing an existing Copernica database from the tab, as the product manual offers it in the
direction "Both ways": rename it, add Salesforce contact fields to it, remove fields.

Removing a field deletes its values from every profile, so it asks to confirm first. The field
in which the synced database keeps the Salesforce Id cannot be removed: without it the sync
could not find a profile's contact again. A name Copernica refuses because another database —
an archived one too — has it is explained (``NameTaken`` from the client).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bridge.copernica.client import CopernicaClient
from bridge.copernica.models import Database, Field
from bridge.tenants import Tenant, load_tenant
from bridge.vocabulary import LINK_FIELD_FALLBACK
from bridge.web import platforms
from bridge.web.guard import current, login_required, redirect
from bridge.web.keys import POOL
from bridge.web.render import render
from bridge.web.tab import SKIPPED_CONTACT_FIELDS

routes = web.RouteTableDef()

EDIT_PATH = "/sfcp/databases/edit"


def _page(database_id: int | str, section: str = "") -> str:
    return f"{EDIT_PATH}?database={database_id}" + (f"#{section}" if section else "")


async def _tenant(request: web.Request) -> Tenant:
    """The session's tenant, when its direction lets the tab manage databases."""
    async with request.app[POOL].acquire() as conn:
        tenant = await load_tenant(conn, current(request).tenant_id)
    if tenant.direction != "both":
        raise redirect(request, "/sfcp", "Databases and emailings can only be managed when the "
                       "data sync direction is Both ways.", "error")
    return tenant


def link_fields(tenant: Tenant, database: Database) -> frozenset[str]:
    """Names (lower case) of the fields that keep the Salesforce Id in the synced database."""
    if str(database.id) != tenant.copernica_database:
        return frozenset()
    return frozenset({tenant.link_field.lower(), LINK_FIELD_FALLBACK.lower()})


async def _database(
    request: web.Request, database_id: str
) -> tuple[CopernicaClient, Database, list[Field]]:
    """The tenant's Copernica client, a live database of its account and its fields."""
    if not database_id.isdigit():
        raise redirect(request, EDIT_PATH, "Choose the database to edit.", "error")
    try:
        client = await platforms.copernica(request, current(request).tenant_id)
        database, fields = await platforms.bounded(asyncio.gather(
            client.database(int(database_id)),
            platforms.collect(client.fields(int(database_id))),
        ))
    except platforms.FAILURES as exc:
        raise redirect(request, "/sfcp#databases",
                       f"The database could not be read: {platforms.user_message(exc)}",
                       "error") from None
    if database.archived:
        raise redirect(request, "/sfcp#databases",
                       f"Database {database.name} is archived: it can no longer be edited.",
                       "error")
    return client, database, fields


@routes.get(EDIT_PATH)
@login_required
async def edit_page(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    chosen = request.query.get("database", "")
    context: dict[str, Any] = {"tenant": tenant, "database": None, "databases": [],
                               "confirm_field": None}
    if not chosen:
        try:
            client = await platforms.copernica(request, tenant.id)
            databases = await platforms.bounded(platforms.collect(client.databases()))
        except platforms.FAILURES as exc:
            raise redirect(request, "/sfcp#databases",
                           f"The databases could not be read: {platforms.user_message(exc)}",
                           "error") from None
        context["databases"] = [d for d in databases if not d.archived]
        return render(request, "edit_database.html", context)
    _, database, fields = await _database(request, chosen)
    context.update(await _editor(request, tenant, database, fields))
    return render(request, "edit_database.html", context)


async def _editor(
    request: web.Request, tenant: Tenant, database: Database, fields: list[Field]
) -> dict[str, Any]:
    """What the editor of one database shows: its fields and the contact fields to add."""
    problems = []
    try:
        salesforce = await platforms.salesforce(request, tenant.id)
        described = await platforms.bounded(salesforce.fields("Contact"))
    except platforms.FAILURES as exc:
        problems.append(f"Salesforce could not be reached: {platforms.user_message(exc)}")
        described = {}
    have = {f.name.lower() for f in fields}
    protected = link_fields(tenant, database)
    return {
        "database": database,
        "fields": [{"field": f, "mapped": f.name.lower() in {n.lower() for n in described},
                    "protected": f.name.lower() in protected} for f in fields],
        "addable": sorted(
            n for n in described
            if n not in SKIPPED_CONTACT_FIELDS
            and platforms.copernica_field_name(n).lower() not in have
        ),
        "synced": str(database.id) == tenant.copernica_database,
        "problems": problems,
    }


@routes.post(r"/sfcp/databases/{database_id:\d+}/rename")
@login_required
async def rename(request: web.Request) -> web.StreamResponse:
    await _tenant(request)
    form = await request.post()
    client, database, _ = await _database(request, request.match_info["database_id"])
    name = str(form.get("name", "")).strip()
    if not name:
        raise redirect(request, _page(database.id, "rename"), "Fill in the new name.", "error")
    if name == database.name:
        raise redirect(request, _page(database.id, "rename"),
                       f"The database is called {name} already.")
    try:
        await platforms.bounded(client.edit_database(database.id, name=name))
    except platforms.FAILURES as exc:
        raise redirect(request, _page(database.id, "rename"),
                       f"The database was not renamed: {platforms.user_message(exc)}", "error",
                       typed=form) from None
    raise redirect(request, _page(database.id, "rename"),
                   f"Database {database.name} renamed to {name}.")


@routes.post(r"/sfcp/databases/{database_id:\d+}/fields")
@login_required
async def add_fields(request: web.Request) -> web.StreamResponse:
    tenant = await _tenant(request)
    form = await request.post()
    client, database, fields = await _database(request, request.match_info["database_id"])
    chosen = [str(v) for v in form.getall("fields", [])]
    if not chosen:
        raise redirect(request, _page(database.id, "add-fields"),
                       "Choose the Salesforce contact fields to add.", "error")
    try:
        salesforce = await platforms.salesforce(request, tenant.id)
        described = await platforms.bounded(salesforce.fields("Contact"))
        unknown = [f for f in chosen if f not in described]
        if unknown:
            raise redirect(request, _page(database.id, "add-fields"),
                           f"Salesforce contacts have no field {unknown[0]}.", "error")
        pairs = [(name, str(described[name].get("type", "string"))) for name in chosen]
        added = await platforms.bounded(platforms.add_fields(client, database.id, pairs, fields))
    except platforms.FAILURES as exc:
        raise redirect(request, _page(database.id, "add-fields"),
                       f"Not every field was added: {platforms.user_message(exc)}", "error",
                       typed=form) from None
    if not added:
        raise redirect(request, _page(database.id, "add-fields"),
                       "The database has these fields already.")
    # Workers refresh their field mapping every few minutes (bridge.sync.context).
    note = (" The sync takes them up within 5 minutes; “Sync manually” after that fills them for "
            "every contact." if str(database.id) == tenant.copernica_database else "")
    raise redirect(request, _page(database.id, "add-fields"),
                   f"Added to {database.name}: {', '.join(added)}.{note}")


@routes.post(r"/sfcp/databases/{database_id:\d+}/fields/{field_id:\d+}/delete")
@login_required
async def remove_field(request: web.Request) -> web.StreamResponse:
    """First post: a confirmation. Second post (``confirm=yes``): remove the field."""
    tenant = await _tenant(request)
    form = await request.post()
    client, database, fields = await _database(request, request.match_info["database_id"])
    field = next((f for f in fields if f.id == int(request.match_info["field_id"])), None)
    if field is None:
        raise redirect(request, _page(database.id, "fields"),
                       "That field does not exist (any more).", "error")
    if field.name.lower() in link_fields(tenant, database):
        raise redirect(request, _page(database.id, "fields"),
                       f"{field.name} keeps the Salesforce Id of each profile: the sync needs it, "
                       "so it cannot be removed.", "error")
    if form.get("confirm") != "yes":
        context = await _editor(request, tenant, database, fields)
        return render(request, "edit_database.html", {
            **context, "tenant": tenant, "databases": [], "confirm_field": field,
        })
    try:
        await platforms.bounded(client.delete_field(database.id, field.id))
    except platforms.FAILURES as exc:
        raise redirect(request, _page(database.id, "fields"),
                       f"The field was not removed: {platforms.user_message(exc)}",
                       "error") from None
    raise redirect(request, _page(database.id, "fields"),
                   f"Field {field.name} removed from {database.name}, with its values.")
