"""The Copernica client against every shape the sandbox can take: the documented one (its default)
and each variant seen elsewhere — new ids in either header or in neither, paged ``profileids``,
the old and the new emailing paths, ``data``-wrapped emailings, nested selections, redirects."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import Settings
from bridge.copernica import CopernicaClient, CopernicaError
from bridge.copernica.errors import CreatedWithoutId
from bridge.hosts import HostRefused, copernica_hosts
from tests.fixtures.copernica import FAST_RETRY, RunningSandbox
from tests.fixtures.listener import recording_listener


async def collect(iterator: Any) -> list[Any]:
    return [item async for item in iterator]


async def rest_calls(sandbox: RunningSandbox) -> int:
    return int((await sandbox.admin("GET", "stats"))["api_calls"])


@pytest.mark.parametrize("headers", ["both", "x-created", "x-location"])
async def test_the_new_id_comes_from_either_header(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox, headers: str
) -> None:
    await copernica_sandbox.admin("POST", "variants", {"created_id": headers})
    field = await copernica_client.create_field(1, "Email", "email")
    profile = await copernica_client.create_profile(1, {"Email": "a@b.c"})
    assert (await copernica_client.profile(profile)).fields["Email"] == "a@b.c"
    assert field in {f.id async for f in copernica_client.fields(1)}


async def test_a_create_without_a_readable_id_is_an_error_never_repeated(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    await copernica_sandbox.admin("POST", "variants", {"created_id": "none"})
    before = await rest_calls(copernica_sandbox)
    with pytest.raises(CreatedWithoutId) as caught:
        await copernica_client.create_profile(1, {})
    assert "did not say the new id" in caught.value.message
    assert await rest_calls(copernica_sandbox) == before + 1  # one POST, not one per attempt
    raw = await copernica_sandbox.admin("GET", "databases/1/profiles")
    assert raw["count"] == 1


async def test_a_post_copernica_may_have_acted_on_is_not_sent_again(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    await copernica_sandbox.admin("POST", "faults", {"status": 502, "count": 1})
    with pytest.raises(CopernicaError) as caught:
        await copernica_client.create_profile(1, {})
    assert caught.value.status == 502 and caught.value.retryable  # the job queue decides
    await copernica_sandbox.admin("POST", "faults", {"status": 503, "count": 2, "retry_after": 0})
    created = await copernica_client.create_profile(1, {})  # refused at the door: sent again
    assert (await copernica_client.profile(created)).id == created
    assert (await copernica_sandbox.admin("GET", "databases/1/profiles"))["count"] == 1


@pytest.mark.parametrize("variant", [{"profileids_cap": 100}, {"profileids_paged": False}, {}])
async def test_profile_ids_are_read_to_the_last_page(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox, variant: dict[str, Any]
) -> None:
    seeded = await copernica_sandbox.admin(
        "POST", "databases/1/profiles/seed",
        {"profiles": [{"fields": {}} for _ in range(1250)] + [{"fields": {}, "removed": True}]},
    )
    await copernica_sandbox.admin("POST", "variants", variant)
    assert await copernica_client.profile_ids(1) == [int(i) for i in seeded["ids"][:1250]]


async def test_emailings_use_the_documented_paths_and_unwrap_data(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    await copernica_client.create_field(1, "Email", "email")
    await copernica_client.create_profile(1, {"Email": "a@b.c"})
    [template] = await collect(copernica_client.templates())
    [document] = await collect(copernica_client.documents())
    sent = await copernica_client.send_emailing(template.id, 1)
    emailing = await copernica_client.emailing(sent)  # inside "data"
    assert (emailing.id, emailing.destinations, emailing.content) == (sent, 1, template.id)
    await copernica_sandbox.admin("POST", "variants", {"emailing_data_wrapper": False})
    assert (await copernica_client.emailing(sent)).destinations == 1
    await copernica_sandbox.admin("POST", "variants", {"send_paths": "new"})
    again = await copernica_client.send_publisher_emailing(document.id, 1)  # falls back
    assert (await copernica_client.emailing(again, "publisher")).destinations == 1
    calls = await rest_calls(copernica_sandbox)
    await copernica_client.send_publisher_emailing(document.id, 1)  # the working name is kept
    assert await rest_calls(copernica_sandbox) == calls + 1


async def test_a_send_whose_id_cannot_be_read_says_so(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    await copernica_sandbox.admin(
        "POST", "variants", {"created_id": "none", "created_id_kinds": ["emailing"]}
    )
    [template] = await collect(copernica_client.templates())
    with pytest.raises(CreatedWithoutId):
        await copernica_client.send_emailing(template.id, 1)
    assert len(copernica_sandbox.state.account.emailings) == 1  # sent once


async def test_nested_selections_are_walked(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    outer = await copernica_sandbox.admin("POST", "databases/1/views", {"name": "Customers"})
    inner = await copernica_sandbox.admin(
        "POST", "databases/1/views", {"name": "Dutch", "parent": outer["ID"]}
    )
    deepest = await copernica_sandbox.admin(
        "POST", "databases/1/views", {"name": "Amsterdam", "parent": inner["ID"]}
    )
    other = await copernica_sandbox.admin("POST", "databases/1/views", {"name": "Prospects"})
    views = await collect(copernica_client.views(1))
    assert [(v.id, v.label) for v in views] == [
        (int(outer["ID"]), "Customers"),
        (int(inner["ID"]), "Customers › Dutch"),
        (int(deepest["ID"]), "Customers › Dutch › Amsterdam"),
        (int(other["ID"]), "Prospects"),
    ]
    assert views[2].parent == int(inner["ID"])


@pytest.mark.parametrize("status", [301, 303])
async def test_gets_follow_redirects_on_the_same_host(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox, status: int
) -> None:
    await copernica_sandbox.admin(
        "POST", "variants", {"redirect_gets": 2, "redirect_status": status}
    )
    assert (await copernica_client.identity())["name"] == "Sandbox"


async def test_a_redirect_to_another_host_is_never_followed(
    copernica_client: CopernicaClient, copernica_sandbox: RunningSandbox
) -> None:
    async with recording_listener() as elsewhere:
        await copernica_sandbox.admin(
            "POST", "variants", {"redirect_gets": 1, "redirect_to": elsewhere.url}
        )
        with pytest.raises(CopernicaError) as caught:
            await copernica_client.identity()
        assert "another host" in caught.value.message
    assert elsewhere.connections == 0


async def test_a_host_outside_the_policy_gets_no_request() -> None:
    async with recording_listener() as listener:
        for host, auth in ((listener.url, "https://authenticate.copernica.com"),
                           ("https://api.copernica.com", f"{listener.url}/authenticate")):
            async with CopernicaClient(
                "secret-token", host=host, auth_url=auth, retry=FAST_RETRY,
                hosts=copernica_hosts(Settings()),
            ) as client:
                with pytest.raises(HostRefused) as refused:
                    await client.identity()
            assert "is not a Copernica address" in refused.value.message
    assert listener.connections == 0 and b"secret-token" not in listener.received
