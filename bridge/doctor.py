"""``bridge doctor <tenant>``: a checklist of a tenant's set-up, one line per item, with the fix.

Every check runs on its own: one that fails does not stop the others, and one that needs an
earlier check (e.g. a Salesforce login) says so instead of running. Lines start with ``ok``,
``WARN`` (works, but will not for long: little API budget left, a clock a little off) or
``FAILED`` (with ``fix:``). The exit code is 1 when any line is ``FAILED``, else 0.

The checks only read: a CometD handshake and subscribe (then disconnect), describes, the limits,
the webhooks by id and a ``GET`` on the bridge's own webhook URL. Nothing secret is printed: the
tenant's hook token is masked in URLs, credentials never appear.

The checks use the platform clients every part of the bridge uses (``PlatformClients``), made
for this run with brief retries and timeouts, and closed at its end. Choices made:

- Clock skew comes from the ``Date`` headers of the platforms' replies to those clients (1 s
  resolution, ``bridge.clock``). Above 30 s it is a warning; above 300 s it fails, because
  OAuth JWT assertions and Copernica's tokens are only valid for minutes.
- Salesforce API headroom warns below 10 % of ``DailyApiRequests`` left and fails at 0.
  Copernica publishes no API limit, so its line reports today's count from ``consumption``.
- A direction that does not need a part (CDC for ``cp_to_sf``, webhooks for ``sf_to_cp``)
  passes that part with "not needed".
- The registered webhooks are read from ``tenants.copernica_webhooks`` (trigger -> id, as the
  config page stores them); Copernica has no "list webhooks" call, so nothing stored means
  "not registered".
- The Salesforce login method is judged before any login: SOAP ``login()`` warns (retired in
  Summer '27), a login URL under salesforce.com that is not the org's My Domain warns, and fails
  for client credentials (Salesforce refuses that flow there; no login is tried); a login URL
  outside the allowed hosts (``bridge.hosts``) fails without a request. Hosts the operator allows
  in ``ALLOWED_API_HOSTS`` (emulators, proxies) are taken as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from bridge.clock import PlatformClock
from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES, Pool
from bridge.errors import ApiError, BridgeError, NotConfigured
from bridge.hosts import HostRefused, salesforce_hosts
from bridge.platforms import PlatformClients
from bridge.retry import RetryPolicy
from bridge.salesforce.auth import SOAP_RETIREMENT, is_my_domain
from bridge.salesforce.client import SalesforceClient
from bridge.salesforce.objects import BRIDGE_OBJECTS
from bridge.salesforce.stream import SalesforceStream
from bridge.security.vault import Vault
from bridge.tenants import (
    SalesforceCredentials,
    Tenant,
    load_salesforce_credentials,
    stored_webhooks,
)
from bridge.vocabulary import CDC_CHANNEL, WEBHOOK_TRIGGERS, Category, webhook_url

Status = Literal["ok", "WARN", "FAILED"]

SKEW_WARN = 30.0  # seconds between a platform's clock and ours before a warning
SKEW_FAIL = 300.0  # ... and before tokens stop working
HEADROOM_WARN = 0.10  # share of the daily Salesforce API requests left before a warning
HTTP_TIMEOUT = 20.0  # seconds for any one call
STREAM_TIMEOUT = 10.0  # seconds for the CometD handshake + subscribe
QUICK_RETRY = RetryPolicy(max_attempts=2, base=0.2, cap=1.0)  # a checklist should not linger
PERMISSION_SET = "Copernica_Bridge_Integration"

SAVE_SALESFORCE = "save the Salesforce settings on the config page"
SAVE_COPERNICA = "save the Copernica settings on the config page"
DEPLOY_PACKAGE = (
    "deploy the package in salesforce/ (README, Production set-up) and assign permission set "
    f"{PERMISSION_SET} to the integration user"
)
GRANT = (
    f"assign permission set {PERMISSION_SET} (deployed from salesforce/) to the integration user"
)


@dataclass(frozen=True)
class Finding:
    """One line of the checklist."""

    status: Status
    item: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<7}{self.item}: {self.detail}"
        return f"{text} -- fix: {self.fix}" if self.fix and self.status != "ok" else text


def _ok(item: str, detail: str) -> Finding:
    return Finding("ok", item, detail)


def _failed(item: str, detail: str, fix: str) -> Finding:
    return Finding("FAILED", item, detail, fix)


def _not_checked(item: str, needs: str) -> Finding:
    return _failed(item, f"not checked: needs {needs}", f"first fix '{needs}' above")


async def run(pool: Pool, settings: Settings, slug: str) -> int:
    """Print the checklist of tenant ``slug``; 0 when nothing failed, else 1."""
    failed = 0
    async for finding in diagnose(pool, settings, slug):
        print(finding.line(), flush=True)
        failed += finding.status == "FAILED"
    print(f"{failed} check(s) failed" if failed else "all checks passed", flush=True)
    return 1 if failed else 0


async def diagnose(pool: Pool, settings: Settings, slug: str) -> AsyncIterator[Finding]:
    """The findings for tenant ``slug``, each as soon as its check has run."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(QUERIES["tenant_by_slug"], slug)
    if row is None:
        yield _failed(
            "Tenant", f"no tenant named {slug!r}", "see `bridge tenant list` for the names"
        )
        return
    tenant = Tenant.from_row(row)
    async with PlatformClients(
        pool, Vault(settings.secret_keys), settings, retry=QUICK_RETRY, timeout=HTTP_TIMEOUT
    ) as clients:
        method_finding, sf_finding, sf, sf_clock = await _salesforce_login(clients, tenant)
        yield method_finding
        yield sf_finding
        cp_finding, cp, cp_clock = await _copernica_login(clients, tenant)
        yield cp_finding
        yield await _guarded("Salesforce Change Data Capture", _cdc, tenant, sf)
        yield await _guarded("Salesforce custom objects", _custom_objects, sf)
        yield await _guarded("Copernica database", _copernica_database, tenant, cp)
        yield await _guarded("Copernica webhooks registered", _webhooks, tenant, pool, settings, cp)
        yield await _guarded("Webhook reachable at PUBLIC_URL", _reachable, tenant, settings)
        yield clock_finding(sf_clock, cp_clock)
        yield await _guarded("Salesforce API headroom", _salesforce_headroom, sf)
        yield await _guarded("Copernica API usage", _copernica_usage, cp)


async def _guarded(item: str, check: Callable[..., Awaitable[Finding]], *args: Any) -> Finding:
    """Run one check; whatever it raises becomes its FAILED line, never the end of the list."""
    try:
        async with asyncio.timeout(HTTP_TIMEOUT * 2):
            return await check(item, *args)
    except ApiError as error:
        return _failed(item, str(error), _fix_for(error))
    except TimeoutError:
        return _failed(item, "no answer in time", "check the network and the platform's status")
    except Exception as error:  # noqa: BLE001 - a checklist reports, it does not crash
        return _failed(item, f"{type(error).__name__}: {error}", "see the message")


FIXES: dict[Category, str] = {
    "auth": "check the credentials on the config page",
    "permission": GRANT,
    "validation": "see the message: the platform refused what the check sent",
    "duplicate": "see the message: the platform reports a duplicate",
    "not_found": DEPLOY_PACKAGE,
    "rate_limit": "the API budget is spent: wait for it to refill or raise the allocation",
    "transient": "the platform did not answer properly: check the network and its status",
    "mapping": "see the message: the field mapping does not fit",
    "not_configured": "save the credentials and choose the database on the config page",
}
"""What to do about a check that failed, by the category of the error (every category)."""


def _fix_for(error: ApiError) -> str:
    return FIXES[error.category]


# --- credentials --------------------------------------------------------------------------


SET_COPERNICA_HOST = (
    "set the Copernica host on the config page to one under copernica.com (or leave it empty), "
    "or allow the host in ALLOWED_API_HOSTS"
)
METHOD_ITEM = "Salesforce login method"
SWITCH_TO_OAUTH = (
    "create an External Client App with the client credentials flow and choose it on the config "
    "page (README, Production set-up, step 5)"
)
USE_MY_DOMAIN = "set the login URL on the config page to the org's My Domain URL (Setup → My Domain)"


def login_method_finding(creds: SalesforceCredentials, settings: Settings) -> Finding:
    """How the tenant logs in to Salesforce, judged without a request."""
    item, url = METHOD_ITEM, creds.login_url
    hosts = salesforce_hosts(settings)
    if not hosts.allows(url):
        return _failed(item, hosts.refusal(url), USE_MY_DOMAIN)
    not_my_domain = hosts.own_domain(url) and not is_my_domain(url)
    if creds.method == "soap":
        detail = (
            f"username, password and security token (SOAP login(), retired in {SOAP_RETIREMENT} "
            f"and off by default in new orgs) at {url}"
        )
        if not_my_domain:
            detail += ", not a My Domain URL"
        return Finding("WARN", item, detail, SWITCH_TO_OAUTH)
    name = "OAuth client credentials" if creds.method == "client_credentials" else "OAuth JWT bearer"
    if not_my_domain and creds.method == "client_credentials":
        return _failed(
            item, f"{name} at {url}, which is not a My Domain URL: Salesforce refuses the flow "
            "there", USE_MY_DOMAIN,
        )
    if not_my_domain:
        return Finding(
            "WARN", item, f"{name} at {url}: works, but is not the org's My Domain URL",
            USE_MY_DOMAIN,
        )
    allowed = "" if hosts.own_domain(url) else " (a host ALLOWED_API_HOSTS allows)"
    return _ok(item, f"{name} at {url}{allowed}")


async def _salesforce_login(
    clients: PlatformClients, tenant: Tenant
) -> tuple[Finding, Finding, SalesforceClient | None, PlatformClock]:
    """The login method line, the login line, the logged-in client (None: no login) and the
    clock of its replies."""
    item = "Salesforce credentials"
    try:
        async with clients.pool.acquire() as conn:  # for the line: who logs in, and how
            creds = await load_salesforce_credentials(conn, clients.vault, tenant.id)
    except NotConfigured:
        unsaved = _failed(item, "not saved yet", SAVE_SALESFORCE)
        return (
            _failed(METHOD_ITEM, "not saved yet", SAVE_SALESFORCE), unsaved, None, PlatformClock()
        )
    except BridgeError as error:  # the vault cannot open them
        unopened = _failed(
            item, str(error), f"use the keys that encrypted them, or {SAVE_SALESFORCE}"
        )
        return _not_checked(METHOD_ITEM, item), unopened, None, PlatformClock()
    method = login_method_finding(creds, clients.settings)
    if method.status == "FAILED":
        return method, _not_checked(item, METHOD_ITEM), None, PlatformClock()
    client = await clients.salesforce(tenant.id)
    try:
        session = await client.session()
    except ApiError as error:
        return method, _failed(item, str(error), _login_fix(creds, error)), None, client.clock
    except ValueError as error:  # e.g. a private key that does not parse
        return method, _failed(item, str(error), SAVE_SALESFORCE), None, client.clock
    who = creds.username or f"External Client App {creds.consumer_key[:6]}…"
    finding = _ok(item, f"{who} ({creds.method}) logged in to {session.instance_url}")
    return method, finding, client, client.clock


def _login_fix(creds: SalesforceCredentials, error: ApiError) -> str:
    if error.category == "transient":
        return f"check that {creds.login_url} is reachable from this machine"
    if creds.method == "soap":
        return (
            "check the integration user's username, password and security token, and the "
            f"login URL ({creds.login_url}); SOAP login must be allowed in the org"
        )
    return (
        "check the External Client App's consumer key and secret (or certificate), that it is "
        f"enabled for the flow with the integration user to run as, and the login URL "
        f"({creds.login_url})"
    )


async def _copernica_login(
    clients: PlatformClients, tenant: Tenant
) -> tuple[Finding, CopernicaClient | None, PlatformClock]:
    """The login line, the working client (None: none) and the clock of its replies."""
    item = "Copernica credentials"
    try:
        client = await clients.copernica(tenant.id)
    except NotConfigured:
        return _failed(item, "not saved yet", SAVE_COPERNICA), None, PlatformClock()
    except BridgeError as error:
        return _failed(
            item, str(error), f"use the keys that encrypted them, or {SAVE_COPERNICA}"
        ), None, PlatformClock()
    except ValueError as error:  # an empty token
        return _failed(item, str(error), SAVE_COPERNICA), None, PlatformClock()
    try:
        identity = await client.identity()
    except HostRefused as error:
        return _failed(item, error.message, SET_COPERNICA_HOST), None, client.clock
    except ApiError as error:
        fix = (
            "check the API token on the config page (Copernica: Configuration → API access tokens)"
            if error.category in ("auth", "permission")
            else f"check that {client.base} is reachable from this machine"
        )
        return _failed(item, str(error), fix), None, client.clock
    name = identity.get("name") or identity.get("company") or "?"
    return _ok(item, f"account {name} (id {identity.get('id', '?')})"), client, client.clock


# --- Salesforce -----------------------------------------------------------------------------


async def _cdc(item: str, tenant: Tenant, sf: SalesforceClient | None) -> Finding:
    if not tenant.sf_to_cp:
        return _ok(item, f"not needed (direction {tenant.direction})")
    if sf is None:
        return _not_checked(item, "Salesforce credentials")
    try:
        async with SalesforceStream(sf, CDC_CHANNEL, connection_timeout=STREAM_TIMEOUT):
            pass  # handshake and subscribe worked; leaving the block disconnects
    except ApiError as error:
        text = error.message
        if "does not exist" in text:
            fix = (
                "select Contact for Change Data Capture (Setup → Change Data Capture), or "
                "deploy salesforce/, which selects it"
            )
        elif "View All Data" in text or error.category == "permission":
            fix = f"the integration user needs View All Data: {GRANT}"
        elif error.category == "auth":
            fix = "the session was refused by the Streaming API: check the credentials"
        else:
            fix = "the Streaming API did not answer: check the network and Salesforce's status"
        return _failed(item, f"subscribe to {CDC_CHANNEL}: {text}", fix)
    return _ok(item, f"subscribed to {CDC_CHANNEL} and disconnected")


async def _custom_objects(item: str, sf: SalesforceClient | None) -> Finding:
    if sf is None:
        return _not_checked(item, "Salesforce credentials")
    problems = []
    for spec in BRIDGE_OBJECTS:
        try:
            described = await sf.describe(spec.name, refresh=True)
        except ApiError as error:
            if error.category != "not_found":
                raise
            problems.append(f"{spec.name} is missing")
            continue
        present = {f["name"].lower() for f in described.get("fields", [])}
        lacking = [f.name for f in spec.fields if f.custom and f.name.lower() not in present]
        if lacking:
            problems.append(f"{spec.name} lacks {', '.join(lacking)}")
    if problems:
        return _failed(item, "; ".join(problems), DEPLOY_PACKAGE)
    return _ok(item, ", ".join(spec.name for spec in BRIDGE_OBJECTS) + " with all their fields")


async def _salesforce_headroom(item: str, sf: SalesforceClient | None) -> Finding:
    if sf is None:
        return _not_checked(item, "Salesforce credentials")
    daily = (await sf.limits()).get("DailyApiRequests")
    if not isinstance(daily, dict) or not daily.get("Max"):
        return _failed(
            item, "the org reports no DailyApiRequests", f"the user needs View Setup: {GRANT}"
        )
    most, left = int(daily["Max"]), int(daily.get("Remaining", 0))
    detail = f"{left:,} of {most:,} daily API requests left"
    if left <= 0:
        return _failed(
            item, detail, "wait for the rolling 24-hour window or raise the org's API allocation"
        )
    if left < most * HEADROOM_WARN:
        return Finding(
            "WARN", item, detail, "raise the org's API allocation or lower other integrations' use"
        )
    return _ok(item, detail)


# --- Copernica --------------------------------------------------------------------------------


async def _copernica_database(item: str, tenant: Tenant, cp: CopernicaClient | None) -> Finding:
    if cp is None:
        return _not_checked(item, "Copernica credentials")
    fix = "choose the Copernica database on the config page"
    if not tenant.copernica_database:
        return _failed(item, "none chosen", fix)
    try:
        database = await cp.database(tenant.copernica_database)
    except ApiError as error:
        if error.category != "not_found":
            raise
        return _failed(item, f"database {tenant.copernica_database} does not exist", fix)
    return _ok(item, f"{database.name} (id {database.id})")


def _masked(url: str, tenant: Tenant) -> str:
    return url.replace(tenant.hook_token, "<token>") if tenant.hook_token else url


async def _webhooks(
    item: str, tenant: Tenant, pool: Pool, settings: Settings, cp: CopernicaClient | None
) -> Finding:
    if not tenant.cp_to_sf:
        return _ok(item, f"not needed (direction {tenant.direction})")
    if cp is None:
        return _not_checked(item, "Copernica credentials")
    expected = webhook_url(settings.public_url, tenant.hook_token)
    async with pool.acquire() as conn:
        stored = await stored_webhooks(conn, tenant.id)
    fix = f"{SAVE_COPERNICA}: it registers the webhooks at PUBLIC_URL ({settings.public_url})"
    if not stored:
        return _failed(item, "no webhook registered", fix)
    problems = []
    for trigger in WEBHOOK_TRIGGERS:
        hook_id = stored.get(trigger)
        if not hook_id:
            problems.append(f"no {trigger} webhook")
            continue
        try:
            hook = await cp.webhook(int(hook_id))
        except ApiError as error:
            if error.category != "not_found":
                raise
            problems.append(f"webhook {hook_id} ({trigger}) no longer exists in Copernica")
            continue
        if hook.handler != expected:
            problems.append(f"webhook {hook_id} calls {_masked(hook.handler, tenant)}")
        if hook.trigger != trigger:
            problems.append(f"webhook {hook_id} fires on {hook.trigger}, not {trigger}")
    watched = stored.get("database")
    if watched and tenant.copernica_database and str(watched) != str(tenant.copernica_database):
        problems.append(
            f"they watch database {watched}, the tenant syncs {tenant.copernica_database}"
        )
    if problems:
        return _failed(item, "; ".join(problems), fix)
    return _ok(item, f"{', '.join(WEBHOOK_TRIGGERS)} -> {_masked(expected, tenant)}")


async def _copernica_usage(item: str, cp: CopernicaClient | None) -> Finding:
    if cp is None:
        return _not_checked(item, "Copernica credentials")
    today = datetime.now(UTC).date()
    calls = (await cp.consumption(today, today)).get("apicalls", "?")
    return _ok(item, f"{calls} API calls today (Copernica publishes no fixed limit)")


# --- the bridge itself ----------------------------------------------------------------------


async def _reachable(item: str, tenant: Tenant, settings: Settings) -> Finding:
    if not tenant.cp_to_sf:
        return _ok(item, f"not needed (direction {tenant.direction})")
    url = webhook_url(settings.public_url, tenant.hook_token)
    shown = _masked(url, tenant)
    fix = (
        f"make {settings.public_url} reach this bridge (DNS, HTTPS reverse proxy, firewall) "
        "and set PUBLIC_URL to the address Copernica must call"
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT / 2)) as http,
            http.get(url, allow_redirects=False) as response,
        ):
            status = response.status
            body = await response.json(content_type=None) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        detail = _masked(f"GET {url}: {type(error).__name__} {error}".strip(), tenant)
        return _failed(item, detail, fix)
    if status == 404:
        return _failed(
            item,
            f"GET {shown} answers 404",
            f"{fix}; a 404 means another server (or another bridge database) answers there",
        )
    if status != 200 or not isinstance(body, dict) or body.get("status") != "ready":
        return _failed(item, f"GET {shown} answers HTTP {status}, not ready", fix)
    if not url.startswith("https://") and not _local(settings.public_url):
        return Finding(
            "WARN",
            item,
            f"{shown} answers, but over plain HTTP",
            "serve PUBLIC_URL over HTTPS: the Salesforce tab and Copernica need it",
        )
    return _ok(item, f"{shown} answers ready")


def _local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


# --- clocks ---------------------------------------------------------------------------------


def clock_finding(sf: PlatformClock, cp: PlatformClock) -> Finding:
    item = "Clock"
    offsets = {"Salesforce": sf.offset, "Copernica": cp.offset}
    seen = {name: off for name, off in offsets.items() if off is not None}
    if not seen:
        return _not_checked(item, "a reply from Salesforce or Copernica")
    parts = [f"{name} {round(off):+d} s" for name, off in seen.items()]
    parts += [f"{name} not checked (no reply)" for name, off in offsets.items() if off is None]
    detail = "offset from this machine: " + ", ".join(parts)
    worst = max(abs(off) for off in seen.values())
    fix = "synchronise this machine's clock (NTP, e.g. `timedatectl set-ntp true`)"
    if worst > SKEW_FAIL:
        return _failed(item, detail, fix)
    if worst > SKEW_WARN:
        return Finding("WARN", item, detail, fix)
    return _ok(item, detail)
