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

    def __init__(self, sandbox: RunningSandbox, org: dict[str, str]) -> None:
        self.org = org
        self.query = f"?org={org['org_id']}"  # the default org answers to its id too
        self.usage: list[ApiUsage] = []
        login = sandbox.client_credentials(
            client_id=org["client_id"], client_secret=org["client_secret"]
        )
        self.client = SalesforceClient(login, retry=FAST_RETRY, usage=self.usage.append)

    def streaming_login(self) -> PasswordAuthenticator:
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


def default_org(sandbox: RunningSandbox) -> dict[str, str]:
    """The default org's credentials, as ``new_org`` answers them."""
    settings = sandbox.settings
    names = ("username", "password", "security_token", "client_id", "client_secret")
    return {"org_id": settings.organization_id} | {name: getattr(settings, name) for name in names}


@pytest.fixture
async def tenants(sf_sandbox: RunningSandbox) -> AsyncIterator[list[Tenant]]:
    """The default org and two new ones, in that order."""
    orgs = [default_org(sf_sandbox), await sf_sandbox.new_org(), await sf_sandbox.new_org()]
    made = [Tenant(sf_sandbox, org) for org in orgs]
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
    base = second.client.base
    composite = {  # a Composite request reads and writes its own org alone
        "compositeRequest": [
            {"method": "GET", "url": f"{base}/sobjects/Contact/{ids['Org1']}", "referenceId": "a"},
            {
                "method": "DELETE",
                "url": f"{base}/sobjects/Contact/{ids['Org2']}",
                "referenceId": "b",
            },
        ]
    }
    status, reply = await second.client.request("POST", f"{base}/composite", body=composite)
    assert status == 200
    assert [item["httpStatusCode"] for item in reply["compositeResponse"]] == [404, 204]
    assert await second.last_names() == ["Org2-bulk0", "Org2-bulk1", "Org2-bulk2"]
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


def copernica(sandbox: CopernicaSandbox, account: dict[str, str], **options: Any) -> Any:
    return CopernicaClient.for_sandbox(sandbox.url, api_token=account["access_token"], **options)


def default_account(sandbox: CopernicaSandbox) -> dict[str, str]:
    """The default account, as ``new_account`` answers it."""
    [database] = sandbox.state.account.databases
    settings = sandbox.state.settings
    return {
        "account_id": str(settings.account_id),
        "access_token": settings.api_token,
        "database_id": str(database),
    }


async def test_accounts_keep_databases_profiles_webhooks_and_counters_apart(
    copernica_sandbox: CopernicaSandbox, copernica_webhook_receiver: WebhookReceiver
) -> None:
    accounts = [default_account(copernica_sandbox)]
    accounts += [await copernica_sandbox.new_account() for _ in "ab"]
    hook_base = copernica_webhook_receiver.url.rpartition("/")[0]
    profiles = []
    for number, account in enumerate(accounts):
        async with copernica(copernica_sandbox, account) as client:
            assert [str(db.id) async for db in client.databases()] == [account["database_id"]]
            assert (await client.identity())["id"] == account["account_id"]
            database = int(account["database_id"])
            await client.create_field(database, "Email", "email")
            await client.create_webhook(f"{hook_base}/account{number}", "create", database=database)
            profiles.append(await client.create_profile(database, {"Email": f"p{number}@x.org"}))
    assert len({account["database_id"] for account in accounts}) == 3  # ids never repeat
    assert len(set(profiles)) == 3

    received = await copernica_webhook_receiver.wait_for(3, within=30)
    by_path = {hook.path.rpartition("/")[2]: hook for hook in received}
    assert sorted(by_path) == ["account0", "account1", "account2"]
    for number, account in enumerate(accounts):
        hook = by_path[f"account{number}"]
        assert hook.headers["X-Copernica-ID"] == f"account-{account['account_id']}"
        assert f"p{number}%40x.org" in hook.body.decode()

    # One account's ids mean nothing to another, over v3 (token) and v4 (JWT) alike.
    other, mine = accounts[1], accounts[2]
    for version in (3, 4):
        async with copernica(copernica_sandbox, mine, version=version) as client:
            with pytest.raises(CopernicaError, match="No database with supplied ID"):
                await client.database(other["database_id"])
            with pytest.raises(CopernicaError):
                await client.profile(profiles[1])
            assert [p.id async for p in client.profiles(mine["database_id"])] == [profiles[2]]

    async def stats(account: dict[str, str]) -> dict[str, Any]:
        return dict(await copernica_sandbox.admin("GET", f"stats?account={account['account_id']}"))

    before = [(await stats(account))["api_calls"] for account in accounts]
    for number, account in enumerate(accounts):  # each account gets its own number of calls
        async with copernica(copernica_sandbox, account) as client:
            for _ in range(number + 1):
                await client.identity()
    for number, account in enumerate(accounts):
        counted = await stats(account)
        assert counted["api_calls"] - before[number] == number + 1
        assert counted["rest_writes"] == 3  # field, webhook, profile: its own writes alone
        query = f"?account={account['account_id']}"
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
