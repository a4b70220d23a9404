"""A tenant: its settings (table ``tenants``), its credentials (vault) and its platform clients.

The one place that turns stored credentials into a ``SalesforceClient`` or ``CopernicaClient``,
used alike by the sync engine, the config UI and ``bridge doctor``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.errors import BridgeError
from bridge.salesforce.auth import (
    PRODUCTION_LOGIN_URL,
    Authenticator,
    ClientCredentialsLogin,
    JwtBearerLogin,
    SoapLogin,
)
from bridge.salesforce.client import SalesforceClient
from bridge.security.vault import Vault
from bridge.usage import UsageSink, ignore_usage

Direction = Literal["both", "sf_to_cp", "cp_to_sf"]
ConflictRule = Literal["newest", "salesforce_wins", "copernica_wins"]
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
    link_field: str = "Id"
    copernica_timezone: str = "Europe/Amsterdam"
    fingerprint_key: str = field(default="", repr=False)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Tenant:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(row).items() if k in names})

    @property
    def sf_to_cp(self) -> bool:
        return self.direction in ("both", "sf_to_cp")

    @property
    def cp_to_sf(self) -> bool:
        return self.direction in ("both", "cp_to_sf")


@dataclass(frozen=True)
class SalesforceCredentials:
    """How the bridge logs in to the tenant's org: ``soap`` (username, password + security
    token), ``client_credentials`` (Connected App) or ``jwt`` (Connected App + certificate)."""

    method: Literal["soap", "client_credentials", "jwt"] = "soap"
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
    """An API token; ``hostname`` is the optional custom API host of the product manual."""

    api_token: str
    hostname: str = ""  # empty: api.copernica.com
    auth_url: str = ""  # empty: Copernica's own authentication service


class NotConfigured(BridgeError):
    """A tenant's credentials for a platform have not been saved yet."""


async def load_tenant(conn: asyncpg.Connection, tenant_id: int) -> Tenant:
    row = await conn.fetchrow(QUERIES["tenant_by_id"], tenant_id)
    if row is None:
        raise BridgeError(f"no tenant with id {tenant_id}")
    return Tenant.from_row(row)


async def update_tenant(conn: asyncpg.Connection, tenant_id: int, **changes: Any) -> Tenant:
    """Change settings columns of a tenant; unknown names are a programming error."""
    unknown = set(changes) - set(SETTING_COLUMNS)
    if unknown:
        raise ValueError(f"not tenant settings: {sorted(unknown)}")
    current = await load_tenant(conn, tenant_id)
    merged = {name: changes.get(name, getattr(current, name)) for name in SETTING_COLUMNS}
    row = await conn.fetchrow(
        QUERIES["update_tenant_settings"], tenant_id, *(merged[name] for name in SETTING_COLUMNS)
    )
    return Tenant.from_row(row)


async def load_salesforce_credentials(
    conn: asyncpg.Connection, vault: Vault, tenant_id: int
) -> SalesforceCredentials:
    stored = await vault.load(conn, tenant_id, "salesforce")
    if stored is None:
        raise NotConfigured("Salesforce credentials have not been saved yet")
    return SalesforceCredentials(**stored)


async def load_copernica_credentials(
    conn: asyncpg.Connection, vault: Vault, tenant_id: int
) -> CopernicaCredentials:
    stored = await vault.load(conn, tenant_id, "copernica")
    if stored is None:
        raise NotConfigured("Copernica credentials have not been saved yet")
    return CopernicaCredentials(**stored)


async def save_credentials(
    conn: asyncpg.Connection,
    vault: Vault,
    tenant_id: int,
    credentials: SalesforceCredentials | CopernicaCredentials,
) -> None:
    platform = "salesforce" if isinstance(credentials, SalesforceCredentials) else "copernica"
    await vault.store(conn, tenant_id, platform, dataclasses.asdict(credentials))


def salesforce_client(
    credentials: SalesforceCredentials, settings: Settings, usage: UsageSink = ignore_usage
) -> SalesforceClient:
    return SalesforceClient(credentials.authenticator(), client_id=settings.client_id, usage=usage)


def copernica_client(
    credentials: CopernicaCredentials, usage: UsageSink = ignore_usage
) -> CopernicaClient:
    options: dict[str, Any] = {"usage": usage}
    if credentials.hostname:
        options["host"] = credentials.hostname
    if credentials.auth_url:
        options["auth_url"] = credentials.auth_url
    return CopernicaClient(credentials.api_token, **options)
