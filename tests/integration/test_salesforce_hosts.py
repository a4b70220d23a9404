"""The Salesforce client only talks to allowed hosts: a login URL or an instance URL outside the
policy gets no request, and a redirect is never followed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.config import Settings
from bridge.hosts import HostRefused, salesforce_hosts
from bridge.salesforce import ClientCredentialsLogin, SalesforceClient, SalesforceError
from tests.fixtures.listener import Listener, recording_listener
from tests.fixtures.salesforce import FAST_RETRY


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    async with recording_listener() as listening:
        yield listening


async def token_endpoint(reply: web.StreamResponse) -> TestServer:
    """A stand-in token endpoint that answers every login with ``reply``."""

    async def token(request: web.Request) -> web.StreamResponse:
        return reply

    app = web.Application()
    app.router.add_post("/services/oauth2/token", token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def allowing(*netlocs: str) -> Settings:
    return Settings(allowed_api_hosts=netlocs)


async def test_a_login_url_outside_the_policy_gets_no_request(listener: Listener) -> None:
    login = ClientCredentialsLogin("key", "the-consumer-secret", listener.url)
    async with SalesforceClient(
        login, retry=FAST_RETRY, hosts=salesforce_hosts(Settings())
    ) as client:
        with pytest.raises(HostRefused) as refused:
            await client.limits()
    assert refused.value.message == (
        f"{listener.url} is not a Salesforce address: the bridge only connects to https:// "
        "addresses under salesforce.com."
    )
    assert listener.connections == 0


async def test_an_instance_url_outside_the_policy_is_refused(listener: Listener) -> None:
    server = await token_endpoint(web.json_response({
        "access_token": "t", "token_type": "Bearer", "instance_url": listener.url,
        "id": "https://login.salesforce.com/id/00D/005",
    }))
    try:
        base = str(server.make_url("")).rstrip("/")
        policy = salesforce_hosts(allowing(f"127.0.0.1:{server.port}"))
        async with SalesforceClient(
            ClientCredentialsLogin("key", "secret", base), retry=FAST_RETRY, hosts=policy
        ) as client:
            with pytest.raises(HostRefused):
                await client.limits()
    finally:
        await server.close()
    assert listener.connections == 0


async def test_a_login_redirect_is_not_followed(listener: Listener) -> None:
    server = await token_endpoint(
        web.Response(status=307, headers={"Location": f"{listener.url}/services/oauth2/token"})
    )
    try:
        base = str(server.make_url("")).rstrip("/")
        everything = salesforce_hosts(allowing(f"127.0.0.1:{server.port}", listener.netloc))
        async with SalesforceClient(
            ClientCredentialsLogin("key", "the-consumer-secret", base),
            retry=FAST_RETRY, hosts=everything,
        ) as client:
            with pytest.raises(SalesforceError):
                await client.limits()
    finally:
        await server.close()
    assert listener.connections == 0  # even an allowed host: the secret stays where it was sent



async def test_an_allowed_host_named_with_a_user_and_password_gets_no_request(
    listener: Listener,
) -> None:
    """Asked once per origin, the policy still sees the credentials a crafted login reply may
    put in front of an allowed host."""
    server = await token_endpoint(web.json_response({
        "access_token": "t", "token_type": "Bearer",
        "instance_url": f"http://admin:hunter2@{listener.netloc}",
        "id": "https://login.salesforce.com/id/00D/005",
    }))
    try:
        base = str(server.make_url("")).rstrip("/")
        policy = salesforce_hosts(allowing(f"127.0.0.1:{server.port}", listener.netloc))
        assert policy.allows(listener.url)
        async with SalesforceClient(
            ClientCredentialsLogin("key", "secret", base), retry=FAST_RETRY, hosts=policy
        ) as client:
            with pytest.raises(HostRefused) as refused:
                await client.limits()
    finally:
        await server.close()
    assert "hunter2" not in refused.value.message
    assert listener.connections == 0
