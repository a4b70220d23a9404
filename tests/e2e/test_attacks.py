"""The pages attacked as an attacker would, over real HTTP against the running app: parallel and
serial password guessing, spraying, locking a victim out, open redirects, old reset links and
sessions, the metrics endpoint."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import math
import re
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from bridge.app import create_app
from bridge.db import QUERIES
from bridge.security import throttle
from bridge.security.sessions import COOKIE
from tests.fixtures.bridge import PASSWORD
from tests.fixtures.browser import WebUser

pytestmark = pytest.mark.timeout(90)


async def _guess(user: WebUser, email: str, password: str, client: str | None = None) -> int:
    headers = {"X-Forwarded-For": client} if client else {}
    form = {"email": email, "password": password, "next": "/sfcp", "csrf_token": user.last_token}
    async with user.http.post(f"{user.base}/login", data=form, headers=headers,
                              allow_redirects=False) as response:
        await response.read()
        return response.status


async def test_two_hundred_parallel_guesses_get_the_free_tries_only(web_bridge, web_user):
    await web_user.get("/login")
    started = time.monotonic()
    statuses = await asyncio.gather(*(
        _guess(web_user, web_bridge.email, f"wrong-{n}") for n in range(200)
    ))
    elapsed = time.monotonic() - started
    # Counted before the password is checked: the free tries, then one per doubling wait.
    assert throttle.FREE_PAIR <= statuses.count(401) <= throttle.FREE_PAIR + 1 + math.log2(1 + elapsed)
    assert statuses.count(401) + statuses.count(429) == 200
    # Well past the limit (earlier failures make the wait long): the right password among 200
    # parallel guesses gets nowhere.
    async with web_bridge.pool.acquire() as conn:
        for _ in range(10):
            await conn.execute(QUERIES["record_login_attempt"], web_bridge.email, "127.0.0.1")
    guesses = [f"wrong-again-{n}" for n in range(199)]
    guesses.insert(137, PASSWORD)
    statuses = await asyncio.gather(*(_guess(web_user, web_bridge.email, g) for g in guesses))
    assert set(statuses) == {429}
    assert web_user.cookie(COOKIE) is None


async def test_serial_guesses_wait_longer_and_longer(web_bridge, web_user):
    await web_user.get("/login")
    for _ in range(throttle.FREE_PAIR):
        assert await _guess(web_user, web_bridge.email, "wrong") == 401
    waits = []
    while len(waits) < 3:
        async with web_user.http.post(f"{web_user.base}/login", allow_redirects=False, data={
            "email": web_bridge.email, "password": "wrong", "csrf_token": web_user.last_token,
        }) as answer:
            if answer.status == 401:  # a slow password check used up the whole wait: guess on
                continue
            assert answer.status == 429 and "Wait" in await answer.text()
            waits.append(int(answer.headers["Retry-After"]))
        await asyncio.sleep(waits[-1])  # the server said when; the next guess is let through
    assert waits == sorted(waits) and waits[-1] > waits[0]


async def test_a_victim_is_delayed_by_a_minute_at_most_by_other_peoples_failures(
    web_bridge, web_user
):
    await web_user.get("/login")
    for n in range(throttle.FREE_ADDRESS):  # a botnet: every guess from another address
        assert await _guess(web_user, web_bridge.email, "wrong", f"198.51.100.{n}") == 401
    async with web_bridge.pool.acquire() as conn:  # ... and it has been at it for a while
        for n in range(200):
            await conn.execute(QUERIES["record_login_attempt"], web_bridge.email, f"10.9.{n}.1")
    assert await _guess(web_user, web_bridge.email, "wrong", "198.51.100.250") == 429
    async with web_user.http.post(f"{web_user.base}/login", allow_redirects=False, headers={
        "X-Forwarded-For": "203.0.113.7"}, data={
            "email": web_bridge.email, "password": PASSWORD, "csrf_token": web_user.last_token,
    }) as victim:
        if victim.status == 429:
            assert int(victim.headers["Retry-After"]) <= throttle.ADDRESS_CAP + 1
        else:
            assert victim.status == 303


async def test_spraying_one_password_over_many_accounts_is_slowed(web_bridge, web_user):
    await web_user.get("/login")
    statuses = [
        await _guess(web_user, f"user{n}@victims.example", "Summer2026!", "192.0.2.66")
        for n in range(throttle.FREE_CLIENT)
    ]
    assert statuses == [401] * throttle.FREE_CLIENT
    # Then the waits double (a password check slower than the first waits lets one more by).
    assert 429 in [
        await _guess(web_user, f"more{n}@victims.example", "Summer2026!", "192.0.2.66")
        for n in range(4)
    ]
    assert await _guess(web_user, "user0@victims.example", "x", "192.0.2.67") == 401  # others go on


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(web_bridge):
    settings = dataclasses.replace(web_bridge.settings, trusted_proxies=())
    async with TestClient(TestServer(create_app(settings, role="web"))) as client:
        user = WebUser(str(client.make_url("")).rstrip("/"))
        try:
            await user.get("/login")
            statuses = [  # "another client" each time, says the header: one client, really
                await _guess(user, web_bridge.email, "wrong", f"198.51.100.{n}")
                for n in range(throttle.FREE_PAIR + 4)
            ]
            assert 429 in statuses and len(statuses) < throttle.FREE_ADDRESS
        finally:
            await user.close()


HOSTILE_NEXT = [
    "//evil.example", "/\\evil.example", "/\t/evil.example", "/%09/evil.example",
    "/\n/evil.example", "/%0a/evil.example", "/%0d/evil.example", "\\\\evil.example",
    "https://evil.example", "http:evil.example", "/ /evil.example", "/%20/evil.example",
    "javascript:alert(1)", "/\x00/evil.example", "//%2fevil.example", "///evil.example",
    "/.//evil.example/..", "%2f%2fevil.example",
]


def _lands_on(location: str) -> str | None:
    """The host a browser goes to for ``Location: location`` (it drops tabs and newlines and
    reads backslashes as slashes)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return URL("http://bridge.test/login").join(URL(cleaned)).host


async def test_no_next_value_redirects_off_site(web_bridge, web_user):
    await web_user.login(web_bridge.email)
    for target in HOSTILE_NEXT:
        async with web_user.http.get(f"{web_user.base}/login", params={"next": target},
                                     allow_redirects=False) as response:
            assert response.status == 303, target
            assert _lands_on(response.headers["Location"]) == "bridge.test", target
        raw = f"{web_user.base}/login?next={target}"  # sent as typed, not encoded again
        async with web_user.http.get(URL(raw, encoded=True) if "%" in target else raw,
                                     allow_redirects=False) as response:
            if response.status == 303:
                assert _lands_on(response.headers["Location"]) == "bridge.test", target


async def _reset_link(web_bridge, web_user: WebUser) -> str:
    count = len(web_bridge.sink.messages)
    status, _ = await web_user.post("/password-reset", {"email": web_bridge.email})
    assert status == 200

    def arrived() -> bool:
        return len(web_bridge.sink.messages) > count

    async with web_bridge.sink.arrived:
        await asyncio.wait_for(web_bridge.sink.arrived.wait_for(arrived), 10)
    return re.search(r"(/password-reset/\S+)", web_bridge.sink.messages[-1].body).group(1)


async def test_a_reset_ends_older_links_and_every_session(web_bridge, web_user):
    other_device = WebUser(web_bridge.url)
    try:
        await other_device.login(web_bridge.email)
        await web_user.get("/password-reset")
        older = await _reset_link(web_bridge, web_user)
        newer = await _reset_link(web_bridge, web_user)
        assert (await web_user.get(older))[0] == 404  # replaced by the newer one
        status, _ = await web_user.post(newer, {"new_password": "a-new-password-1",
                                                "repeat_password": "a-new-password-1"})
        assert status == 200
        assert "Sync manually" not in (await other_device.get("/sfcp"))[1]
    finally:
        await other_device.close()


async def test_a_password_change_ends_outstanding_reset_links_and_other_sessions(
    web_bridge, web_user
):
    other_device = WebUser(web_bridge.url)
    try:
        await other_device.login(web_bridge.email)
        await web_user.get("/password-reset")
        link = await _reset_link(web_bridge, web_user)
        await web_user.login(web_bridge.email)
        await web_user.get("/config")
        status, text = await web_user.post("/account/password", {
            "current_password": PASSWORD, "new_password": "changed-password-1",
            "repeat_password": "changed-password-1",
        })
        assert status == 200 and "Your password has been changed" in text
        assert (await web_user.get(link))[0] == 404
        assert "Sync manually" not in (await other_device.get("/sfcp"))[1]
        assert "Sync manually" in (await web_user.get("/sfcp"))[1]  # this session stays
    finally:
        await other_device.close()


async def test_guessing_the_current_password_is_throttled_too(web_bridge, web_user):
    await web_user.login(web_bridge.email)
    await web_user.get("/config")
    answers = []
    for n in range(throttle.FREE_PAIR + 4):  # the waits double after the free tries
        _, text = await web_user.post("/account/password", {
            "current_password": f"guess-{n}", "new_password": "changed-password-1",
            "repeat_password": "changed-password-1",
        })
        answers.append("throttled" if "Too many wrong passwords" in text else
                       "wrong" if "The current password is wrong" in text else text)
    assert answers[:throttle.FREE_PAIR] == ["wrong"] * throttle.FREE_PAIR
    assert "throttled" in answers


async def test_metrics_need_the_token_when_one_is_set(web_bridge):
    token = "metrics-token-0123456789"
    settings = dataclasses.replace(web_bridge.settings, metrics_token=token)
    async with TestClient(TestServer(create_app(settings, role="web"))) as client:
        assert (await client.get("/metrics")).status == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert right.status == 200 and "bridge_jobs" in await right.text()
    async with TestClient(TestServer(create_app(web_bridge.settings, role="web"))) as client:
        assert (await client.get("/metrics")).status == 200  # this machine, no token set
        proxied = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status == 403  # came through a proxy: the world, not this machine


async def test_old_password_hashes_are_upgraded_at_login(web_bridge, web_user):
    salt = b"salt-of-16-bytes"
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1)
    weak = f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    async with web_bridge.pool.acquire() as conn:
        await conn.execute("UPDATE users SET password_hash = $1 WHERE email = $2", weak,
                           web_bridge.email)
    status, text = await web_user.login(web_bridge.email)
    assert status == 200 and "Sync manually" in text
    async with web_bridge.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE email = $1",
                                     web_bridge.email)
    assert stored.startswith(f"scrypt${2**17}$8$1$")


async def test_https_pages_tell_browsers_to_stay_on_https(web_bridge):
    async with TestClient(TestServer(create_app(web_bridge.settings, role="web"))) as client:
        assert "Strict-Transport-Security" not in (await client.get("/login")).headers
    settings = dataclasses.replace(web_bridge.settings, public_url="https://bridge.acme.example")
    async with TestClient(TestServer(create_app(settings, role="web"))) as client:
        hsts = (await client.get("/login")).headers["Strict-Transport-Security"]
        assert hsts.startswith("max-age=31536000")
