"""The tenants' platform clients (``bridge.platforms``) against both sandboxes: built once per
tenant and reused with their Salesforce session and Copernica JWT, rebuilt when credentials are
saved, closed at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bridge.config import Settings
from bridge.db import Pool
from bridge.errors import NotConfigured
from bridge.platforms import PlatformClients
from bridge.salesforce.errors import SalesforceError
from bridge.security.vault import Vault
from bridge.sync.context import Contexts
from bridge.sync.jobs import JobQueue
from bridge.tenants import (
    CopernicaCredentials,
    SalesforceCredentials,
    Tenant,
    load_salesforce_credentials,
    save_credentials,
)
from tests.fixtures.bridge import for_sandboxes
from tests.fixtures.copernica import RunningSandbox as CopernicaSandbox
from tests.fixtures.salesforce import RunningSandbox as SalesforceSandbox

VAULT = Vault((Fernet.generate_key().decode(),))


def counted(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[None]:
    """Count the calls of ``target.name`` from now on."""
    calls: list[None] = []
    original = getattr(target, name)

    def count(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, count)
    return calls


@pytest.fixture
async def configured(
    pool: Pool, tenant: Tenant, sf_sandbox: SalesforceSandbox, copernica_sandbox: CopernicaSandbox
) -> Tenant:
    async with pool.acquire() as conn:
        await save_credentials(conn, VAULT, tenant.id, SalesforceCredentials(
            login_url=sf_sandbox.url, consumer_key=sf_sandbox.settings.client_id,
            consumer_secret=sf_sandbox.settings.client_secret,
        ))
        await save_credentials(conn, VAULT, tenant.id, CopernicaCredentials(
            api_token=copernica_sandbox.state.settings.api_token, hostname=copernica_sandbox.url,
        ))
    return tenant


@pytest.fixture
def settings(sf_sandbox: SalesforceSandbox, copernica_sandbox: CopernicaSandbox) -> Settings:
    return for_sandboxes(Settings(), sf_sandbox, copernica_sandbox)


@pytest.fixture
async def clients(pool: Pool, settings: Settings) -> AsyncIterator[PlatformClients]:
    async with PlatformClients(pool, VAULT, settings, grace=0.05) as clients:
        yield clients


async def test_one_client_and_one_login_per_tenant(
    clients: PlatformClients,
    configured: Tenant,
    sf_sandbox: SalesforceSandbox,
    copernica_sandbox: CopernicaSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logins = counted(monkeypatch, sf_sandbox.state.sessions, "issue")
    jwts = counted(monkeypatch, copernica_sandbox.state.issuer, "issue")
    first, second = await asyncio.gather(
        clients.salesforce(configured.id), clients.salesforce(configured.id)
    )
    assert first is second
    await asyncio.gather(first.limits(), second.describe("Contact"))
    assert (await (await clients.salesforce(configured.id)).limits())["DailyApiRequests"]
    assert len(logins) == 1
    copernica = await clients.copernica(configured.id)
    assert copernica is await clients.copernica(configured.id)
    await asyncio.gather(copernica.identity(), copernica.identity())
    await (await clients.copernica(configured.id)).identity()
    assert len(jwts) == 1
    calls = clients.usage.calls
    assert calls[(configured.id, "salesforce")] >= 3 and calls[(configured.id, "copernica")] == 3


async def test_saved_credentials_take_effect_at_the_next_call(
    clients: PlatformClients,
    configured: Tenant,
    pool: Pool,
    sf_sandbox: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logins = counted(monkeypatch, sf_sandbox.state.sessions, "issue")
    before = await clients.salesforce(configured.id)
    await before.limits()
    before_http = before.http
    async with pool.acquire() as conn:  # saved elsewhere (another bridge process): no forget()
        good = await load_salesforce_credentials(conn, VAULT, configured.id)
        await save_credentials(
            conn, VAULT, configured.id, dataclasses.replace(good, consumer_secret="x")
        )
    wrong = await clients.salesforce(configured.id)
    assert wrong is not before
    with pytest.raises(SalesforceError) as refused:
        await wrong.limits()
    assert refused.value.category == "auth"
    async with pool.acquire() as conn:
        await save_credentials(conn, VAULT, configured.id, good)
    clients.forget(configured.id, "salesforce")  # what the config page does after saving
    again = await clients.salesforce(configured.id)
    assert again is not wrong
    await again.limits()
    assert len(logins) == 2  # the first client's, then the repaired one's
    await asyncio.sleep(0.2)  # past the grace period: the replaced clients are closed
    assert before_http.closed
    assert not clients._closing


async def test_a_tenant_without_credentials_is_not_configured(
    clients: PlatformClients, tenant: Tenant
) -> None:
    with pytest.raises(NotConfigured, match="Salesforce credentials have not been saved yet"):
        await clients.salesforce(tenant.id)
    with pytest.raises(NotConfigured, match="Copernica credentials have not been saved yet"):
        await clients.copernica(tenant.id)


async def test_close_closes_every_client(
    pool: Pool, configured: Tenant, settings: Settings
) -> None:
    clients = PlatformClients(pool, VAULT, settings, grace=60)
    salesforce = await clients.salesforce(configured.id)
    copernica = await clients.copernica(configured.id)
    await salesforce.limits()
    await copernica.identity()
    sf_http, cp_http = salesforce.http, copernica.session
    clients.forget(configured.id)  # retired, waiting out their grace period
    await clients.close()
    assert sf_http.closed and cp_http.closed
    assert not clients._closing


async def test_a_claim_tells_the_workers_whether_their_tenant_changed(
    pool: Pool, clients: PlatformClients, configured: Tenant, copernica_sandbox: CopernicaSandbox
) -> None:
    """A batch's claim carries the version of its tenant's settings: the workers' context is
    kept while it stays, and read anew once a setting or a credential was saved."""
    contexts, queue = Contexts(clients), JobQueue(pool)
    kind = f"test-{secrets.token_hex(4)}"

    async def claimed() -> int:
        await queue.enqueue(configured.id, kind, "record", {})
        [job] = await queue.claim(kind, tenant_id=configured.id)
        await queue.complete([job])
        return job.settings_version

    first = await claimed()
    context = await contexts.get(configured.id, first)
    tenant, copernica = context.tenant, context.copernica
    assert await claimed() == first
    await contexts.get(configured.id, first)
    assert context.tenant is tenant  # nothing changed: nothing read again

    async with pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET direction = 'sf_to_cp' WHERE id = $1", configured.id)
    changed = await claimed()
    assert changed != first
    assert (await contexts.get(configured.id, changed)).tenant.direction == "sf_to_cp"

    async with pool.acquire() as conn:  # the same token saved again, as the config page does
        await save_credentials(conn, VAULT, configured.id, CopernicaCredentials(
            api_token=copernica_sandbox.state.settings.api_token, hostname=copernica_sandbox.url,
        ))
    saved = await claimed()
    assert saved != changed
    renewed = (await contexts.get(configured.id, saved)).copernica
    assert renewed is not copernica

    # The config page forgets the clients after the save, maybe after a worker read the new
    # version: the next batch gets new clients all the same, not the retired ones.
    clients.forget(configured.id, "copernica")
    assert (await contexts.get(configured.id, await claimed())).copernica is not renewed
