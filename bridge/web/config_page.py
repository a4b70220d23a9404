"""The config page (``/config``): Copernica access and database, Salesforce access, the sync
settings of the product manual, "test connection" for each side, and the password change.

Secrets (API token, passwords, security token, consumer secret) are never put back into the page:
their fields stay empty and say "saved"; leaving one empty when saving keeps the stored value.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bridge import tenants
from bridge.errors import NotConfigured
from bridge.salesforce.auth import PRODUCTION_LOGIN_URL
from bridge.tenants import (
    CopernicaCredentials,
    SalesforceCredentials,
    load_copernica_credentials,
    load_salesforce_credentials,
    load_tenant,
    save_credentials,
    update_tenant,
)
from bridge.vocabulary import DIRECTION_LABELS, DIRECTIONS, WEBHOOK_TRIGGERS, LoginMethod
from bridge.web import platforms
from bridge.web.guard import admin_required, current, redirect
from bridge.web.keys import PLATFORMS, POOL, SETTINGS, VAULT
from bridge.web.render import render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DIRECTION_CHOICES = tuple((direction, DIRECTION_LABELS[direction]) for direction in DIRECTIONS)
SALESFORCE_METHODS: tuple[tuple[LoginMethod, str], ...] = (
    ("soap", "Username, password and security token"),
    ("client_credentials", "OAuth client (Connected App)"),
)


@routes.get("/config")
@admin_required
async def config_page(request: web.Request) -> web.Response:
    session = current(request)
    vault = request.app[VAULT]
    async with request.app[POOL].acquire() as conn:
        tenant = await load_tenant(conn, session.tenant_id)
        copernica = await _stored(load_copernica_credentials(conn, vault, tenant.id))
        salesforce = await _stored(load_salesforce_credentials(conn, vault, tenant.id))
        hooks = await tenants.stored_webhooks(conn, tenant.id)
    databases: list[Any] = []
    database_error = None
    if copernica is not None:
        try:
            client = await platforms.copernica(request, tenant.id)
            databases = await platforms.bounded(platforms.collect(client.databases()))
        except platforms.FAILURES as exc:
            database_error = platforms.user_message(exc)
    return render(request, "config.html", {
        "tenant": tenant,
        "copernica": _public_copernica(copernica),
        "salesforce": _public_salesforce(salesforce),
        "databases": [d for d in databases if not d.archived or str(d.id) == tenant.copernica_database],
        "database_error": database_error,
        "webhooks": len([t for t in WEBHOOK_TRIGGERS if hooks.get(t)]),
        "directions": DIRECTION_CHOICES,
        "methods": SALESFORCE_METHODS,
        "production_login_url": PRODUCTION_LOGIN_URL,
    })


async def _stored(load: Any) -> Any:
    try:
        return await load
    except NotConfigured:
        return None


def _public_copernica(creds: CopernicaCredentials | None) -> dict[str, Any] | None:
    """What the page may show: never the token itself."""
    if creds is None:
        return None
    return {"hostname": creds.hostname, "api_token_saved": bool(creds.api_token)}


def _public_salesforce(creds: SalesforceCredentials | None) -> dict[str, Any] | None:
    if creds is None:
        return None
    return {
        "method": creds.method, "login_url": creds.login_url, "username": creds.username,
        "consumer_key": creds.consumer_key, "password_saved": bool(creds.password),
        "security_token_saved": bool(creds.security_token),
        "consumer_secret_saved": bool(creds.consumer_secret),
    }


@routes.post("/config/copernica")
@admin_required
async def save_copernica(request: web.Request) -> web.StreamResponse:
    """Save Copernica access (and the database once the list can be fetched); register the
    webhook for the chosen database."""
    session = current(request)
    settings, vault = request.app[SETTINGS], request.app[VAULT]
    form = await request.post()
    token = str(form.get("api_token", "")).strip()
    hostname = str(form.get("hostname", "")).strip().rstrip("/")
    database = str(form.get("database", "")).strip()
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        stored = await _stored(load_copernica_credentials(conn, vault, session.tenant_id))
        if not token and stored is None:
            raise redirect(request, "/config#copernica", "Fill in the Copernica API token.", "error")
        creds = CopernicaCredentials(
            api_token=token or stored.api_token,
            hostname=hostname,
            auth_url=_auth_url(stored, hostname),
        )
        await save_credentials(conn, vault, session.tenant_id, creds)
        tenant = await load_tenant(conn, session.tenant_id)
        hooks_before = await tenants.stored_webhooks(conn, tenant.id)
    request.app[PLATFORMS].forget(tenant.id, "copernica")  # the next call uses the new access
    log.info("Copernica access saved")
    messages = ["Copernica access saved."]
    try:
        client = await platforms.copernica(request, tenant.id)
        if database:
            known = await platforms.bounded(platforms.collect(client.databases()))
            if database not in {str(d.id) for d in known}:
                raise redirect(request, "/config#copernica",
                               "That Copernica database does not exist (any more).", "error")
            async with pool.acquire() as conn:
                tenant = await update_tenant(conn, tenant.id, copernica_database=database)
            messages.append("Database saved.")
        if tenant.copernica_database:
            hooks, created = await platforms.bounded(
                tenants.ensure_webhooks(client, settings, tenant, hooks_before)
            )
            async with pool.acquire() as conn:
                await tenants.save_webhooks(conn, tenant.id, hooks)
            messages.append("Copernica webhook registered." if created
                            else "Copernica webhook checked.")
        else:
            messages.append("Now choose the database to synchronise.")
    except platforms.FAILURES as exc:
        raise redirect(request, "/config#copernica",
                       f"Copernica access saved, but Copernica answered: "
                       f"{platforms.user_message(exc)}", "error") from None
    raise redirect(request, "/config#copernica", " ".join(messages))


def _auth_url(stored: CopernicaCredentials | None, hostname: str) -> str:
    """Keep the stored authentication URL; when it was derived from the old hostname (a
    self-hosted or sandbox API serving its own ``/authenticate``), derive it from the new one."""
    if stored is None or not stored.auth_url:
        return ""
    if stored.hostname and stored.auth_url == f"{stored.hostname}/authenticate" and hostname:
        return f"{hostname}/authenticate"
    return stored.auth_url


@routes.post("/config/salesforce")
@admin_required
async def save_salesforce(request: web.Request) -> web.StreamResponse:
    session = current(request)
    vault = request.app[VAULT]
    form = await request.post()
    value = {k: str(form.get(k, "")).strip() for k in (
        "method", "login_url", "username", "password", "security_token", "consumer_key",
        "consumer_secret")}
    method: LoginMethod = next(
        (m for m, _ in SALESFORCE_METHODS if m == value["method"]), "soap"
    )
    login_url = value["login_url"].rstrip("/") or PRODUCTION_LOGIN_URL
    if not login_url.startswith(("https://", "http://")):
        raise redirect(request, "/config#salesforce",
                       "The Salesforce login URL must start with https://.", "error")
    async with request.app[POOL].acquire() as conn:
        stored = await _stored(load_salesforce_credentials(conn, vault, session.tenant_id))
        keep = stored if stored is not None and stored.method == method else None

        def secret(name: str) -> str:
            return value[name] or (getattr(keep, name) if keep is not None else "")

        creds = SalesforceCredentials(
            method=method, login_url=login_url, username=value["username"],
            password=secret("password"), security_token=secret("security_token"),
            consumer_key=value["consumer_key"], consumer_secret=secret("consumer_secret"),
        )
        missing = _missing(creds)
        if missing:
            raise redirect(request, "/config#salesforce", f"Fill in {missing}.", "error")
        await save_credentials(conn, vault, session.tenant_id, creds)
    request.app[PLATFORMS].forget(session.tenant_id, "salesforce")  # the next call logs in anew
    log.info("Salesforce access saved")
    raise redirect(request, "/config#salesforce", "Salesforce access saved.")


def _missing(creds: SalesforceCredentials) -> str | None:
    if creds.method == "client_credentials":
        if not creds.consumer_key:
            return "the consumer key"
        return None if creds.consumer_secret else "the consumer secret"
    if not creds.username:
        return "the Salesforce username"
    return None if creds.password else "the Salesforce password"


@routes.post("/config/sync")
@admin_required
async def save_sync(request: web.Request) -> web.StreamResponse:
    session = current(request)
    form = await request.post()
    direction = str(form.get("direction", ""))
    if direction not in DIRECTIONS:
        raise redirect(request, "/config#sync", "Choose a data sync direction.", "error")
    async with request.app[POOL].acquire() as conn:
        await update_tenant(
            conn, session.tenant_id, direction=direction,
            apply_deletes=form.get("apply_deletes") == "yes",
            auto_sync=form.get("auto_sync") == "yes",
        )
    raise redirect(request, "/config#sync", "Sync settings saved.")


@routes.post("/config/test/{side:copernica|salesforce}")
@admin_required
async def test_connection(request: web.Request) -> web.StreamResponse:
    side = request.match_info["side"]
    message, ok = await check_connection(request, side)
    raise redirect(request, f"/config#{side}", message, "ok" if ok else "error")


async def check_connection(request: web.Request, side: str) -> tuple[str, bool]:
    """Make one harmless call with the saved credentials (the tenant's client logs in first
    unless it is logged in already)."""
    session = current(request)
    try:
        if side == "copernica":
            copernica = await platforms.copernica(request, session.tenant_id)
            databases = await platforms.bounded(platforms.collect(copernica.databases()))
            return (f"Copernica connection works: {len(databases)} database"
                    f"{'s' if len(databases) != 1 else ''} found.", True)
        salesforce = await platforms.salesforce(request, session.tenant_id)
        describe = await platforms.bounded(salesforce.describe("Contact", refresh=True))
        return (f"Salesforce connection works: {describe.get('label', 'Contact')} has "
                f"{len(describe.get('fields', []))} fields.", True)
    except NotConfigured as exc:
        return f"{exc}: save them first.", False
    except platforms.FAILURES as exc:
        name = "Copernica" if side == "copernica" else "Salesforce"
        return f"{name} connection failed: {platforms.user_message(exc)}", False
