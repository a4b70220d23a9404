"""Setting up access on the config page: a new tenant with OAuth client credentials works end to
end against the sandboxes; the legacy SOAP choice shows its retirement; and no URL a tenant
administrator types makes the bridge call a host outside the allowed ones — nor sends a stored
secret to a host it was not saved for."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer
from markupsafe import escape

from bridge.app import create_app
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.salesforce.auth import SOAP_NOTICE
from bridge.security.vault import Vault
from bridge.tenants import (
    create_tenant,
    create_user,
    load_copernica_credentials,
    load_salesforce_credentials,
    save_credentials,
    update_tenant,
)
from tests.e2e.sync_helpers import contacts, create_contact, eventually
from tests.fixtures.bridge import PASSWORD, RunningBridge
from tests.fixtures.browser import WebUser
from tests.fixtures.listener import Listener, recording_listener


async def streaming_clients(bridge: RunningBridge) -> set[str]:
    """The CometD clients subscribed to Contact changes."""
    clients = (await bridge.salesforce.admin("GET", "/streaming"))["clients"]
    return {c["client_id"] for c in clients if "/data/ContactChangeEvent" in c["subscriptions"]}


async def test_a_new_tenant_set_up_with_client_credentials_syncs_both_ways(
    bridge: RunningBridge,
) -> None:
    async with bridge.pool.acquire() as conn:  # the fixture's tenant stops: one org, one syncer
        await update_tenant(conn, bridge.tenant.id, auto_sync=False)
    before = await streaming_clients(bridge)
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        database = await client.create_database("Fresh")
        for name, kind in (("FirstName", "text"), ("LastName", "text"), ("Email", "email")):
            await client.create_field(database, name, kind)
    record = await create_tenant(bridge.pool, f"new-{secrets.token_hex(4)}", "Newcomer")
    email = f"admin@{record.slug}.example"
    await create_user(bridge.pool, record.slug, email, PASSWORD)
    user = WebUser(bridge.url)
    try:
        await user.login(email)
        _, page = await user.get("/config")
        assert 'value="client_credentials" checked' in page
        assert str(escape(SOAP_NOTICE)) in page and "Summer &#39;27" in page
        sandbox = bridge.copernica
        _, page = await user.post("/config/copernica", {
            "api_token": sandbox.state.settings.api_token, "hostname": sandbox.url,
        })
        assert "Copernica access tested and saved. Now choose the database" in page
        _, page = await user.post("/config/copernica", {"hostname": sandbox.url,
                                                        "database": str(database)})
        assert "Copernica webhook registered" in page
        sf = bridge.salesforce.settings
        _, page = await user.post("/config/salesforce", {
            "method": "client_credentials", "login_url": bridge.salesforce.url,
            "consumer_key": sf.client_id, "consumer_secret": sf.client_secret,
        })
        assert "Salesforce access tested and saved." in page
        _, page = await user.post("/config/test/salesforce")
        assert "Salesforce connection works" in page
        _, page = await user.post("/config/test/copernica")
        assert "Copernica connection works" in page
    finally:
        await user.close()
    async with bridge.pool.acquire() as conn:
        account = await conn.fetchval("SELECT copernica_account FROM tenants WHERE id = $1",
                                      record.id)
    assert account == str(sandbox.state.settings.account_id)  # learned from identity

    async def new_stream() -> bool:
        return bool(await streaming_clients(bridge) - before)

    await eventually(new_stream, within=15)
    sf_id = await create_contact(bridge, FirstName="New", LastName="Comer", Email="new@comer.example")

    async def profile() -> dict | None:
        found = await sandbox.admin("GET", f"databases/{database}/profiles")
        return next((p for p in found["data"] if p["fields"].get("Email") == "new@comer.example"),
                    None)

    made = await eventually(profile, within=15)
    await sandbox.admin("PUT", f"profiles/{made['ID']}", {"fields": {"FirstName": "Renamed"}})

    async def renamed() -> bool:
        return any(c["Id"] == sf_id and c["FirstName"] == "Renamed" for c in await contacts(bridge))

    assert await eventually(renamed, within=15)  # the webhook, signed as documented, synced


async def test_the_legacy_soap_login_saves_with_its_retirement_notice(
    bridge: RunningBridge, admin: WebUser
) -> None:
    sf = bridge.salesforce.settings
    await bridge.salesforce.admin("POST", "/variants", {"soap_login": True})
    _, page = await admin.post("/config/salesforce", {
        "method": "soap", "login_url": bridge.salesforce.url, "username": sf.username,
        "password": sf.password, "security_token": sf.security_token,
    })
    assert "Salesforce access tested and saved." in page and "retires it for every API version" in page
    _, page = await admin.get("/config")
    assert 'id="soap-warning"' in page
    _, page = await admin.post("/config/test/salesforce")
    assert "Salesforce connection works" in page
    vault = Vault(bridge.settings.secret_keys)
    async with bridge.pool.acquire() as conn:
        stored = await load_salesforce_credentials(conn, vault, bridge.tenant.id)
    assert stored.method == "soap" and not stored.consumer_secret  # only what SOAP uses is kept


async def test_client_credentials_need_a_my_domain_url(admin: WebUser) -> None:
    form = {"method": "client_credentials", "consumer_key": "k", "consumer_secret": "s"}
    for url in ("https://login.salesforce.com", "https://test.salesforce.com", ""):
        _, page = await admin.post("/config/salesforce", {**form, "login_url": url})
        assert "need your org&#39;s My Domain URL" in page, url


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with recording_listener() as listening:
        yield listening


async def test_urls_outside_the_allowed_hosts_are_refused_before_any_request(
    bridge: RunningBridge, admin: WebUser, listener: Listener
) -> None:
    vault = Vault(bridge.settings.secret_keys)
    async with bridge.pool.acquire() as conn:
        sf_before = await load_salesforce_credentials(conn, vault, bridge.tenant.id)
        cp_before = await load_copernica_credentials(conn, vault, bridge.tenant.id)
    probes = (listener.url, "http://127.0.0.1:1", "https://10.255.255.1", "http://169.254.169.254",
              "http://[::1]:22", f"{listener.url}/services", "https://salesforce.com.evil.example")
    messages = set()
    for url in probes:
        for method in ("client_credentials", "jwt", "soap"):
            _, page = await admin.post("/config/salesforce", {
                "method": method, "login_url": url, "username": "u", "password": "p",
                "consumer_key": "k", "consumer_secret": "s",
            })
            assert "Salesforce access saved" not in page, (url, method)
            messages.add(page.split('class="flash error"')[1].split("</p>")[0]
                         .replace(url.split("/")[2], "HOST"))
        _, page = await admin.post("/config/copernica", {"api_token": "t", "hostname": url})
        assert "Copernica access saved" not in page, url
        assert "is not a Copernica address" in page or "host only" in page, url
        _, page = await admin.post("/config/test/salesforce")
        assert "Salesforce connection works" in page  # the stored access is untouched
    assert listener.connections == 0
    async with bridge.pool.acquire() as conn:
        assert await load_salesforce_credentials(conn, vault, bridge.tenant.id) == sf_before
        assert await load_copernica_credentials(conn, vault, bridge.tenant.id) == cp_before
    assert not any("Errno" in m or "refused" in m.lower() or "timeout" in m.lower()
                   for m in messages)

    # stored credentials that point elsewhere (saved before this policy): the Test buttons and
    # the workers refuse them without a request
    async with bridge.pool.acquire() as conn:
        await save_credentials(conn, vault, bridge.tenant.id,
                               dataclasses.replace(sf_before, login_url=listener.url))
        await save_credentials(conn, vault, bridge.tenant.id,
                               dataclasses.replace(cp_before, hostname=listener.url))
    _, page = await admin.post("/config/test/salesforce")
    assert f"{listener.url} is not a Salesforce address" in page
    _, page = await admin.post("/config/test/copernica")
    assert f"{listener.url} is not a Copernica address" in page
    assert listener.connections == 0


@pytest.fixture
async def also_allowing_listener(
    bridge_setup: RunningBridge, listener: Listener
) -> AsyncIterator[RunningBridge]:
    """The bridge (pages only) with one more allowed host: the listener, a proxy, say."""
    settings = dataclasses.replace(
        bridge_setup.settings,
        allowed_api_hosts=(*bridge_setup.settings.allowed_api_hosts, listener.netloc),
    )
    server = TestServer(create_app(settings, role="web"), host="127.0.0.1", port=settings.port)
    await server.start_server()
    try:
        yield dataclasses.replace(bridge_setup, settings=settings)
    finally:
        await server.close()


async def test_a_changed_host_never_receives_a_stored_secret(
    also_allowing_listener: RunningBridge, listener: Listener
) -> None:
    """A tenant admin points the login URL and the Copernica host at another allowed host,
    leaving the secret fields empty: the form wants the secrets again."""
    bridge = also_allowing_listener
    admin = WebUser(bridge.url)
    await admin.login(bridge.email)
    sf = bridge.salesforce.settings
    _, page = await admin.post("/config/salesforce", {
        "method": "client_credentials", "login_url": listener.url, "consumer_key": sf.client_id,
    })
    assert "The login URL changed" in page and "Fill in the consumer secret" in page
    _, page = await admin.post("/config/copernica", {"hostname": listener.url})
    assert "The Copernica host changed" in page and "Fill in the Copernica API token" in page
    for side in ("salesforce", "copernica"):
        _, page = await admin.post(f"/config/test/{side}")
        assert "connection works" in page  # still the saved hosts
    await admin.close()
    assert listener.connections == 0
    secrets_ = (sf.client_secret, bridge.copernica.state.settings.api_token)
    assert not any(s.encode() in listener.received for s in secrets_)


async def test_the_jwt_bearer_flow_from_the_page(bridge: RunningBridge, admin: WebUser) -> None:
    from tests.integration.test_salesforce_client import key_and_certificate

    key_pem, certificate = key_and_certificate()
    await bridge.salesforce.admin("POST", "/variants", {"jwt_certificate_pem": certificate})
    sf = bridge.salesforce.settings
    form = {"method": "jwt", "login_url": bridge.salesforce.url, "consumer_key": sf.client_id,
            "username": sf.username}
    _, page = await admin.post("/config/salesforce", {**form, "private_key": "not a key"})
    assert "not an unencrypted PEM private key" in page
    _, page = await admin.post("/config/salesforce", form)
    assert "Fill in the private key" in page
    _, page = await admin.post("/config/salesforce", {**form, "private_key": key_pem})
    assert "Salesforce access tested and saved." in page
    _, page = await admin.post("/config/test/salesforce")
    assert "Salesforce connection works" in page
    _, page = await admin.get("/config")
    assert 'value="jwt" checked' in page and "BEGIN PRIVATE KEY-----\n" not in page
    assert key_pem.splitlines()[1] not in page
    _, page = await admin.post("/config/salesforce", form)  # the saved key is kept
    assert "Salesforce access tested and saved." in page
    async with bridge.pool.acquire() as conn:
        raw = await conn.fetchval(
            "SELECT encode(ciphertext, 'escape') FROM credentials"
            " WHERE tenant_id = $1 AND platform = 'salesforce'",
            bridge.tenant.id,
        )
    assert raw and key_pem.splitlines()[1] not in raw  # stored encrypted


async def _version(bridge: RunningBridge, tenant_id: int, platform: str) -> object:
    async with bridge.pool.acquire() as conn:
        return await conn.fetchval(QUERIES["credentials_version"], tenant_id, platform)


async def test_wrong_credentials_replace_working_ones_only_when_saved_anyway(
    bridge: RunningBridge, admin: WebUser
) -> None:
    sf = bridge.salesforce.settings
    tenant = bridge.tenant.id
    before = {p: await _version(bridge, tenant, p) for p in ("copernica", "salesforce")}
    _, page = await admin.post("/config/copernica", {"api_token": "not-the-token",
                                                     "hostname": bridge.copernica.url})
    assert "These Copernica details do not work" in page and "stays in use" in page
    assert 'class="flash ok"' not in page and 'name="anyway"' in page
    form = {"method": "client_credentials", "login_url": bridge.salesforce.url,
            "consumer_key": sf.client_id, "consumer_secret": "not-the-secret"}
    _, page = await admin.post("/config/salesforce", form)
    assert "These Salesforce details do not work" in page and "stays in use" in page
    assert f'value="{sf.client_id}"' in page and "not-the-secret" not in page  # typed, no secret
    assert {p: await _version(bridge, tenant, p) for p in before} == before
    for side in ("copernica", "salesforce"):  # the working access still works
        _, page = await admin.post(f"/config/test/{side}")
        assert "connection works" in page, side

    _, page = await admin.post("/config/salesforce", {**form, "anyway": "yes"})
    assert "saved as you asked, although the test failed" in page
    assert await _version(bridge, tenant, "salesforce") != before["salesforce"]
    _, page = await admin.post("/config/test/salesforce")
    assert "Salesforce connection failed" in page


async def test_a_fresh_tenant_never_sees_saved_beside_an_error(bridge: RunningBridge) -> None:
    record = await create_tenant(bridge.pool, f"fresh-{secrets.token_hex(4)}", "Fresh")
    email = f"admin@{record.slug}.example"
    await create_user(bridge.pool, record.slug, email, PASSWORD)
    user = WebUser(bridge.url)
    try:
        await user.login(email)
        await user.get("/config")
        _, page = await user.post("/config/copernica", {"api_token": "wrong",
                                                        "hostname": bridge.copernica.url})
        assert "Nothing was saved: the bridge has no Copernica access yet" in page
        assert 'class="flash ok"' not in page and 'class="saved"' not in page
        assert await _version(bridge, record.id, "copernica") is None
    finally:
        await user.close()
