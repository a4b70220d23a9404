"""Security of the pages through real HTTP: CSRF, tenant isolation, reset tokens, throttling,
no credential in any page or log line, a new session id at login, cookies and CSP."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from yarl import URL

from bridge.db import QUERIES
from bridge.security import throttle
from bridge.security.sessions import COOKIE
from bridge.sync import reports, runs
from bridge.sync.jobs import Failure, JobQueue
from bridge.tenants import load_salesforce_credentials, save_credentials
from bridge.web.keys import VAULT
from tests.fixtures.bridge import PASSWORD
from tests.fixtures.browser import WebUser

pytestmark = pytest.mark.timeout(60)


async def test_login_lands_on_the_tab_and_pages_render(web_bridge, web_user):
    status, text = await web_user.login(web_bridge.email)
    assert status == 200, text
    assert "Sync manually" in text and "Terminate session" in text
    for path in ("/config", "/dashboard", "/sfcp/status.json"):
        status, text = await web_user.get(path)
        assert status == 200, (path, text)


async def test_a_form_post_without_a_valid_csrf_token_is_refused(web_bridge, web_user):
    await web_user.get("/login")
    status, _ = await web_user.post(
        "/login", {"email": web_bridge.email, "password": PASSWORD}, token="forged"
    )
    assert status == 403
    assert web_user.cookie(COOKIE) is None
    await web_user.login(web_bridge.email)
    async with web_bridge.pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM sync_runs WHERE tenant_id = $1",
                                     web_bridge.tenant.id)
    for token in ("", "wrong"):
        status, _ = await web_user.post("/sfcp/sync", token=token)
        assert status == 403
    async with web_user.http.post(f"{web_bridge.url}/sfcp/sync") as response:  # no token at all
        assert response.status == 403
    async with web_bridge.pool.acquire() as conn:
        after = await conn.fetchval("SELECT count(*) FROM sync_runs WHERE tenant_id = $1",
                                    web_bridge.tenant.id)
    assert after == before
    status, _ = await web_user.post("/sfcp/sync")
    assert status == 200


async def test_another_tenants_user_gets_404_for_every_page_and_action(web_bridge, web_user):
    tenant_a = web_bridge.tenant
    queue = JobQueue(web_bridge.pool)
    run_id = await runs.request_sync(queue, tenant_a.id, "manual", "a")
    job_id = await queue.enqueue(tenant_a.id, "apply", "rec-1", {})
    [job] = await queue.claim("apply", tenant_id=tenant_a.id)
    assert await queue.fail(job, Failure("boom", "validation", permanent=True)) == "held"
    async with web_bridge.pool.acquire() as conn:
        report_id = await reports.record_error(
            conn, tenant_a.id, category="validation", operation="update", message="boom",
            job_id=job_id,
        )
    _, email_b = await web_bridge.second_tenant()
    await web_user.login(email_b)
    status, _ = await web_user.get(f"/sfcp/runs/{run_id}.json")
    assert status == 404
    status, _ = await web_user.post(f"/sfcp/errors/{report_id}/requeue")
    assert status == 404
    status, text = await web_user.get("/sfcp")
    assert status == 200 and "boom" not in text
    status, text = await web_user.get("/sfcp/status.json")
    assert '"held_jobs": 0' in text.replace(": 0,", ": 0,")
    async with web_bridge.pool.acquire() as conn:
        state = await conn.fetchval("SELECT state FROM jobs WHERE id = $1", job_id)
    assert state == "held"
    # the owner can
    owner = WebUser(web_bridge.url)
    try:
        await owner.login(web_bridge.email)
        status, _ = await owner.get(f"/sfcp/runs/{run_id}.json")
        assert status == 200
    finally:
        await owner.close()


async def test_a_reset_token_works_once_and_the_answer_does_not_tell_who_exists(
    web_bridge, web_user
):
    await web_user.get("/password-reset")
    _, known = await web_user.post("/password-reset", {"email": web_bridge.email})
    await web_user.get("/password-reset")
    _, unknown = await web_user.post("/password-reset", {"email": "nobody@nowhere.example"})
    assert _strip(known) == _strip(unknown)
    mail = await web_bridge.sink.wait_for(web_bridge.email)
    link = re.search(r"(http://\S+/password-reset/\S+)", mail.body).group(1)
    path = link.removeprefix(web_bridge.url)
    assert all(web_bridge.email not in m.recipients for m in web_bridge.sink.messages[:-1])
    assert not any("nobody@" in r for m in web_bridge.sink.messages for r in m.recipients)
    status, _ = await web_user.get(path)
    assert status == 200
    new = "a-brand-new-password"
    status, text = await web_user.post(path, {"new_password": new, "repeat_password": new})
    assert status == 200 and "Your password has been changed" in text
    await web_user.get(path)
    status, text = await web_user.post(path, {"new_password": "another-password-1",
                                              "repeat_password": "another-password-1"})
    assert status == 404 and "expired or has been used" in text
    status, text = await web_user.login(web_bridge.email, new)
    assert status == 200 and "Sync manually" in text


def _strip(page: str) -> str:
    return CSRF_VALUE.sub("", page)


CSRF_VALUE = re.compile(r'value="[A-Za-z0-9_-]{40,}"')


async def test_throttling_starts_after_repeated_failures(web_bridge, web_user):
    for _ in range(throttle.FREE_PAIR):
        status, text = await web_user.login(web_bridge.email, "wrong-password")
        assert status == 401 and "Wrong e-mail address or password" in text
    async with web_bridge.pool.acquire() as conn:  # a few more: the wait outlasts any slow check
        for _ in range(4):
            await conn.execute(QUERIES["record_login_attempt"], web_bridge.email, "127.0.0.1")
    status, text = await web_user.login(web_bridge.email, PASSWORD)  # even the right one waits
    assert status == 429 and "Too many failed attempts" in text
    assert web_user.cookie(COOKIE) is None


async def test_the_session_id_changes_at_login_and_logout_revokes_it(web_bridge, web_user):
    await web_user.login(web_bridge.email)
    first = web_user.cookie(COOKIE)
    assert first
    await web_user.login(web_bridge.email)
    second = web_user.cookie(COOKIE)
    assert second and second != first
    async with web_bridge.pool.acquire() as conn:
        revoked = await conn.fetchval(
            "SELECT revoked_at IS NOT NULL FROM sessions WHERE id_hash = encode(sha256($1::bytea), 'hex')",
            first.encode(),
        )
    assert revoked
    stale = WebUser(web_bridge.url)
    try:
        stale.http.cookie_jar.update_cookies({COOKIE: first}, response_url=URL(web_bridge.url))
        status, text = await stale.get("/sfcp")
        assert "Login" in text and "Sync manually" not in text
    finally:
        await stale.close()
    await web_user.post("/logout")
    status, text = await web_user.get("/sfcp")
    assert "Sync manually" not in text


async def test_no_credential_value_appears_in_any_page_or_log_line(web_bridge, web_user, caplog):
    sf = web_bridge.salesforce.settings
    api_token = web_bridge.copernica.state.settings.api_token
    secrets_ = [sf.password, sf.security_token, sf.client_secret, api_token, PASSWORD]
    caplog.set_level(logging.DEBUG)
    pages = []
    await web_user.login(web_bridge.email)
    for path in ("/config", "/sfcp", "/dashboard", "/sfcp/status.json"):
        pages.append((await web_user.get(path))[1])
    pages.append((await web_user.post("/config/test/copernica"))[1])
    pages.append((await web_user.post("/config/test/salesforce"))[1])
    pages.append((await web_user.post("/config/copernica", {"api_token": "", "hostname":
                                                            web_bridge.copernica.url}))[1])
    pages.append((await web_user.post("/config/salesforce", {
        "method": "client_credentials", "login_url": web_bridge.salesforce.url,
        "consumer_key": sf.client_id}))[1])
    await web_user.login(web_bridge.email, "wrong " + PASSWORD)
    for text in pages:
        for secret in secrets_:
            assert secret not in text
    assert "saved" in pages[0]
    for record in caplog.records:
        line = record.getMessage()
        for secret in secrets_:
            assert secret not in line, line


async def test_cookies_and_frame_ancestors(web_bridge, web_user):
    async with web_user.http.get(f"{web_bridge.url}/login") as response:
        csp = response.headers["Content-Security-Policy"]
        cookie = response.headers.getall("Set-Cookie")
    for domain in ("https://*.force.com", "https://*.salesforce.com",
                   "https://*.lightning.force.com", "https://*.visualforce.com"):
        assert domain in csp
    assert "frame-ancestors 'self'" in csp and web_bridge.frame_origin in csp
    assert "X-Frame-Options" not in response.headers
    joined = "; ".join(cookie).lower()
    for attribute in ("httponly", "secure", "samesite=none", "partitioned"):
        assert attribute in joined


async def test_a_logged_in_users_pages_may_be_framed_by_their_own_org_only(web_bridge, web_user):
    async with web_bridge.pool.acquire() as conn:
        credentials = await load_salesforce_credentials(conn, web_bridge.app[VAULT], web_bridge.tenant.id)
        await save_credentials(conn, web_bridge.app[VAULT], web_bridge.tenant.id, dataclasses.replace(
            credentials, login_url="https://acme--uat.sandbox.my.salesforce.com"))
    await web_user.login(web_bridge.email)
    async with web_user.http.get(f"{web_bridge.url}/sfcp") as response:
        assert response.status == 200
        frame = response.headers["Content-Security-Policy"].split("frame-ancestors ")[1]
    assert frame.split() == [
        "'self'", "https://acme--uat.sandbox.lightning.force.com",
        "https://acme--uat.sandbox.my.salesforce.com", "https://acme--uat--c.sandbox.vf.force.com",
        web_bridge.frame_origin,
    ]


async def test_unknown_sessions_and_json_need_login(web_bridge, web_user):
    status, text = await web_user.get("/config")
    assert status == 200 and "<h1>Login</h1>" in text
    async with web_user.http.get(f"{web_bridge.url}/sfcp/status.json") as response:
        assert response.status == 401


async def test_login_failures_are_forgotten_after_the_window(web_bridge):
    async with web_bridge.pool.acquire() as conn:
        for _ in range(throttle.FREE_PAIR + 5):
            await conn.execute(QUERIES["record_login_attempt"], "Old@Example.com", "1.2.3.4")
        await conn.execute(
            "UPDATE login_failures SET at = at - make_interval(secs => $1) WHERE email = $2",
            throttle.WINDOW + 1, "old@example.com",
        )
        verdict = await throttle.attempt(conn, "old@example.com", "1.2.3.4")
    assert verdict.allowed


async def test_403_and_404_are_pages_in_the_layout_for_browsers_and_plain_for_machines(
    web_bridge, web_user
):
    html = {"Accept": "text/html,application/xhtml+xml"}
    email = f"user-{web_bridge.tenant.slug}@acme.example"
    async with web_bridge.pool.acquire() as conn:
        await conn.execute(QUERIES["create_user"], web_bridge.tenant.id, email,
                           (await conn.fetchval("SELECT password_hash FROM users WHERE email = $1",
                                                web_bridge.email)), "user")
    status, text = await web_user.get("/no/such/page", headers=html)
    assert status == 404 and "<h1 id=\"error-h\">Page not found</h1>" in text
    assert '<a href="/login">Log in</a>' in text
    status, text = await web_user.get("/no/such/page")  # not asking for HTML: plain
    assert status == 404 and "<html" not in text
    await web_user.login(email)
    status, text = await web_user.get("/config", headers=html)
    assert status == 403 and "Only an administrator of this account may do this." in text
    assert 'href="/account"' in text and 'href="/static/app.css' in text  # the site's layout
    async with web_user.http.get(f"{web_bridge.url}/sfcp/runs/999999.json",
                                 headers=html) as response:
        assert response.status == 404 and response.content_type != "text/html"
    async with web_user.http.post(f"{web_bridge.url}/sfcp/sync", headers=html) as response:
        text = await response.text()  # no CSRF token: refused, and said in the layout
        assert response.status == 403 and "This form has expired" in text and "<nav" in text
