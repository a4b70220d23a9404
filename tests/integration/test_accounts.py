"""Accounts against PostgreSQL: sessions, reset tokens, throttling; mail through a real SMTP sink."""

from __future__ import annotations

import dataclasses
import secrets

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Settings
from bridge.db import QUERIES
from bridge.mail import MailNotConfigured, send_mail
from bridge.security import sessions, throttle
from bridge.tenants import create_user
from bridge.web.pages import setup_templates
from sandbox.mail import mail_sink, show_mail


async def _user(pool, tenant) -> int:
    return await create_user(pool, tenant.slug, f"u-{secrets.token_hex(4)}@x.example",
                             "long-enough-password")


async def test_sessions_open_find_and_revoke(pool, tenant):
    user_id = await _user(pool, tenant)
    async with pool.acquire() as conn:
        value = await sessions.open_session(conn, user_id, tenant.id)
        found = await sessions.find_session(conn, value)
        assert found.user_id == user_id and found.tenant_id == tenant.id
        stored = await conn.fetchval("SELECT id_hash FROM sessions WHERE user_id = $1", user_id)
        assert stored == sessions.digest(value) and value not in stored
        other = await sessions.open_session(conn, user_id, tenant.id)
        await sessions.revoke_others(conn, user_id, found.id_hash)
        assert await sessions.find_session(conn, other) is None
        assert await sessions.find_session(conn, value) is not None
        await sessions.revoke(conn, found.id_hash)
        assert await sessions.find_session(conn, value) is None
        expired = await sessions.open_session(conn, user_id, tenant.id, lifetime=-1)
        assert await sessions.find_session(conn, expired) is None
        assert await sessions.find_session(conn, "") is None


async def test_a_reset_token_is_used_once_and_expires(pool, tenant):
    user_id = await _user(pool, tenant)
    async with pool.acquire() as conn:
        await conn.execute(QUERIES["create_password_reset"], "h1", user_id, 3600.0)
        await conn.execute(QUERIES["create_password_reset"], "h2", user_id, -1.0)
        assert await conn.fetchval(QUERIES["use_password_reset"], "h1") == user_id
        assert await conn.fetchval(QUERIES["use_password_reset"], "h1") is None
        assert await conn.fetchval(QUERIES["use_password_reset"], "h2") is None


async def test_an_attempt_is_counted_before_its_password_is_checked(pool):
    email = f"t-{secrets.token_hex(4)}@x.example"
    async with pool.acquire() as conn:
        for _ in range(throttle.FREE_PAIR):
            assert (await throttle.attempt(conn, email, "10.0.0.1")).allowed
        refused = await throttle.attempt(conn, email.upper(), "10.0.0.1")
        assert not refused.allowed and 0 < refused.retry_after <= 1
        assert (await throttle.attempt(conn, email, "10.0.0.2")).allowed  # another client
        await throttle.succeeded(conn, email, "10.0.0.1")
        assert (await throttle.attempt(conn, email, "10.0.0.1")).allowed


async def test_mail_reaches_the_sink_and_the_demo_page_lists_it():
    async with mail_sink() as sink:
        settings = dataclasses.replace(Settings(), smtp_url=sink.url, mail_from="bridge@x.example")
        await send_mail(settings, "someone@x.example", "Hello", "line one\nline two\n")
        mail = await sink.wait_for("someone@x.example")
        assert mail.subject == "Hello" and "line two" in mail.body
        assert mail.sender == "bridge@x.example"

        app = web.Application()
        setup_templates(app)
        show_mail(app, sink)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/demo/mail", allow_redirects=False)
            assert response.status == 303  # reset links are for the demo login's eyes only
            assert response.headers["Location"] == "/login?next=/demo/mail"


async def test_without_smtp_url_mail_is_refused_clearly():
    try:
        await send_mail(Settings(), "a@x.example", "s", "b")
    except MailNotConfigured as exc:
        assert "SMTP_URL" in str(exc)
    else:
        raise AssertionError("expected MailNotConfigured")
