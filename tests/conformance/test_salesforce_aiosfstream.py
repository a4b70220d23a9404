"""aiosfstream-ng 0.7.5 (stock ``Client`` + ``PasswordAuthenticator``) against the sandbox's
CometD endpoint and Change Data Capture; only ``TOKEN_URL`` is aimed at the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiosfstream_ng.auth
import pytest
from aiosfstream_ng import Client, PasswordAuthenticator

from bridge.salesforce import SalesforceClient, shim
from tests.fixtures.salesforce import RunningSandbox

CHANNEL = "/data/ContactChangeEvent"

shim.apply()  # as the bridge runs it (see bridge/salesforce/shim.py)


@pytest.fixture
async def token_url(
    sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    monkeypatch.setattr(aiosfstream_ng.auth, "TOKEN_URL", f"{sf_sandbox.url}/services/oauth2/token")
    yield


def authenticator() -> PasswordAuthenticator:
    return PasswordAuthenticator(
        "sandbox-client", "sandbox-secret", "admin@sandbox.example", "sandbox-passwordSANDBOXTOKEN"
    )


async def next_message(client: Client) -> dict[str, Any]:
    return await asyncio.wait_for(client.receive(), 10)


def header(message: dict[str, Any]) -> dict[str, Any]:
    return message["data"]["payload"]["ChangeEventHeader"]


@pytest.mark.usefixtures("token_url")
async def test_receive_create_update_delete(sf_client: SalesforceClient) -> None:
    async with Client(authenticator(), connection_timeout=5) as streaming:
        await streaming.subscribe(CHANNEL)
        record_id = await sf_client.create("Contact", {"LastName": "Doe", "FirstName": "Jane"})
        await sf_client.update("Contact", record_id, {"Email": "jane@example.org"})
        await sf_client.delete("Contact", record_id)
        created, updated, deleted = [await next_message(streaming) for _ in range(3)]
    assert created["channel"] == CHANNEL
    assert header(created)["changeType"] == "CREATE"
    assert created["data"]["payload"]["Name"] == {"FirstName": "Jane", "LastName": "Doe"}
    assert header(updated)["changeType"] == "UPDATE"
    assert header(updated)["changedFields"] == ["Email", "LastModifiedDate"]
    assert updated["data"]["payload"]["Email"] == "jane@example.org"
    assert header(deleted)["changeType"] == "DELETE"
    assert header(deleted)["recordIds"] == [record_id]
    assert header(created)["changeOrigin"].endswith(";client=test-bridge")
    ids = [m["data"]["event"]["replayId"] for m in (created, updated, deleted)]
    assert ids == sorted(ids) and len(set(ids)) == 3


@pytest.mark.usefixtures("token_url")
async def test_resume_from_stored_replay_id(sf_client: SalesforceClient) -> None:
    storage: dict[str, Any] = {}
    async with Client(authenticator(), replay=storage, connection_timeout=5) as streaming:
        await streaming.subscribe(CHANNEL)
        first = await sf_client.create("Contact", {"LastName": "First"})
        assert header(await next_message(streaming))["recordIds"] == [first]
    assert storage[CHANNEL].replay_id > 0
    missed = [await sf_client.create("Contact", {"LastName": f"Missed{i}"}) for i in range(2)]
    async with Client(authenticator(), replay=storage, connection_timeout=5) as streaming:
        await streaming.subscribe(CHANNEL)
        replayed = [header(await next_message(streaming))["recordIds"][0] for _ in range(2)]
    assert replayed == missed


@pytest.mark.usefixtures("token_url")
async def test_rehandshake_and_resubscribe_after_unknown_client(
    sf_sandbox: RunningSandbox, sf_client: SalesforceClient
) -> None:
    storage: dict[str, Any] = {}
    async with Client(authenticator(), replay=storage, connection_timeout=5) as streaming:
        await streaming.subscribe(CHANNEL)
        await sf_client.create("Contact", {"LastName": "Before"})
        await next_message(streaming)
        [old_client] = (await sf_sandbox.admin("GET", "/streaming"))["clients"]
        assert (await sf_sandbox.admin("POST", "/streaming/drop", {}))["dropped"] == 1
        after = await sf_client.create("Contact", {"LastName": "After"})
        message = await next_message(streaming)
        assert header(message)["recordIds"] == [after]
        [new_client] = (await sf_sandbox.admin("GET", "/streaming"))["clients"]
    assert new_client["client_id"] != old_client["client_id"]
    assert new_client["subscriptions"] == [CHANNEL]


@pytest.mark.usefixtures("token_url")
async def test_invalid_replay_id_is_refused(
    sf_sandbox: RunningSandbox, sf_client: SalesforceClient
) -> None:
    from aiosfstream_ng.exceptions import ServerError
    from aiosfstream_ng.replay import ReplayMarker

    await sf_client.create("Contact", {"LastName": "Old"})
    await sf_client.create("Contact", {"LastName": "Newer"})
    await sf_sandbox.admin("POST", "/cdc/purge", {})
    storage = {CHANNEL: ReplayMarker(date="0", replay_id=5)}
    async with Client(authenticator(), replay=storage, connection_timeout=5) as streaming:
        with pytest.raises(ServerError) as failure:
            await streaming.subscribe(CHANNEL)
    assert failure.value.error_code == 400
    assert "The replayId {5} you provided was invalid" in failure.value.error_message or (
        "replayId" in str(failure.value.response)
    )
