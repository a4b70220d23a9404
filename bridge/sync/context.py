"""Per-tenant working context: settings, platform clients and the field mapping, cached.

Workers of one process share one context per tenant. The tenant row is re-read for every batch
(settings change in the UI at any time); clients are rebuilt when the stored credentials change;
the mapping (Copernica fields × Salesforce describe) is rebuilt every ``mapping_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES, Pool
from bridge.salesforce.client import SalesforceClient
from bridge.security.vault import Vault
from bridge.sync.mapping import Mapping, build_mapping
from bridge.tenants import (
    Tenant,
    copernica_client,
    load_copernica_credentials,
    load_salesforce_credentials,
    load_tenant,
    salesforce_client,
)
from bridge.usage import ApiUsage, Platform, UsageSink

LINK_FIELD_FALLBACK = "SalesforceId"  # Copernica refuses fields named "id": see design.md §4


@dataclass
class UsageCounter:
    """API calls counted in memory per tenant and platform, flushed to ``api_usage`` now and then."""

    calls: dict[tuple[int, Platform], int] = field(default_factory=lambda: defaultdict(int))
    latest: dict[tuple[int, Platform], ApiUsage] = field(default_factory=dict)

    def sink(self, tenant_id: int) -> UsageSink:
        def record(usage: ApiUsage) -> None:
            self.calls[(tenant_id, usage.platform)] += usage.calls
            if usage.used is not None:
                self.latest[(tenant_id, usage.platform)] = usage

        return record

    async def flush(self, pool: Pool) -> None:
        calls, self.calls = self.calls, defaultdict(int)
        latest, self.latest = self.latest, {}
        async with pool.acquire() as conn:
            for (tenant_id, platform), count in calls.items():
                seen = latest.get((tenant_id, platform))
                await conn.execute(
                    QUERIES["add_usage"], tenant_id, platform, count,
                    seen.used if seen else None, seen.max if seen else None,
                )


@dataclass
class TenantContext:
    tenant: Tenant
    salesforce: SalesforceClient
    copernica: CopernicaClient
    credentials_version: datetime
    _mapping: Mapping | None = None
    _mapping_at: float = 0.0
    _mapping_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def key(self) -> bytes:
        return self.tenant.fingerprint_key.encode()

    @property
    def database(self) -> str:
        if not self.tenant.copernica_database:
            raise LookupError("no Copernica database chosen yet")
        return self.tenant.copernica_database

    async def mapping(self, ttl: float = 300.0) -> Mapping:
        async with self._mapping_lock:  # workers of one tenant share it: build it once
            if self._mapping is None or time.monotonic() - self._mapping_at > ttl:
                self._mapping = await self._build_mapping()
                self._mapping_at = time.monotonic()
            return self._mapping

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
            await self.salesforce.fields("Contact"),
            link_field=link_field,
            timezone=self.tenant.copernica_timezone,
        )

    async def close(self) -> None:
        await self.salesforce.close()
        await self.copernica.close()


class Contexts:
    """The contexts of every tenant this process works for."""

    def __init__(self, pool: Pool, vault: Vault, settings: Settings) -> None:
        self.pool = pool
        self.vault = vault
        self.settings = settings
        self.usage = UsageCounter()
        self._contexts: dict[int, TenantContext] = {}
        self._lock = asyncio.Lock()

    async def get(self, tenant_id: int) -> TenantContext:
        async with self._lock, self.pool.acquire() as conn:
            tenant = await load_tenant(conn, tenant_id)
            version = await conn.fetchval(QUERIES["credentials_version"], tenant_id)
            context = self._contexts.get(tenant_id)
            if context is not None and context.credentials_version == version:
                if context.tenant != tenant:
                    if (context.tenant.copernica_database, context.tenant.link_field) != (
                        tenant.copernica_database, tenant.link_field,
                    ):
                        context._mapping = None
                    context.tenant = tenant
                return context
            if context is not None:
                await context.close()
            sink = self.usage.sink(tenant_id)
            sf = await load_salesforce_credentials(conn, self.vault, tenant_id)
            cp = await load_copernica_credentials(conn, self.vault, tenant_id)
            context = TenantContext(
                tenant=tenant,
                salesforce=salesforce_client(sf, self.settings, sink),
                copernica=copernica_client(cp, sink),
                credentials_version=version,
            )
            self._contexts[tenant_id] = context
            return context

    async def close(self) -> None:
        for context in self._contexts.values():
            await context.close()
        self._contexts.clear()
