"""The config page (``/config``): Copernica access and database, Salesforce access, the sync
settings of the product manual, "test connection" for each side, and the password change.

Secrets (API token, passwords, security token, consumer secret, private key) are never put back
into the page: their fields stay empty and say "saved"; leaving one empty when saving keeps the
stored value — but only for the host it was saved for. A changed login URL or Copernica host
needs its secrets typed again, so a stored secret never travels to a host an administrator just
typed.

Where the bridge may connect is the operator's decision (``bridge.hosts``): the Salesforce login
URL must be an ``https://`` address under salesforce.com — the org's My Domain for the default
login method, OAuth client credentials — and the Copernica host one under copernica.com, unless
``ALLOWED_API_HOSTS`` allows more. Anything else is refused with a message before any request.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiMapping

from bridge import tenants
from bridge.copernica.client import DEFAULT_HOST
from bridge.db import QUERIES
from bridge.errors import ApiError, NotConfigured
from bridge.hosts import HostPolicy, address_of, copernica_hosts, salesforce_hosts
from bridge.salesforce.auth import (
    PRODUCTION_LOGIN_URL,
    SOAP_NOTICE,
    is_my_domain,
    load_private_key,
)
from bridge.sync import runs
from bridge.sync.jobs import requeue_fixed
from bridge.tenants import (
    CopernicaCredentials,
    SalesforceCredentials,
    load_copernica_credentials,
    load_salesforce_credentials,
    load_tenant,
    save_credentials,
    update_tenant,
)
from bridge.vocabulary import (
    DIRECTION_LABELS,
    DIRECTIONS,
    LOGIN_METHODS,
    WEBHOOK_TRIGGERS,
    LoginMethod,
)
from bridge.web import platforms, tab
from bridge.web.guard import admin_required, current, redirect
from bridge.web.keys import PLATFORMS, POOL, QUEUE, SETTINGS, VAULT
from bridge.web.render import render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DIRECTION_CHOICES = tuple((direction, DIRECTION_LABELS[direction]) for direction in DIRECTIONS)
SALESFORCE_METHODS: tuple[tuple[LoginMethod, str], ...] = (
    ("client_credentials", "OAuth client credentials (External Client App) – recommended"),
    ("jwt", "OAuth JWT bearer (External Client App with a certificate)"),
    ("soap", "Username, password and security token (legacy)"),
)
DEFAULT_METHOD: LoginMethod = "client_credentials"
MY_DOMAIN_NEEDED = (
    "OAuth client credentials need your org's My Domain URL, like https://acme.my.salesforce.com "
    "(a sandbox's: https://acme--uat.sandbox.my.salesforce.com); Setup → My Domain shows it."
)
SECRETS: dict[LoginMethod, tuple[str, ...]] = {  # what each method keeps secret
    "client_credentials": ("consumer_secret",),
    "jwt": ("private_key_pem",),
    "soap": ("password", "security_token"),
}


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
    sync_cost = None
    if copernica is not None and salesforce is not None:
        sync_cost = await tab.sync_cost(request, tenant)
    return render(request, "config.html", {
        "tenant": tenant,
        "sync_cost": sync_cost,
        "copernica": _public_copernica(copernica),
        "salesforce": _public_salesforce(salesforce),
        "databases": [d for d in databases if not d.archived or str(d.id) == tenant.copernica_database],
        "database_error": database_error,
        "webhooks": len([t for t in WEBHOOK_TRIGGERS if hooks.get(t)]),
        "directions": DIRECTION_CHOICES,
        "methods": SALESFORCE_METHODS,
        "default_method": DEFAULT_METHOD,
        "soap_notice": SOAP_NOTICE,
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
        "private_key_saved": bool(creds.private_key_pem),
    }


def _origin(url: str) -> str:
    where = address_of(url)
    return where.origin if where is not None else url


def _bare_address(value: str) -> bool:
    """Scheme and host (and port) only: no path, query, fragment or user name."""
    parts = urlsplit(value)
    return not parts.path.strip("/") and not parts.query and not parts.fragment and (
        "@" not in parts.netloc
    )


def copernica_host(value: str, policy: HostPolicy) -> str:
    """The Copernica API host typed on the page, as stored (``https://host``; empty: Copernica's
    default); ``ValueError`` with the message for the page."""
    value = value.strip().rstrip("/")
    if not value:
        return ""
    url = value if "://" in value else f"https://{value}"
    if not _bare_address(url) or address_of(url) is None:
        raise ValueError("Fill in the Copernica API host only, like api.copernica.com.")
    if not policy.allows(url):
        raise ValueError(policy.refusal(url))
    return _origin(url)


def salesforce_login_url(value: str, method: LoginMethod, policy: HostPolicy) -> str:
    """The Salesforce login URL typed on the page, checked for ``method``; ``ValueError`` with
    the message for the page."""
    url = value.strip().rstrip("/")
    if not url:
        if method == "client_credentials":
            raise ValueError(MY_DOMAIN_NEEDED)
        url = PRODUCTION_LOGIN_URL
    if "://" not in url:
        url = f"https://{url}"
    if not _bare_address(url) or address_of(url) is None:
        raise ValueError(
            "Fill in the Salesforce login URL only, like https://acme.my.salesforce.com."
        )
    if not policy.allows(url):
        raise ValueError(policy.refusal(url))
    if method == "client_credentials" and not (is_my_domain(url) or policy.operator_allows(url)):
        raise ValueError(MY_DOMAIN_NEEDED)
    return _origin(url)


@routes.post("/config/copernica")
@admin_required
async def save_copernica(request: web.Request) -> web.StreamResponse:
    """Test Copernica access, then save it (and a first database); register the webhook for the
    chosen database. Access Copernica refuses replaces nothing unless "save anyway" is ticked.
    Switching to another database is a planned operation of its own form, with a confirmation
    (``bridge.web.database``): it is refused here."""
    session = current(request)
    settings, vault = request.app[SETTINGS], request.app[VAULT]
    form = await request.post()
    token = str(form.get("api_token", "")).strip()
    database = str(form.get("database", "")).strip()
    try:
        hostname = copernica_host(str(form.get("hostname", "")), copernica_hosts(settings))
    except ValueError as exc:
        raise redirect(request, "/config#copernica", str(exc), "error", typed=form) from None
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        stored = await _stored(load_copernica_credentials(conn, vault, session.tenant_id))
    moved = stored is not None and _origin(stored.hostname or DEFAULT_HOST) != _origin(
        hostname or DEFAULT_HOST
    )
    if not token and (stored is None or moved):
        message = "Fill in the Copernica API token."
        if moved:
            message = ("The Copernica host changed: the saved API token is only sent to the "
                       "host it was saved for. " + message)
        raise redirect(request, "/config#copernica", message, "error", typed=form)
    creds = CopernicaCredentials(api_token=token or stored.api_token, hostname=hostname)
    try:
        identity: dict[str, Any] | None = await platforms.check_copernica(request, session.tenant_id, creds)
    except platforms.FAILURES as exc:
        if form.get("anyway") != "yes":
            raise _not_saved(request, "copernica", stored is not None,
                             f"Copernica answered: {platforms.user_message(exc)}", form) from None
        identity = None
    async with pool.acquire() as conn:
        await save_credentials(conn, vault, session.tenant_id, creds)
        tenant = await load_tenant(conn, session.tenant_id)
        hooks_before = await tenants.stored_webhooks(conn, tenant.id)
    request.app[PLATFORMS].forget(tenant.id, "copernica")  # the next call uses the new access
    log.info("Copernica access saved%s", "" if identity else " without a working test")
    if identity is None:
        raise redirect(request, "/config#copernica", "Copernica access saved as you asked, "
                       "although the test failed: nothing syncs with Copernica until it works.",
                       "warning")
    account = str(identity.get("id") or identity.get("ID") or "").strip() or None
    async with pool.acquire() as conn:  # webhooks must name this account (X-Copernica-ID)
        await conn.execute(QUERIES["set_copernica_account"], tenant.id, account)
    messages = ["Copernica access tested and saved."]
    try:
        client = await platforms.copernica(request, tenant.id)
        if database and database != tenant.copernica_database:
            if tenant.copernica_database:
                raise redirect(request, "/config#database",
                               "Copernica access saved. To switch the synced database, use "
                               "“Save database”: it says what happens and asks to confirm.",
                               "warning")
            known = await platforms.bounded(platforms.collect(client.databases()))
            if database not in {str(d.id) for d in known}:
                raise redirect(request, "/config#copernica", "Copernica access saved, but that "
                               "Copernica database does not exist (any more).", "warning")
            async with pool.acquire() as conn:
                tenant = await update_tenant(conn, tenant.id, copernica_database=database)
            messages.append("Database saved.")
        if tenant.copernica_database:
            hooks, created = await platforms.bounded(
                tenants.ensure_webhooks(client, settings, tenant, hooks_before)
            )
            async with pool.acquire() as conn:
                await tenants.save_webhooks(conn, tenant.id, hooks)
                await requeue_fixed(conn, tenant.id, "copernica")  # it works: held jobs come back
            messages.append("Copernica webhook registered." if created
                            else "Copernica webhook checked.")
        else:
            messages.append("Now choose the database to synchronise.")
    except platforms.FAILURES as exc:
        raise redirect(request, "/config#copernica",
                       f"Copernica access saved, but the webhook could not be set up: "
                       f"{platforms.user_message(exc)}. Save again to retry.", "warning") from None
    raise redirect(request, "/config#copernica", " ".join(messages))


def _not_saved(request: web.Request, section: str, had_access: bool, why: str,
               form: MultiMapping[Any]) -> web.HTTPSeeOther:
    """The answer when new access details fail their test: nothing was replaced."""
    name = section.capitalize()
    kept = (" The saved access stays in use." if had_access
            else f" Nothing was saved: the bridge has no {name} access yet.")
    return redirect(request, f"/config#{section}",
                    f"These {name} details do not work: {why}.{kept} Correct them, or tick "
                    "“Save anyway” to use them nonetheless.", "error", typed=form, anyway=True)


@routes.post("/config/salesforce")
@admin_required
async def save_salesforce(request: web.Request) -> web.StreamResponse:
    """Test how the bridge logs in to Salesforce, then save it; details Salesforce refuses
    replace nothing unless "save anyway" is ticked. Only what the chosen method uses is kept."""
    session = current(request)
    vault, settings = request.app[VAULT], request.app[SETTINGS]
    form = await request.post()
    value = {k: str(form.get(k, "")).strip() for k in (
        "method", "login_url", "username", "password", "security_token", "consumer_key",
        "consumer_secret", "private_key")}
    method: LoginMethod = next((m for m in LOGIN_METHODS if m == value["method"]), DEFAULT_METHOD)
    try:
        login_url = salesforce_login_url(value["login_url"], method, salesforce_hosts(settings))
        if value["private_key"] and method == "jwt":
            load_private_key(value["private_key"])
    except (ValueError, ApiError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        raise redirect(request, "/config#salesforce", message, "error", typed=form) from None
    async with request.app[POOL].acquire() as conn:
        stored = await _stored(load_salesforce_credentials(conn, vault, session.tenant_id))
    moved = stored is not None and _origin(stored.login_url) != login_url
    keep = stored if stored is not None and stored.method == method and not moved else None
    typed = {**value, "private_key_pem": value["private_key"]}

    def secret(name: str) -> str:
        if name not in SECRETS[method]:
            return ""  # not used by this method: not kept
        return typed[name] or (getattr(keep, name) if keep is not None else "")

    creds = SalesforceCredentials(
        method=method, login_url=login_url,
        username=value["username"] if method != "client_credentials" else "",
        password=secret("password"), security_token=secret("security_token"),
        consumer_key=value["consumer_key"] if method != "soap" else "",
        consumer_secret=secret("consumer_secret"), private_key_pem=secret("private_key_pem"),
    )
    missing = _missing(creds)
    if missing:
        message = f"Fill in {missing}."
        if moved and any(getattr(stored, name) for name in SECRETS[method]):
            message = ("The login URL changed: saved secrets are only sent to the address "
                       "they were saved for. " + message)
        raise redirect(request, "/config#salesforce", message, "error", typed=form)
    tested = True
    try:
        await platforms.check_salesforce(request, session.tenant_id, creds)
    except platforms.FAILURES as exc:
        if form.get("anyway") != "yes":
            raise _not_saved(request, "salesforce", stored is not None,
                             f"Salesforce answered: {platforms.user_message(exc)}", form) from None
        tested = False
    async with request.app[POOL].acquire() as conn:
        await save_credentials(conn, vault, session.tenant_id, creds)
        if tested:
            await requeue_fixed(conn, session.tenant_id, "salesforce")  # held for auth: try again
    request.app[PLATFORMS].forget(session.tenant_id, "salesforce")  # the next call logs in anew
    log.info("Salesforce access saved (%s)%s", method, "" if tested else " without a working test")
    if not tested:
        raise redirect(request, "/config#salesforce", "Salesforce access saved as you asked, "
                       "although the test failed: nothing syncs with Salesforce until it works.",
                       "warning")
    notice = f" {SOAP_NOTICE}" if method == "soap" else ""
    raise redirect(request, "/config#salesforce", f"Salesforce access tested and saved.{notice}",
                   "warning" if notice else "ok")


def _missing(creds: SalesforceCredentials) -> str | None:
    needed: dict[LoginMethod, tuple[tuple[str, str], ...]] = {
        "client_credentials": (("consumer_key", "the consumer key"),
                               ("consumer_secret", "the consumer secret")),
        "jwt": (("consumer_key", "the consumer key"), ("username", "the Salesforce username"),
                ("private_key_pem", "the private key")),
        "soap": (("username", "the Salesforce username"),
                 ("password", "the Salesforce password")),
    }
    return next((label for name, label in needed[creds.method] if not getattr(creds, name)), None)


@routes.post("/config/sync")
@admin_required
async def save_sync(request: web.Request) -> web.StreamResponse:
    session = current(request)
    form = await request.post()
    direction = str(form.get("direction", ""))
    if direction not in DIRECTIONS:
        raise redirect(request, "/config#sync", "Choose a data sync direction.", "error",
                       typed=form)
    auto_sync = form.get("auto_sync") == "yes"
    async with request.app[POOL].acquire() as conn, conn.transaction():
        was_on = (await load_tenant(conn, session.tenant_id)).auto_sync
        await update_tenant(
            conn, session.tenant_id, direction=direction,
            apply_deletes=form.get("apply_deletes") == "yes", auto_sync=auto_sync,
        )
        # What changed while automatic sync was off waits for a run: it starts now, not at
        # the next hourly reconcile.
        run_id = None
        if auto_sync and not was_on:
            run_id = await runs.request_catch_up(
                request.app[QUEUE], session.tenant_id, "automatic sync switched on", conn=conn
            )
    message = "Sync settings saved."
    if run_id is not None:
        message += f" Run {run_id} brings over what changed while automatic sync was off."
    raise redirect(request, "/config#sync", message)


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
            live = [d for d in databases if not d.archived]  # as many as the drop-down offers
            archived = len(databases) - len(live)
            return (f"Copernica connection works: {len(live)} database"
                    f"{'s' if len(live) != 1 else ''} found"
                    f"{f' ({archived} archived, not listed)' if archived else ''}.", True)
        salesforce = await platforms.salesforce(request, session.tenant_id)
        describe = await platforms.bounded(salesforce.describe("Contact", refresh=True))
        return (f"Salesforce connection works: {describe.get('label', 'Contact')} has "
                f"{len(describe.get('fields', []))} fields.", True)
    except NotConfigured as exc:
        return f"{exc}: save them first.", False
    except platforms.FAILURES as exc:
        name = "Copernica" if side == "copernica" else "Salesforce"
        return f"{name} connection failed: {platforms.user_message(exc)}", False
