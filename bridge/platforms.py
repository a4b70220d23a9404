"""The platform clients of every tenant, kept for the whole process: the one way to a tenant's
``SalesforceClient`` or ``CopernicaClient``.

Pages, workers and ``bridge doctor`` all ask ``PlatformClients``. A tenant's client is built once
from its stored credentials (``bridge.tenants``) and kept, so its Salesforce session and its
Copernica JWT serve every later request: a page view costs no login. One lock per tenant makes
concurrent first requests share one client, and so one login.

New credentials take effect at the next call: the config page of this process says so
(``forget``), and every call compares the stored credentials' version with the one its client was
built from, which covers a save in another bridge process. A replaced client is closed after
``grace`` seconds, so calls still running on it can finish; ``close`` closes every client.

API calls of all clients are counted per tenant and platform in ``usage`` (flushed to the
``api_usage`` table by the sync runtime).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from types import EllipsisType
from typing import Generic, TypeVar

from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES, Pool
from bridge.retry import RetryPolicy
from bridge.salesforce.client import SalesforceClient
from bridge.security.vault import Vault
from bridge.tenants import (
    copernica_client,
    load_copernica_credentials,
    load_salesforce_credentials,
    salesforce_client,
)
from bridge.usage import ApiUsage, UsageSink
from bridge.vocabulary import PLATFORMS, Platform

Client = TypeVar("Client", SalesforceClient, CopernicaClient)


@dataclass
class UsageCounter:
    """API calls counted in memory per tenant and platform, flushed to ``api_usage`` now and then."""

    calls: dict[tuple[int, Platform], int] = field(default_factory=lambda: defaultdict(int))
    latest: dict[tuple[int, Platform], ApiUsage] = field(default_factory=dict)
    listeners: list[UsageSink] = field(default_factory=list)  # e.g. the app's metrics

    def sink(self, tenant_id: int) -> UsageSink:
        def record(usage: ApiUsage) -> None:
            self.calls[(tenant_id, usage.platform)] += usage.calls
            for listener in self.listeners:
                listener(usage)
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
class _Kept(Generic[Client]):
    client: Client
    version: datetime | None  # ``credentials.updated_at`` of those it was built from


class PlatformClients:
    """One ``SalesforceClient`` and one ``CopernicaClient`` per tenant, built on first use.

    ``retry`` and ``timeout`` apply to every client built (``bridge doctor`` wants quick
    answers); ``None`` keeps the clients' own defaults. Use ``async with`` or call ``close``.
    """

    def __init__(
        self,
        pool: Pool,
        vault: Vault,
        settings: Settings,
        *,
        usage: UsageCounter | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        grace: float = 300.0,
    ) -> None:
        self.pool = pool
        self.vault = vault
        self.settings = settings
        self.usage = usage or UsageCounter()
        self.retry = retry
        self.timeout = timeout
        self.grace = grace
        self._salesforce: dict[int, _Kept[SalesforceClient]] = {}
        self._copernica: dict[int, _Kept[CopernicaClient]] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._closing: dict[asyncio.Task[None], SalesforceClient | CopernicaClient] = {}

    async def __aenter__(self) -> PlatformClients:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def salesforce(
        self, tenant_id: int, *, saved_at: datetime | None | EllipsisType = ...
    ) -> SalesforceClient:
        """The tenant's Salesforce client (``NotConfigured``: no credentials saved yet).
        ``saved_at``: when its credentials were saved, if the caller has just read it."""
        async with self._locks[tenant_id]:
            version = await self._version(tenant_id, "salesforce", saved_at)
            kept = self._salesforce.get(tenant_id)
            if kept is not None and kept.version == version:
                return kept.client
            async with self.pool.acquire() as conn:
                credentials = await load_salesforce_credentials(conn, self.vault, tenant_id)
            client = salesforce_client(
                credentials, self.settings, self.usage.sink(tenant_id),
                retry=self.retry, timeout=self.timeout,
            )
            self._keep(self._salesforce, tenant_id, _Kept(client, version))
            return client

    async def copernica(
        self, tenant_id: int, *, saved_at: datetime | None | EllipsisType = ...
    ) -> CopernicaClient:
        """The tenant's Copernica client (``NotConfigured``: no credentials saved yet;
        ``ValueError``: the saved API token is empty). ``saved_at`` as for ``salesforce``."""
        async with self._locks[tenant_id]:
            version = await self._version(tenant_id, "copernica", saved_at)
            kept = self._copernica.get(tenant_id)
            if kept is not None and kept.version == version:
                return kept.client
            async with self.pool.acquire() as conn:
                credentials = await load_copernica_credentials(conn, self.vault, tenant_id)
            client = copernica_client(
                credentials, self.settings, self.usage.sink(tenant_id),
                retry=self.retry, timeout=self.timeout,
            )
            self._keep(self._copernica, tenant_id, _Kept(client, version))
            return client

    def current(self, tenant_id: int, *clients: SalesforceClient | CopernicaClient) -> bool:
        """Whether ``clients`` are still the tenant's (none was forgotten or replaced since)."""
        kept = (self._salesforce.get(tenant_id), self._copernica.get(tenant_id))
        return all(any(k is not None and k.client is client for k in kept) for client in clients)

    def forget(self, tenant_id: int, *platforms: Platform) -> None:
        """The tenant's credentials changed (all platforms when none is named): the next call
        builds a new client."""
        for platform in platforms or PLATFORMS:
            kept: _Kept[SalesforceClient] | _Kept[CopernicaClient] | None = (
                self._salesforce.pop(tenant_id, None)
                if platform == "salesforce"
                else self._copernica.pop(tenant_id, None)
            )
            if kept is not None:
                self._retire(kept.client)

    async def close(self) -> None:
        """Close every client, the replaced ones still in their grace period included."""
        retired = dict(self._closing)
        for task in retired:
            task.cancel()
        await asyncio.gather(*retired, return_exceptions=True)
        clients: list[SalesforceClient | CopernicaClient] = [
            *retired.values(),
            *(kept.client for kept in self._salesforce.values()),
            *(kept.client for kept in self._copernica.values()),
        ]
        self._salesforce.clear()
        self._copernica.clear()
        for client in clients:
            await client.close()

    async def _version(
        self, tenant_id: int, platform: Platform, known: datetime | None | EllipsisType
    ) -> datetime | None:
        if not isinstance(known, EllipsisType):
            return known
        async with self.pool.acquire() as conn:
            version: datetime | None = await conn.fetchval(
                QUERIES["credentials_version"], tenant_id, platform
            )
        return version

    def _keep(self, clients: dict[int, _Kept[Client]], tenant_id: int, kept: _Kept[Client]) -> None:
        replaced = clients.get(tenant_id)
        clients[tenant_id] = kept
        if replaced is not None:
            self._retire(replaced.client)

    def _retire(self, client: SalesforceClient | CopernicaClient) -> None:
        task = asyncio.get_running_loop().create_task(self._close_later(client))
        self._closing[task] = client
        task.add_done_callback(lambda done: self._closing.pop(done, None))

    async def _close_later(self, client: SalesforceClient | CopernicaClient) -> None:
        await asyncio.sleep(self.grace)
        await client.close()
