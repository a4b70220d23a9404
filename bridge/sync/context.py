"""Per-tenant working context of the workers: the tenant's settings, its platform clients and its
field mapping.

Workers of one process share one context per tenant. The tenant row is read again whenever its
``settings_version`` changed (settings change in the UI at any time, credentials too): a claim
and a stream delivery's statement tell; the clients come from the process's ``PlatformClients``
(new ones when the stored credentials change); the mapping (Copernica fields × Salesforce
describe) is rebuilt every ``mapping_ttl`` seconds, and at once when the clients, the database or
the link field change.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.errors import BridgeError, NotConfigured
from bridge.platforms import PlatformClients, UsageCounter
from bridge.salesforce.client import SalesforceClient
from bridge.sync.mapping import Mapping, build_mapping
from bridge.sync.objects import CONTACT
from bridge.tenants import Tenant
from bridge.vocabulary import LINK_FIELD_FALLBACK

MAPPING_TTL = 300.0  # seconds a mapping is used before it is built anew


@dataclass
class TenantContext:
    tenant: Tenant
    salesforce: SalesforceClient
    copernica: CopernicaClient
    _mapping: Mapping | None = None
    _mapping_at: float = 0.0
    _mapping_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Per profile id, (contact id, agreement) of an update being written to Copernica now: its
    # webhook may come before the link records the agreement, and is an echo of it as well.
    writing: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # Per contact id, the agreement of a profile being created for it now: the create's webhook
    # may come before the create call returns (the profile id is not known yet).
    creating: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def key(self) -> bytes:
        return self.tenant.fingerprint_key.encode()

    @property
    def database(self) -> str:
        if not self.tenant.copernica_database:
            raise NotConfigured(
                "no Copernica database chosen yet", "choose the database on the config page",
                platform="copernica",
            )
        return self.tenant.copernica_database

    async def mapping(self, ttl: float = MAPPING_TTL) -> Mapping:
        async with self._mapping_lock:  # workers of one tenant share it: build it once
            if self._mapping is None or time.monotonic() - self._mapping_at > ttl:
                self._mapping = await self._build_mapping()
                self._mapping_at = time.monotonic()
            return self._mapping

    def cached_mapping(self, tenant: Tenant) -> Mapping | None:
        """The mapping the workers use now, without an API call: None when there is none yet,
        it is due for a rebuild, or ``tenant`` (read since) names another database or link field."""
        if (
            self._mapping is None
            or time.monotonic() - self._mapping_at > MAPPING_TTL
            or (tenant.copernica_database, tenant.link_field)
            != (self.tenant.copernica_database, self.tenant.link_field)
        ):
            return None
        return self._mapping

    def update(self, tenant: Tenant, salesforce: SalesforceClient, copernica: CopernicaClient) -> None:
        """Take the tenant's current settings and clients; a mapping they change is rebuilt."""
        if (
            salesforce is not self.salesforce
            or copernica is not self.copernica
            or (tenant.copernica_database, tenant.link_field)
            != (self.tenant.copernica_database, self.tenant.link_field)
        ):
            self._mapping = None
        self.tenant, self.salesforce, self.copernica = tenant, salesforce, copernica

    async def _build_mapping(self) -> Mapping:
        cp_fields = [f async for f in self.copernica.fields(self.database)]
        names = {f.name.lower(): f.name for f in cp_fields}
        link_field = names.get(self.tenant.link_field.lower()) or names.get(
            LINK_FIELD_FALLBACK.lower()
        )
        if link_field is None:  # the bridge keeps the Salesforce Id in a field of its own
            await self.copernica.create_field(
                self.database, LINK_FIELD_FALLBACK, "text", length=20, index=True
            )
            link_field = LINK_FIELD_FALLBACK
        return build_mapping(
            cp_fields,
            await self.salesforce.fields(CONTACT.sobject),
            link_field=link_field,
            timezone=self.tenant.copernica_timezone,
        )


class Contexts:
    """The contexts of every tenant this process works for, on the process's platform clients
    (which own, and close, the clients)."""

    def __init__(self, platforms: PlatformClients) -> None:
        self.platforms = platforms
        self.pool = platforms.pool
        self.settings = platforms.settings
        self._contexts: dict[int, TenantContext] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def usage(self) -> UsageCounter:
        return self.platforms.usage

    def cached(self, tenant_id: int) -> TenantContext | None:
        """The tenant's context if this process's workers made one, as it is (no I/O)."""
        return self._contexts.get(tenant_id)

    async def get(self, tenant_id: int, version: int | None = None) -> TenantContext:
        """The tenant's context, up to date (``NotConfigured`` while credentials are missing).
        ``version``: the tenant's ``settings_version`` as the caller just read it; a context of
        that version, whose clients the process has not forgotten since (a save of credentials
        forgets them), is up to date without a look at the database."""
        context = self._contexts.get(tenant_id)
        if (
            context is not None and context.tenant.settings_version == version
            and self.platforms.current(tenant_id, context.salesforce, context.copernica)
        ):
            return context
        async with self._locks[tenant_id]:
            async with self.pool.acquire() as conn:  # one round trip: settings and credentials
                row = await conn.fetchrow(QUERIES["tenant_and_credentials_saved"], tenant_id)
            if row is None:
                raise BridgeError(f"no tenant with id {tenant_id}")
            tenant = Tenant.from_row(row)
            salesforce = await self.platforms.salesforce(
                tenant_id, saved_at=row["salesforce_saved_at"]
            )
            copernica = await self.platforms.copernica(tenant_id, saved_at=row["copernica_saved_at"])
            context = self._contexts.get(tenant_id)
            if context is None:
                context = self._contexts[tenant_id] = TenantContext(tenant, salesforce, copernica)
            else:
                context.update(tenant, salesforce, copernica)
            return context

    def close(self) -> None:
        self._contexts.clear()
