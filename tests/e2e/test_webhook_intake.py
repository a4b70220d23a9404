"""Copernica webhooks as Copernica really sends them: every header shape and digest token syncs;
a replay, a wrong ``Host``, a wrong ``X-Copernica-ID`` and a body nested too deeply are refused
with 4xx and store nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.app import create_app
from bridge.vocabulary import webhook_url
from tests.e2e.sync_helpers import contacts, create_contact, eventually, profile_of
from tests.fixtures.bridge import RunningBridge

SHAPES = [
    ("documentation", "SHA-256", "account-{id}"),
    ("documentation", "sha-256", "account_{id}"),
    ("documentation", "sha256", "account-{id}"),
    ("library", "SHA-256", "account_{id}"),
    ("library", "sha-256", "environment_{id}"),
    ("library", "sha256", "account-{id}"),
]


async def test_every_header_shape_and_digest_token_syncs(bridge: RunningBridge) -> None:
    sf_id = await create_contact(bridge, FirstName="Web", LastName="Hook", Email="web@hook.example")
    profile = await eventually(lambda: profile_of(bridge, sf_id))
    for number, (shape, token, marker) in enumerate(SHAPES):
        await bridge.copernica.admin(
            "POST", "variants",
            {"signature_shape": shape, "digest_token": token, "copernica_id": marker},
        )
        title = f"Title {number}"
        await bridge.copernica.admin("PUT", f"profiles/{profile['ID']}", {"fields": {"Title": title}})

        async def synced(title: str = title) -> bool:
            return any(c["Id"] == sf_id and c.get("Title") == title for c in await contacts(bridge))

        assert await eventually(synced), (shape, token, marker)
    attempts = (await bridge.copernica.admin("GET", "webhooks/deliveries"))["attempts"]
    assert attempts and all(a["status"] == 200 for a in attempts)


@pytest.fixture
async def web_only(bridge_setup: RunningBridge) -> AsyncIterator[RunningBridge]:
    """The bridge with role ``web``: no worker takes the jobs a delivery stores, so they can be
    counted."""
    app = create_app(bridge_setup.settings, role="web")
    server = TestServer(app, host="127.0.0.1", port=bridge_setup.settings.port)
    await server.start_server()
    try:
        yield bridge_setup
    finally:
        await server.close()


def update_body(bridge: RunningBridge, profile: int = 424242) -> bytes:
    return urlencode([
        ("type", "update"), ("profile", str(profile)), ("database", bridge.tenant.copernica_database),
        ("timestamp", "2026-01-01 12:00:00"), ("time", "1767265200"),
        ("fields[Title]", "Changed"),
    ]).encode()


async def stored(bridge: RunningBridge) -> tuple[int, int]:
    """(jobs, remembered deliveries) of the tenant."""
    async with bridge.pool.acquire() as conn:
        jobs = await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant_id = $1", bridge.tenant.id)
        seen = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1", bridge.tenant.id
        )
    return jobs, seen


async def test_replays_strangers_and_deep_bodies_are_refused_and_store_nothing(
    web_only: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = web_only
    url = webhook_url(bridge.settings.public_url, bridge.tenant.hook_token)
    signer = bridge.copernica.state.signer
    account = f"account-{bridge.copernica.state.settings.account_id}"
    body = update_body(bridge)
    caplog.set_level(logging.WARNING, logger="bridge.web.hooks")

    async def post(headers: dict[str, str], payload: bytes) -> int:
        async with aiohttp.ClientSession() as http, http.post(
            url, data=payload, headers=headers
        ) as reply:
            await reply.read()
            return reply.status

    genuine = signer.headers_for(url, body, account)
    assert await post(genuine, body) == 200
    assert await stored(bridge) == (1, 1)

    assert await post(genuine, body) == 409  # the same delivery again: a replay
    evil_host = signer.headers_for(url.replace("127.0.0.1", "bridge.evil.example"), body, account)
    assert await post(evil_host, body) == 401
    stranger = signer.headers_for(url, body, "account-999")
    assert await post(stranger, body) == 401
    deep = json.dumps({"type": "update", "profile": 1, "database": 1, "fields": {"a": [[[[[[[[[[
        [[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]}}).encode()
    deep_headers = signer.headers_for(url, deep, account, content_type="application/json")
    assert await post(deep_headers, deep) == 400
    very_deep = b'{"fields":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    very_deep_headers = signer.headers_for(url, very_deep, account, content_type="application/json")
    assert await post(very_deep_headers, very_deep) == 400
    assert await stored(bridge) == (1, 1)  # nothing more stored

    fresh = signer.headers_for(url, body, account)  # signed anew: not a replay
    assert await post(fresh, body) == 200
    assert (await stored(bridge))[1] == 2

    [first] = [r.getMessage() for r in caplog.records if "first refused" in r.getMessage()]
    assert "409" in first and "header shape" in first
    assert genuine["Signature"].split('signature="')[1][:16] not in first
    assert genuine["Digest"].split("=", 1)[1][:16] not in first


DELIVERIES = 40  # of each kind


async def test_deliveries_for_another_database_are_answered_remembered_and_store_no_job(
    web_only: RunningBridge,
) -> None:
    bridge = web_only
    url = webhook_url(bridge.settings.public_url, bridge.tenant.hook_token)
    signer = bridge.copernica.state.signer
    account = f"account-{bridge.copernica.state.settings.account_id}"
    ours = update_body(bridge)
    others = ours.replace(
        f"database={bridge.tenant.copernica_database}".encode(), b"database=999999"
    )
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> tuple[int, dict[str, str]]:
            headers = signer.headers_for(url, body, account)
            async with http.post(url, data=body, headers=headers) as reply:
                return reply.status, await reply.json()

        # many, mixed: PostgreSQL may plan a statement once for all after its first runs
        for number in range(1, DELIVERIES + 1):
            assert await post(ours) == (200, {"status": "stored"})
            assert await post(others) == (200, {"status": "ignored"})
            # one job (the changes of one profile merge), every delivery remembered
            assert await stored(bridge) == (1, 2 * number)


async def test_deliveries_at_once_are_each_answered_and_a_replay_among_them_refused(
    web_only: RunningBridge,
) -> None:
    """Deliveries that come together share their round trips to PostgreSQL: each still gets its
    own answer, its own job and its own remembered key, and of a delivery sent twice at once
    exactly one is taken."""
    bridge = web_only
    url = webhook_url(bridge.settings.public_url, bridge.tenant.hook_token)
    signer = bridge.copernica.state.signer
    account = f"account-{bridge.copernica.state.settings.account_id}"
    bodies = [update_body(bridge, profile=500_000 + n) for n in range(DELIVERIES)]
    signed = [(body, signer.headers_for(url, body, account)) for body in bodies]
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes, headers: dict[str, str]) -> int:
            async with http.post(url, data=body, headers=headers) as reply:
                await reply.read()
                return reply.status

        answers = await asyncio.gather(*(post(b, h) for b, h in [signed[0], *signed]))
    assert sorted(answers[:2]) == [200, 409]  # the same delivery twice: one replay
    assert answers[2:] == [200] * (DELIVERIES - 1)
    assert await stored(bridge) == (DELIVERIES, DELIVERIES)
    async with bridge.pool.acquire() as conn:
        keys = await conn.fetch("SELECT key FROM jobs WHERE tenant_id = $1", bridge.tenant.id)
    assert sorted(r["key"] for r in keys) == sorted(f"cp:{500_000 + n}" for n in range(DELIVERIES))


async def test_a_change_of_the_tenants_settings_holds_from_the_next_delivery_on(
    web_only: RunningBridge,
) -> None:
    """The endpoint keeps the tenant it read; a change saved meanwhile (by any process) is
    still obeyed by the very next delivery: the direction switched to Salesforce → Copernica
    stores no job, and a new Copernica account's signature is taken, the old one's refused."""
    bridge = web_only
    url = webhook_url(bridge.settings.public_url, bridge.tenant.hook_token)
    signer = bridge.copernica.state.signer
    account = f"account-{bridge.copernica.state.settings.account_id}"
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes, signed_for: str) -> tuple[int, dict[str, str]]:
            headers = signer.headers_for(url, body, signed_for)
            async with http.post(url, data=body, headers=headers) as reply:
                return reply.status, await reply.json()

        async def change(column: str, value: str) -> None:
            async with bridge.pool.acquire() as conn:
                await conn.execute(
                    f"UPDATE tenants SET {column} = $2 WHERE id = $1", bridge.tenant.id, value
                )

        assert await post(update_body(bridge, profile=1), account) == (200, {"status": "stored"})
        await change("direction", "sf_to_cp")
        assert await post(update_body(bridge, profile=2), account) == (200, {"status": "ignored"})
        assert await stored(bridge) == (1, 2)
        await change("direction", "both")
        await change("copernica_account", "777")
        assert (await post(update_body(bridge, profile=3), account))[0] == 401
        assert await post(update_body(bridge, profile=4), "account-777") == (
            200, {"status": "stored"}
        )
    assert await stored(bridge) == (2, 3)
