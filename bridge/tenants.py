"""A tenant: its settings (table ``tenants``), its credentials (vault) and its webhooks.

``salesforce_client`` and ``copernica_client`` turn stored credentials into clients; nothing
else builds them for a tenant. ``bridge.platforms.PlatformClients`` keeps one of each per tenant
for the sync engine, the pages and ``bridge doctor``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES, Conn, Pool
from bridge.errors import ApiError, BridgeError, NotConfigured
from bridge.hosts import copernica_hosts, salesforce_hosts
from bridge.retry import RetryPolicy
from bridge.salesforce.auth import (
    PRODUCTION_LOGIN_URL,
    Authenticator,
    ClientCredentialsLogin,
    JwtBearerLogin,
    SoapLogin,
)
from bridge.salesforce.client import SalesforceClient
from bridge.security.passwords import hash_password
from bridge.security.vault import Vault
from bridge.usage import UsageSink, ignore_usage
from bridge.vocabulary import (
    COPERNICA_TIMEZONE,
    LINK_FIELD,
    WEBHOOK_TRIGGERS,
    ConflictRule,
    Direction,
    LoginMethod,
    webhook_url,
)

SETTING_COLUMNS = (
    "name", "direction", "apply_deletes", "auto_sync", "conflict_rule",
    "copernica_database", "link_field", "copernica_timezone",
)


@dataclass(frozen=True)
class Tenant:
    id: int
    slug: str
    name: str
    hook_token: str = field(repr=False)
    direction: Direction = "both"
    apply_deletes: bool = False
    auto_sync: bool = True
    conflict_rule: ConflictRule = "newest"
    copernica_database: str | None = None
    link_field: str = LINK_FIELD
    copernica_timezone: str = COPERNICA_TIMEZONE
    fingerprint_key: str = field(default="", repr=False)
    copernica_account: str | None = None  # from ``identity`` when access was saved
    settings_version: int = 0  # bumped by every change of the row (migration 0015)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Tenant:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(row).items() if k in names})

    @property
    def sf_to_cp(self) -> bool:
        return self.direction != "cp_to_sf"

    @property
    def cp_to_sf(self) -> bool:
        return self.direction != "sf_to_cp"


@dataclass(frozen=True)
class SalesforceCredentials:
    """How the bridge logs in to the tenant's org: ``client_credentials`` (External Client App,
    at the org's My Domain URL; the default), ``jwt`` (External Client App + certificate, the
    private key kept here) or ``soap`` (username, password + security token; legacy)."""

    method: LoginMethod = "client_credentials"
    login_url: str = PRODUCTION_LOGIN_URL
    username: str = ""
    password: str = ""
    security_token: str = ""
    consumer_key: str = ""
    consumer_secret: str = ""
    private_key_pem: str = ""

    def authenticator(self) -> Authenticator:
        if self.method == "client_credentials":
            return ClientCredentialsLogin(self.consumer_key, self.consumer_secret, self.login_url)
        if self.method == "jwt":
            return JwtBearerLogin(
                self.consumer_key, self.username, self.private_key_pem, self.login_url
            )
        return SoapLogin(self.username, self.password, self.security_token, self.login_url)


@dataclass(frozen=True)
class CopernicaCredentials:
    """An API token; ``hostname`` is the optional custom API host of the product manual. It is
    the API host only: the token is exchanged for a JWT at Copernica's authentication service (or
    where the operator's ``COPERNICA_AUTH_URL`` says), never at a host typed on the page."""

    api_token: str
    hostname: str = ""  # empty: api.copernica.com


async def create_tenant(pool: Pool, slug: str, name: str | None = None) -> Tenant:
    try:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                QUERIES["create_tenant"], slug, name or slug, secrets.token_urlsafe(24)
            )
            assert row is not None  # INSERT … RETURNING
    except asyncpg.UniqueViolationError:
        raise BridgeError(f"a tenant named {slug!r} exists already") from None
    except asyncpg.CheckViolationError:
        raise BridgeError(
            f"tenant name {slug!r}: use lower-case letters, digits and dashes"
        ) from None
    return Tenant.from_row(row)


async def create_user(
    pool: Pool, tenant_slug: str, email: str, password: str, role: str = "admin"
) -> int:
    if "@" not in email:
        raise BridgeError(f"{email!r} is not an e-mail address")
    if len(password) < 10:
        raise BridgeError("the password must be at least 10 characters long")
    async with pool.acquire() as conn:
        tenant = await conn.fetchrow(QUERIES["tenant_by_slug"], tenant_slug)
        if tenant is None:
            raise BridgeError(f"no tenant named {tenant_slug!r} (see `bridge tenant list`)")
        try:
            return int(
                await conn.fetchval(
                    QUERIES["create_user"], tenant["id"], email, hash_password(password), role
                )
            )
        except asyncpg.UniqueViolationError:
            raise BridgeError(f"a user with address {email} exists already") from None


async def load_tenant(conn: Conn, tenant_id: int) -> Tenant:
    row = await conn.fetchrow(QUERIES["tenant_by_id"], tenant_id)
    if row is None:
        raise BridgeError(f"no tenant with id {tenant_id}")
    return Tenant.from_row(row)


async def update_tenant(conn: Conn, tenant_id: int, **changes: Any) -> Tenant:
    """Change settings columns of a tenant; unknown names are a programming error."""
    unknown = set(changes) - set(SETTING_COLUMNS)
    if unknown:
        raise ValueError(f"not tenant settings: {sorted(unknown)}")
    current = await load_tenant(conn, tenant_id)
    merged = {name: changes.get(name, getattr(current, name)) for name in SETTING_COLUMNS}
    row = await conn.fetchrow(
        QUERIES["update_tenant_settings"], tenant_id, *(merged[name] for name in SETTING_COLUMNS)
    )
    if row is None:
        raise BridgeError(f"no tenant with id {tenant_id}")
    return Tenant.from_row(row)


async def load_salesforce_credentials(
    conn: Conn, vault: Vault, tenant_id: int
) -> SalesforceCredentials:
    stored = await vault.load(conn, tenant_id, "salesforce")
    if stored is None:
        raise NotConfigured(
            "Salesforce credentials have not been saved yet", platform="salesforce"
        )
    return SalesforceCredentials(**stored)


async def load_copernica_credentials(
    conn: Conn, vault: Vault, tenant_id: int
) -> CopernicaCredentials:
    stored = await vault.load(conn, tenant_id, "copernica")
    if stored is None:
        raise NotConfigured(
            "Copernica credentials have not been saved yet", platform="copernica"
        )
    known = {f.name for f in dataclasses.fields(CopernicaCredentials)}  # older ones had auth_url
    return CopernicaCredentials(**{k: v for k, v in stored.items() if k in known})


async def save_credentials(
    conn: Conn,
    vault: Vault,
    tenant_id: int,
    credentials: SalesforceCredentials | CopernicaCredentials,
) -> None:
    platform = "salesforce" if isinstance(credentials, SalesforceCredentials) else "copernica"
    await vault.store(conn, tenant_id, platform, dataclasses.asdict(credentials))
    if isinstance(credentials, SalesforceCredentials):  # the org whose pages may frame the tab
        await conn.execute(
            QUERIES["set_salesforce_domain"], tenant_id, my_domain(credentials.login_url)
        )


def my_domain(url: str) -> str | None:
    """The My Domain name in a Salesforce URL: ``acme`` of ``https://acme.my.salesforce.com``,
    ``acme--uat.sandbox`` of a sandbox's; None for any other host."""
    host = (urlsplit(url).hostname or "").lower()
    suffix = ".my.salesforce.com"
    name = host.removesuffix(suffix)
    return name if name != host and re.fullmatch(r"[a-z0-9-]+(\.[a-z]+)?", name) else None


def salesforce_client(
    credentials: SalesforceCredentials,
    settings: Settings,
    usage: UsageSink = ignore_usage,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> SalesforceClient:
    options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    return SalesforceClient(
        credentials.authenticator(), client_id=settings.client_id, usage=usage, retry=retry,
        hosts=salesforce_hosts(settings), **options,
    )


def copernica_client(
    credentials: CopernicaCredentials,
    settings: Settings,
    usage: UsageSink = ignore_usage,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> CopernicaClient:
    """Raises ``ValueError`` for an empty API token."""
    options: dict[str, Any] = {"usage": usage, "retry": retry, "hosts": copernica_hosts(settings)}
    if credentials.hostname:
        options["host"] = credentials.hostname
    if settings.copernica_auth_url:
        options["auth_url"] = settings.copernica_auth_url
    if timeout is not None:
        options["timeout"] = timeout
    return CopernicaClient(credentials.api_token, **options)


async def ensure_webhooks(
    client: CopernicaClient, settings: Settings, tenant: Tenant, stored: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """Make sure one webhook per trigger points at the tenant's hook URL for its database.

    Webhooks already registered (ids kept on the tenant) are checked and kept; ones that are gone,
    point elsewhere or watch another database are replaced. Returns the new ids and how many were
    created, so saving twice registers nothing twice.
    """
    handler = webhook_url(settings.public_url, tenant.hook_token)
    database = tenant.copernica_database
    kept: dict[str, Any] = {"database": database, "handler": handler}
    created = 0
    same_target = stored.get("database") == database and stored.get("handler") == handler
    for trigger in WEBHOOK_TRIGGERS:
        webhook_id = stored.get(trigger)
        if webhook_id is not None and same_target:
            try:
                existing = await client.webhook(int(webhook_id))
            except ApiError as exc:
                if exc.category != "not_found":
                    raise
            else:
                if existing.handler == handler and existing.trigger == trigger:
                    kept[trigger] = existing.id
                    continue
        if webhook_id is not None:
            with contextlib.suppress(ApiError):
                await client.delete_webhook(int(webhook_id))
        kept[trigger] = await client.create_webhook(
            handler, trigger, database=int(database) if database and database.isdigit() else database
        )
        created += 1
    return kept, created


async def stored_webhooks(conn: Conn, tenant_id: int) -> dict[str, Any]:
    return dict(await conn.fetchval(QUERIES["tenant_webhooks"], tenant_id) or {})


async def save_webhooks(conn: Conn, tenant_id: int, hooks: dict[str, Any]) -> None:
    await conn.execute(QUERIES["set_tenant_webhooks"], tenant_id, hooks)
