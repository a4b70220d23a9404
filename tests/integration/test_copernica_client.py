"""The bridge's Copernica client against the Copernica sandbox over real HTTP."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import date

import pytest
from aiohttp.test_utils import TestServer

from bridge.copernica import CopernicaClient, CopernicaError, condition
from bridge.retry import RetryPolicy
from bridge.usage import ApiUsage
from sandbox.copernica import SandboxSettings, create_app
from tests.fixtures.copernica import FAST_RETRY, RunningSandbox

pytestmark = pytest.mark.asyncio


async def collect(iterator):  # type: ignore[no-untyped-def]
    return [item async for item in iterator]


@pytest.fixture
async def contacts(copernica_client: CopernicaClient) -> CopernicaClient:
    """The sandbox database with Email, FirstName and SalesforceId fields."""
    await copernica_client.create_field(1, "Email", "email")
    await copernica_client.create_field(1, "FirstName")
    await copernica_client.create_field(1, "SalesforceId", index=True)
    return copernica_client


# account, databases, fields -------------------------------------------------------------------
@pytest.mark.parametrize("version", [3, 4])
async def test_identity_and_consumption(copernica_sandbox: RunningSandbox, version: int) -> None:
    async with CopernicaClient.for_sandbox(
        copernica_sandbox.url,
        version=version,
        retry=FAST_RETRY,  # type: ignore[arg-type]
    ) as client:
        assert (await client.identity())["name"] == "Sandbox"
        usage = await client.consumption(date(2000, 1, 1), date(2999, 1, 1))
        assert usage["apicalls"] == 2


async def test_custom_host_without_scheme() -> None:
    client = CopernicaClient("t", host="rest.copernica.com")
    assert client.base == "https://rest.copernica.com/v4"
    await client.close()


async def test_databases(copernica_client: CopernicaClient) -> None:
    new_id = await copernica_client.create_database("Leads", description="from tests")
    await copernica_client.edit_database(new_id, archived=True)
    second = await copernica_client.create_database("Leads 2")
    listed = await collect(copernica_client.databases(page_size=1))  # pages of one
    assert [d.name for d in listed] == ["Sandbox", "Leads", "Leads 2"]
    leads = await copernica_client.database(new_id)
    assert leads.archived and leads.description == "from tests"
    assert (await copernica_client.database(second)).name == "Leads 2"
    with pytest.raises(CopernicaError) as caught:
        await copernica_client.database(4242)
    assert caught.value.category == "not_found"
    assert caught.value.message.endswith("No database with supplied ID")


async def test_fields(contacts: CopernicaClient) -> None:
    fields = await collect(contacts.fields("Sandbox"))
    assert [(f.name, f.type) for f in fields] == [
        ("Email", "email"),
        ("FirstName", "text"),
        ("SalesforceId", "text"),
    ]
    with pytest.raises(CopernicaError) as caught:
        await contacts.create_field(1, "Other", "email")
    assert caught.value.category == "validation" and caught.value.status == 400


# profiles -------------------------------------------------------------------------------------
async def test_profile_lifecycle(contacts: CopernicaClient) -> None:
    pid = await contacts.create_profile(1, {"Email": "ann@x.org", "FirstName": "Ann"})
    profile = await contacts.profile(pid)
    assert profile.id == pid and profile.database == 1 and profile.fields["FirstName"] == "Ann"
    await contacts.update_profile_fields(pid, {"FirstName": "Anna"})
    await contacts.update_profile_fields(pid, {"Email": "anna@x.org"})
    found = await contacts.find_profiles(1, {"Email": "anna@x.org"})
    assert [p.fields["FirstName"] for p in found] == ["Anna"]
    await contacts.delete_profile(pid)
    assert (await contacts.profile(pid)).removed is not None
    with pytest.raises(CopernicaError) as caught:
        await contacts.delete_profile(pid)
    assert caught.value.category == "not_found"
    assert "already been removed" in caught.value.message


async def test_paging_is_keyset_and_complete(contacts: CopernicaClient) -> None:
    ids = [await contacts.create_profile(1, {"FirstName": f"p{n:02}"}) for n in range(25)]
    seen = await collect(contacts.profiles(1, page_size=10))
    assert [p.id for p in seen] == ids
    newest_first = await collect(contacts.profiles(1, orderby="id", order="desc", page_size=7))
    assert [p.id for p in newest_first] == ids[::-1]
    some = await collect(contacts.profiles(1, [condition("FirstName", "=~", "p1%")], page_size=4))
    assert len(some) == 10
    assert await contacts.profile_ids(1) == ids


async def test_modified_since(contacts: CopernicaClient, copernica_sandbox: RunningSandbox) -> None:
    first = await contacts.create_profile(1, {"FirstName": "a"})
    second = await contacts.create_profile(1, {"FirstName": "b"})
    await contacts.update_profile_fields(first, {"FirstName": "a2"})
    since = (await contacts.profile(second)).created
    changed = await collect(contacts.profiles_modified_since(1, since))
    assert [p.id for p in changed] == [second, first]  # by change order, not by id


async def test_condition_builder_refuses_bad_input() -> None:
    assert condition("Email", "==", "a@b.c") == "Email==a@b.c"
    with pytest.raises(ValueError):
        condition("Email", "===", "x")
    with pytest.raises(ValueError):
        condition("a=b", "==", "x")


# selections, content, emailings, webhooks -----------------------------------------------------
async def test_views_templates_sending_and_statistics(
    contacts: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    for n in range(4):
        await contacts.create_profile(1, {"Email": f"p{n}@x.org" if n else "", "FirstName": "x"})
    view = await copernica_sandbox.admin("POST", "databases/1/views", {"name": "All", "rules": []})
    [listed] = await collect(contacts.views(1))
    assert listed.id == int(view["ID"]) and listed.database == 1
    [template] = await collect(contacts.templates())
    [document] = await collect(contacts.documents())
    assert template.product == "ms" and document.product == "publisher"
    emailing = await contacts.send_emailing(template.id, listed.id, "view")
    stats = await contacts.emailing_statistics(emailing)
    assert stats.destinations == 3 and stats.deliveries + stats.errors == 3
    pub = await contacts.send_publisher_emailing(document.id, 1, "database", {"description": "t"})
    assert (await contacts.emailing(pub, "publisher")).destinations == 3


async def test_v3_uses_old_prefixes(copernica_v3_client: CopernicaClient) -> None:
    [template] = await collect(copernica_v3_client.templates())
    assert template.name == "Newsletter"


async def test_webhook_registration(copernica_client: CopernicaClient) -> None:
    hook_id = await copernica_client.create_webhook(
        "http://127.0.0.1:9/hooks/copernica/t", "update", callers=["ms"], database=1
    )
    hook = await copernica_client.webhook(hook_id)
    assert hook.trigger == "update" and hook.callers == ("ms",)
    await copernica_client.delete_webhook(hook_id)
    with pytest.raises(CopernicaError) as caught:
        await copernica_client.webhook(hook_id)
    assert caught.value.category == "not_found"


# errors, retries, auth ------------------------------------------------------------------------
async def test_bad_tokens_are_auth_errors(copernica_sandbox: RunningSandbox) -> None:
    for version in (3, 4):
        async with CopernicaClient.for_sandbox(
            copernica_sandbox.url,
            "wrong",
            version=version,
            retry=FAST_RETRY,  # type: ignore[arg-type]
        ) as client:
            with pytest.raises(CopernicaError) as caught:
                await client.identity()
            assert caught.value.category == "auth" and not caught.value.retryable


async def test_jwt_cached_renewed_and_refetched(copernica_sandbox: RunningSandbox) -> None:
    now = [1_000_000_000.0]
    async with CopernicaClient.for_sandbox(
        copernica_sandbox.url, retry=FAST_RETRY, clock=lambda: now[0]
    ) as client:
        await client.identity()
        await client.identity()
        assert client.jwt.fetches == 1  # cached
        await copernica_sandbox.admin("POST", "tokens/expire")
        await client.identity()  # refused JWT: a new one, transparently
        assert client.jwt.fetches == 2
        exp = client.jwt._jwt.expires  # type: ignore[union-attr]
        now[0] = exp - 200  # inside the renew margin (300 s)
        await client.identity()
        assert client.jwt.fetches == 3


async def test_burst_of_503_is_ridden_out(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    await copernica_sandbox.admin("POST", "faults", {"status": 503, "count": 3, "retry_after": 0})
    assert (await copernica_client.identity())["name"] == "Sandbox"
    await copernica_sandbox.admin("POST", "faults", {"status": 504, "count": 10})
    with pytest.raises(CopernicaError) as caught:
        await copernica_client.identity()
    assert caught.value.category == "transient" and caught.value.status == 504
    assert caught.value.message.endswith("Loadbalancer Error")


async def test_429_waits_for_retry_after(copernica_sandbox: RunningSandbox) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    await copernica_sandbox.admin("POST", "faults", {"status": 429, "count": 2, "retry_after": 3})
    async with CopernicaClient.for_sandbox(
        copernica_sandbox.url, retry=FAST_RETRY, sleep=sleep
    ) as client:
        assert (await client.identity())["name"] == "Sandbox"
    assert waits == [3.0, 3.0]


async def test_429_longer_than_the_cap_is_left_to_the_caller(
    copernica_sandbox: RunningSandbox,
) -> None:
    await copernica_sandbox.admin("POST", "faults", {"status": 429, "count": 1, "retry_after": 60})
    async with CopernicaClient.for_sandbox(
        copernica_sandbox.url, retry=RetryPolicy(max_attempts=3, base=0.01, cap=5)
    ) as client:
        with pytest.raises(CopernicaError) as caught:
            await client.identity()
    assert caught.value.category == "rate_limit" and caught.value.retry_after == 60


async def test_connection_errors_are_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    calls: list[ApiUsage] = []
    async with CopernicaClient.for_sandbox(
        f"http://127.0.0.1:{port}", version=3, retry=FAST_RETRY, usage=calls.append
    ) as client:
        with pytest.raises(CopernicaError) as caught:
            await client.identity()
    assert caught.value.category == "transient" and caught.value.retryable
    assert len(calls) == FAST_RETRY.max_attempts


async def test_every_call_is_counted(copernica_sandbox: RunningSandbox) -> None:
    calls: list[ApiUsage] = []
    async with CopernicaClient.for_sandbox(
        copernica_sandbox.url, retry=FAST_RETRY, usage=calls.append
    ) as client:
        await client.identity()
        await collect(client.databases())
    assert [c.platform for c in calls] == ["copernica", "copernica"]
    stats = await copernica_sandbox.admin("GET", "stats")
    assert stats["api_calls"] == 2


async def test_client_accepts_the_observed_v2_statuses(
    copernica_settings: SandboxSettings,
) -> None:
    server = TestServer(create_app(replace(copernica_settings, legacy_statuses=True)))
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        async with CopernicaClient.for_sandbox(url, version=3, retry=FAST_RETRY) as client:
            await client.create_field(1, "Key")
            created = await client.create_profile(1, {"Key": "k"})
            await client.update_profile_fields(created, {"Key": "k2"})  # 303 See Other
            assert (await client.profile(created)).fields["Key"] == "k2"
            await client.delete_profile(created)  # 200 instead of 204
            assert (await client.profile(created)).removed is not None
    finally:
        await server.close()
