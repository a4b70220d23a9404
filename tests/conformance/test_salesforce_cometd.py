"""Bayeux details of the sandbox's /cometd endpoint (as Salesforce's Streaming API has them) on
the raw wire."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from sandbox.salesforce import SandboxSettings
from sandbox.salesforce.cli import DEFAULT_PORT, parse
from tests.fixtures.salesforce import SandboxFactory

HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "minimumVersion": "1.0",
    "supportedConnectionTypes": ["websocket", "long-polling"],
    "id": "0",
}


async def token(http: aiohttp.ClientSession, url: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
    }
    async with http.post(f"{url}/services/oauth2/token", data=form) as response:
        return (await response.json())["access_token"]


class Bayeux:
    def __init__(self, http: aiohttp.ClientSession, url: str, auth: str) -> None:
        self.http, self.url, self.auth = http, f"{url}/cometd/59.0", auth
        self.client_id = ""

    async def post(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        body = [{"clientId": self.client_id, **m} if self.client_id else m for m in messages]
        async with self.http.post(
            self.url, json=body, headers={"Authorization": self.auth}
        ) as response:
            self.last = response
            return await response.json()

    async def handshake(self) -> dict[str, Any]:
        [reply] = await self.post(HANDSHAKE)
        self.client_id = reply["clientId"]
        return reply

    async def connect(self, message_id: str) -> list[dict[str, Any]]:
        return await self.post(
            {"channel": "/meta/connect", "connectionType": "long-polling", "id": message_id}
        )


async def test_cookie_oauth_scheme_and_held_connects(sf_sandbox_factory: SandboxFactory) -> None:
    sandbox = await sf_sandbox_factory(SandboxSettings(connect_timeout=1.0))
    async with aiohttp.ClientSession() as http:
        bayeux = Bayeux(http, sandbox.url, f"OAuth {await token(http, sandbox.url)}")
        reply = await bayeux.handshake()
        assert reply["successful"] and "BAYEUX_BROWSER" in bayeux.last.cookies
        started = time.perf_counter()
        [first] = await bayeux.connect("1")
        assert first["successful"] and time.perf_counter() - started < 0.9
        started = time.perf_counter()
        [held] = await bayeux.connect("2")
        assert held["successful"] and time.perf_counter() - started >= 0.95
        assert held["advice"] == {"interval": 0, "timeout": 1000, "reconnect": "retry"}
        [sub] = await bayeux.post(
            {"channel": "/meta/subscribe", "id": "3", "subscription": "/data/ChangeEvents"}
        )
        assert sub["successful"] and sub["subscription"] == "/data/ChangeEvents"
        pending = asyncio.ensure_future(bayeux.connect("4"))
        await asyncio.sleep(0.05)
        await sandbox.admin("POST", "/contacts", {"LastName": "Wakes the poll"})
        replies = await asyncio.wait_for(pending, 0.9)
        event = next(m for m in replies if m["channel"] == "/data/ChangeEvents")
        assert event["data"]["payload"]["ChangeEventHeader"]["changeOrigin"] == ""
        [bad] = await bayeux.post(
            {"channel": "/meta/connect", "connectionType": "websocket", "id": "5"}
        )
        assert bad["error"] == "400::Invalid connection type"
        [gone] = await bayeux.post({"channel": "/meta/disconnect", "id": "6"})
        assert gone["successful"]
        [unknown] = await bayeux.connect("7")
        assert unknown["error"] == "403::Unknown client"


async def test_expired_session_on_connect(sf_sandbox_factory: SandboxFactory) -> None:
    sandbox = await sf_sandbox_factory()
    async with aiohttp.ClientSession() as http:
        bayeux = Bayeux(http, sandbox.url, f"Bearer {await token(http, sandbox.url)}")
        await bayeux.handshake()
        await sandbox.admin("POST", "/sessions/expire")
        [refused] = await bayeux.connect("1")
    assert refused["error"] == "401::Authentication invalid"
    assert refused["advice"]["reconnect"] == "none"


async def test_retention_makes_old_replay_ids_invalid(sf_sandbox_factory: SandboxFactory) -> None:
    sandbox = await sf_sandbox_factory(SandboxSettings(event_retention=0.2))
    await sandbox.admin("POST", "/contacts", {"LastName": "Early"})
    early = (await sandbox.admin("GET", "/cdc/events"))["latest"]
    await sandbox.admin("POST", "/contacts", {"LastName": "Second"})
    async with aiohttp.ClientSession() as http:
        bayeux = Bayeux(http, sandbox.url, f"Bearer {await token(http, sandbox.url)}")
        await bayeux.handshake()
        subscribe = {
            "channel": "/meta/subscribe",
            "id": "2",
            "subscription": "/data/ContactChangeEvent",
            "ext": {"replay": {"/data/ContactChangeEvent": early}},
        }
        [ok] = await bayeux.post(subscribe)
        assert ok["successful"]
        await asyncio.sleep(0.3)
        [expired] = await bayeux.post({**subscribe, "id": "3"})
    assert expired["error"].startswith(f"400::The replayId {{{early}}} you provided was invalid")


def test_cli_settings() -> None:
    args, settings = parse(["--port", "9000", "--without-bridge-objects", "--connect-timeout", "5"])
    assert (args.host, args.port) == ("127.0.0.1", 9000)
    assert settings.bridge_objects is False and settings.connect_timeout == 5
    args, settings = parse([])
    assert args.port == DEFAULT_PORT == 8801 and settings.username == "admin@sandbox.example"
