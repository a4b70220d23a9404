"""Both sandboxes host many tenants: orgs made by ``POST /_sandbox/orgs`` and accounts made by
``POST /_sandbox/accounts`` are as separate from each other and from the default one as two
real orgs or accounts are — records, queries, Collections, change streams, webhooks, counters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiosfstream_ng.auth
import pytest
from aiosfstream_ng import Client, PasswordAuthenticator

from bridge.copernica.client import CopernicaClient
from bridge.copernica.errors import CopernicaError
from bridge.retry import RetryPolicy
from bridge.salesforce import (
    JwtBearerLogin,
    PasswordLogin,
    RefreshTokenLogin,
    SalesforceClient,
    SalesforceError,
    SoapLogin,
    shim,
)
from bridge.usage import ApiUsage
from tests.fixtures.copernica import RunningSandbox as CopernicaSandbox
from tests.fixtures.copernica import WebhookReceiver
from tests.fixtures.salesforce import FAST_RETRY, RunningSandbox
from tests.integration.test_salesforce_client import key_and_certificate

CHANNEL = "/data/ContactChangeEvent"

shim.apply()  # as the bridge runs it (see bridge/salesforce/shim.py)


class Tenant:
    """One org seen through the bridge's own client, with the API usage it reported."""

    def __init__(self, sandbox: RunningSandbox, org: dict[str, Any] | None) -> None:
        self.org = org
        self.usage: list[ApiUsage] = []
        login = (
            sandbox.client_credentials(
                client_id=org["client_id"], client_secret=org["client_secret"]
            )
            if org
            else sandbox.client_credentials()
        )
        self.client = SalesforceClient(login, retry=FAST_RETRY, usage=self.usage.append)

    @property
    def query(self) -> str:
        return f"?org={self.org['org_id']}" if self.org else ""

    def streaming_login(self) -> PasswordAuthenticator:
        if self.org is None:
            return PasswordAuthenticator(
                "sandbox-client",
                "sandbox-secret",
                "admin@sandbox.example",
                "sandbox-passwordSANDBOXTOKEN",
            )
        org = self.org
        return PasswordAuthenticator(
            org["client_id"],
            org["client_secret"],
            org["username"],
            org["password"] + org["security_token"],
        )

    async def last_names(self) -> list[str]:
        rows = self.client.query("SELECT Id, LastName FROM Contact ORDER BY LastName")
        return [row["LastName"] async for row in rows]


@pytest.fixture
async def tenants(sf_sandbox: RunningSandbox) -> AsyncIterator[list[Tenant]]:
    """The default org and two new ones, in that order."""
    made = [Tenant(sf_sandbox, None)] + [
        Tenant(sf_sandbox, await sf_sandbox.new_org()) for _ in "ab"
    ]
    yield made
    for tenant in made:
        await tenant.client.close()


@pytest.fixture
def token_url(sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiosfstream_ng.auth, "TOKEN_URL", f"{sf_sandbox.url}/services/oauth2/token")


async def test_orgs_keep_records_queries_and_counters_apart(
    sf_sandbox: RunningSandbox, tenants: list[Tenant]
) -> None:
    ids = {}
    for number, tenant in enumerate(tenants):
        name = f"Org{number}"
        ids[name] = await tenant.client.create("Contact", {"LastName": name})
        results = await tenant.client.create_many(
            "Contact", [{"LastName": f"{name}-bulk{i}"} for i in range(number + 1)]
        )
        assert all(result.success for result in results)
        for _ in range(number * 3):  # each org gets its own number of calls
            await tenant.client.count("SELECT COUNT() FROM Contact")
    for number, tenant in enumerate(tenants):
        name = f"Org{number}"
        assert await tenant.last_names() == [name] + [f"{name}-bulk{i}" for i in range(number + 1)]
        stored = await sf_sandbox.admin("GET", f"/contacts{tenant.query}")
        assert sorted(row["LastName"] for row in stored["records"]) == await tenant.last_names()
    assert len(set(ids.values())) == 3  # record ids never repeat across orgs

    default, first, second = tenants
    with pytest.raises(SalesforceError) as refused:
        await second.client.get("Contact", ids["Org1"])
    assert refused.value.status == 404
    [result] = await second.client.update_many("Contact", [{"id": ids["Org1"], "LastName": "X"}])
    assert not result.success
    await second.client.delete("Contact", ids["Org2"])
    assert await first.last_names() == ["Org1", "Org1-bulk0", "Org1-bulk1"]
    assert await default.last_names() == ["Org0", "Org0-bulk0"]

    for tenant in tenants:  # each org counts only the calls made to it
        limits = await tenant.client.limits()
        daily = limits["DailyApiRequests"]
        assert daily["Max"] - daily["Remaining"] == len(tenant.usage)
        assert tenant.usage[-1].used == len(tenant.usage)
        overview = await sf_sandbox.admin("GET", f"/{tenant.query}")
        assert overview["api_usage"]["used"] == len(tenant.usage)
    assert len({len(tenant.usage) for tenant in tenants}) == 3


async def test_each_login_flow_lands_in_its_own_org(
    sf_sandbox: RunningSandbox, tenants: list[Tenant]
) -> None:
    default, first, second = tenants
    await first.client.create("Contact", {"LastName": "First"})
    org = first.org
    assert org is not None
    key_pem, cert_pem = key_and_certificate()
    variants = {"soap_login": True, "jwt_certificate_pem": cert_pem}
    await sf_sandbox.admin("POST", f"/variants{first.query}", variants)
    url = sf_sandbox.url
    flows = [
        SoapLogin(org["username"], org["password"], org["security_token"], login_url=url),
        PasswordLogin(
            org["client_id"],
            org["client_secret"],
            org["username"],
            org["password"],
            org["security_token"],
            login_url=url,
        ),
        RefreshTokenLogin(org["client_id"], org["refresh_token"], login_url=url),
        JwtBearerLogin(org["client_id"], org["username"], key_pem, login_url=url),
    ]
    for flow in flows:
        async with SalesforceClient(flow, retry=FAST_RETRY) as client:
            names = [row["LastName"] async for row in client.query("SELECT LastName FROM Contact")]
            assert names == ["First"], flow
    assert await sf_sandbox.admin("GET", "/variants") == {  # the default org's are untouched
        "soap_login": False,
        "collections_call_options": False,
        "jwt_certificate_pem": None,
    }

    assert second.org is not None
    crossed = [
        sf_sandbox.client_credentials(
            client_id=org["client_id"], client_secret=second.org["client_secret"]
        ),
        JwtBearerLogin(second.org["client_id"], org["username"], key_pem, login_url=url),
    ]
    for flow in crossed:
        async with SalesforceClient(flow, retry=FAST_RETRY) as client:
            with pytest.raises(SalesforceError):
                await client.limits()


async def test_faults_hit_their_own_org(sf_sandbox: RunningSandbox, tenants: list[Tenant]) -> None:
    default, first, second = tenants
    faulty = {first: "/services/oauth2/token", second: "/services/data/*"}
    for tenant, path in faulty.items():
        fault = {"path": path, "status": 503, "times": None}
        await sf_sandbox.admin("POST", f"/faults{tenant.query}", fault)
    for tenant in tenants:
        async with SalesforceClient(
            tenant.client.authenticator, retry=RetryPolicy(max_attempts=1)
        ) as client:
            if tenant in faulty:
                with pytest.raises(SalesforceError) as failed:
                    await client.limits()
                assert failed.value.status == 503
            else:
                assert (await client.limits())["DailyApiRequests"]["Max"] == 115_000
    assert (await sf_sandbox.admin("GET", f"/{second.query}"))["api_usage"]["used"] == 0


async def next_header(stream: Client) -> dict[str, Any]:
    message = await asyncio.wait_for(stream.receive(), 30)
    return dict(message["data"]["payload"]["ChangeEventHeader"])


@pytest.mark.usefixtures("token_url")
async def test_orgs_have_their_own_change_streams(
    sf_sandbox: RunningSandbox, tenants: list[Tenant]
) -> None:
    storage: list[dict[str, Any]] = [{} for _ in tenants]
    streams = [
        Client(tenant.streaming_login(), replay=store, connection_timeout=5)
        for tenant, store in zip(tenants, storage, strict=True)
    ]
    for stream in streams:
        await stream.open()
        await stream.subscribe(CHANNEL)
    try:
        # Every org writes before any writes its marker, so a stream that saw another org's
        # change would see it before its own marker.
        own = [await t.client.create("Contact", {"LastName": "Own"}) for t in tenants]
        markers = [await t.client.create("Contact", {"LastName": "Marker"}) for t in tenants]
        for stream, mine, marker in zip(streams, own, markers, strict=True):
            received = [(await next_header(stream))["recordIds"] for _ in range(2)]
            assert received == [[mine], [marker]]
    finally:
        for stream in streams:
            await stream.close()

    # Replay ids are each org's own: a stored one resumes that org's stream alone.
    missed = [await t.client.create("Contact", {"LastName": "Missed"}) for t in tenants]
    first = tenants[1]
    async with Client(first.streaming_login(), replay=storage[1], connection_timeout=5) as stream:
        await stream.subscribe(CHANNEL)
        assert (await next_header(stream))["recordIds"] == [missed[1]]
        marker = await first.client.create("Contact", {"LastName": "Marker"})
        assert (await next_header(stream))["recordIds"] == [marker]
    for tenant in tenants:
        events = await sf_sandbox.admin("GET", f"/cdc/events{tenant.query}")
        assert len(events["events"]) == (4 if tenant is first else 3)


async def test_two_hundred_orgs(sf_sandbox: RunningSandbox) -> None:
    orgs = [await sf_sandbox.new_org() for _ in range(200)]
    assert len({org["org_id"] for org in orgs}) == 200
    for number, org in enumerate(orgs):
        login = sf_sandbox.client_credentials(
            client_id=org["client_id"], client_secret=org["client_secret"]
        )
        async with SalesforceClient(login, retry=FAST_RETRY) as client:
            await client.create("Contact", {"LastName": f"Org{number}"})
            names = [row["LastName"] async for row in client.query("SELECT LastName FROM Contact")]
        assert names == [f"Org{number}"]
    assert (await sf_sandbox.admin("GET", "/"))["records"]["Contact"] == 0


# --- Copernica ---------------------------------------------------------------------------


def copernica(sandbox: CopernicaSandbox, account: dict[str, Any] | None, **options: Any) -> Any:
    token = account["access_token"] if account else sandbox.state.settings.api_token
    return CopernicaClient.for_sandbox(sandbox.url, api_token=token, **options)


async def test_accounts_keep_databases_profiles_and_webhooks_apart(
    copernica_sandbox: CopernicaSandbox, copernica_webhook_receiver: WebhookReceiver
) -> None:
    accounts = [None, await copernica_sandbox.new_account(), await copernica_sandbox.new_account()]
    hook_base = copernica_webhook_receiver.url.rpartition("/")[0]
    seen: list[tuple[int, int]] = []
    for number, account in enumerate(accounts):
        async with copernica(copernica_sandbox, account) as client:
            [database] = [db async for db in client.databases()]
            if account:
                assert str(database.id) == account["database_id"]
                assert (await client.identity())["id"] == account["account_id"]
            await client.create_field(database.id, "Email", "email")
            await client.create_webhook(
                f"{hook_base}/account{number}", "create", database=database.id
            )
            profile = await client.create_profile(database.id, {"Email": f"p{number}@example.org"})
            seen.append((database.id, profile))
    assert len({database for database, _ in seen}) == 3  # ids never repeat across accounts
    assert len({profile for _, profile in seen}) == 3

    received = await copernica_webhook_receiver.wait_for(3, within=30)
    by_path = {hook.path.rpartition("/")[2]: hook for hook in received}
    assert sorted(by_path) == ["account0", "account1", "account2"]
    for number, account in enumerate(accounts):
        hook = by_path[f"account{number}"]
        marker = f"account-{account['account_id'] if account else 1}"
        assert hook.headers["X-Copernica-ID"] == marker
        assert f"p{number}%40example.org" in hook.body.decode()

    # One account's ids mean nothing to another, over v3 (token) and v4 (JWT) alike.
    other_database, other_profile = seen[1]
    for version in (3, 4):
        async with copernica(copernica_sandbox, accounts[2], version=version) as client:
            with pytest.raises(CopernicaError, match="No database with supplied ID"):
                await client.database(other_database)
            with pytest.raises(CopernicaError):
                await client.profile(other_profile)
            assert [p.id async for p in client.profiles(seen[2][0])] == [seen[2][1]]
    for number, account in enumerate(accounts):
        query = f"?account={account['account_id']}" if account else ""
        stats = await copernica_sandbox.admin("GET", f"stats{query}")
        assert stats["rest_writes"] == 3  # field, webhook, profile: its own writes alone
        hooks = await copernica_sandbox.admin("GET", f"webhooks{query}")
        assert [hook["handler"] for hook in hooks["data"]] == [f"{hook_base}/account{number}"]


async def test_two_hundred_accounts(copernica_sandbox: CopernicaSandbox) -> None:
    accounts = [await copernica_sandbox.new_account() for _ in range(200)]
    assert len({account["account_id"] for account in accounts}) == 200
    for number, account in enumerate(accounts):
        async with copernica(copernica_sandbox, account) as client:
            await client.create_profile(int(account["database_id"]), {})
            assert len(await client.profile_ids(int(account["database_id"]))) == 1
        stats = await copernica_sandbox.admin("GET", f"stats?account={account['account_id']}")
        assert stats["rest_writes"] == 1, number
    default = await copernica_sandbox.admin("GET", "stats")
    assert default["rest_writes"] == 0
