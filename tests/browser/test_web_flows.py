"""Every flow of the pages in a real Chromium, against the running bridge and both sandboxes."""

from __future__ import annotations

import asyncio
import re
import secrets

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.sync import reports
from bridge.sync.jobs import Failure, JobQueue
from bridge.vocabulary import webhook_url
from tests.fixtures.bridge import PASSWORD, free_port, password_hash

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


async def login(page, bridge, path: str = "/sfcp", password: str = PASSWORD,
                email: str | None = None) -> None:
    await page.goto(f"{bridge.url}{path}")
    await page.get_by_label("E-mail address").fill(email or bridge.email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Login").click()


async def user_of_role(bridge, role: str) -> str:
    """Another login of the bridge's tenant (password PASSWORD)."""
    email = f"{role}-{secrets.token_hex(4)}@acme.example"
    async with bridge.pool.acquire() as conn:
        await conn.execute(QUERIES["create_user"], bridge.tenant.id, email, password_hash(), role)
    return email


async def flash(page) -> str:
    """The answer to the form just used (``#outcome-<section>``, or ``#outcome`` at the top)."""
    return await page.locator('[id^="outcome"]').inner_text()


async def test_login_with_the_keyboard_after_a_wrong_password(page, web_bridge):
    await page.goto(f"{web_bridge.url}/sfcp")
    assert await page.locator("h1").inner_text() == "Login"
    await page.get_by_label("E-mail address").fill(web_bridge.email)
    await page.get_by_label("Password").fill("not the password")
    await page.keyboard.press("Enter")
    assert "Wrong e-mail address or password" in await page.get_by_role("alert").inner_text()
    await page.get_by_label("Password").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{web_bridge.url}/sfcp")
    await page.get_by_role("button", name="Sync manually").wait_for()
    await page.get_by_role("button", name="Logout").click()
    assert "You have been logged out" in await flash(page)


async def test_password_reset_by_email_read_from_the_sink(page, web_bridge):
    await page.goto(f"{web_bridge.url}/login")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("E-mail address").fill(web_bridge.email)
    await page.get_by_role("button", name="Send reset link").click()
    assert "If an account exists for that address" in await page.get_by_role("status").inner_text()
    await web_bridge.sink.wait_for(web_bridge.email)
    await page.goto(f"{web_bridge.url}/demo/mail")  # the demo's mail page needs a login
    assert await page.locator("h1").inner_text() == "Login"
    await login(page, web_bridge, "/demo/mail")  # as the demo login, who reads every message
    text = await page.locator("article.mail").first.inner_text()
    await page.get_by_role("button", name="Logout").click()
    link = re.search(r"(http://\S+/password-reset/\S+)", text).group(1)
    await page.goto(link)
    await page.get_by_label("New password (at least 10 characters)").fill("my-new-password-1")
    await page.get_by_label("Repeat the new password").fill("my-new-password-1")
    await page.get_by_role("button", name="Change password").click()
    assert "Your password has been changed" in await flash(page)
    await login(page, web_bridge, password="my-new-password-1")
    await page.get_by_role("button", name="Sync manually").wait_for()
    await page.goto(link)  # the token worked once
    assert "expired or has been used" in await page.get_by_role("alert").inner_text()


async def test_config_save_and_test_connection(page, web_bridge):
    await login(page, web_bridge, "/config")
    await page.wait_for_url(f"{web_bridge.url}/config")
    assert await page.get_by_label(re.compile("^Copernica API token")).input_value() == ""
    assert await page.get_by_label(re.compile("^Salesforce password")).input_value() == ""
    assert await page.locator("#copernica .saved").count() == 1
    database = await page.get_by_label("Copernica database name").input_value()
    assert database == web_bridge.tenant.copernica_database

    await page.get_by_role("button", name="Save Copernica settings").click()
    assert "Copernica webhook registered" in await flash(page)
    hooks = await web_bridge.copernica.admin("GET", "webhooks")
    url = webhook_url(web_bridge.settings.public_url, web_bridge.tenant.hook_token)
    assert sorted(h["trigger"] for h in hooks["data"] if h["handler"] == url) == [
        "create", "delete", "update"]
    await page.get_by_role("button", name="Save Copernica settings").click()
    assert "Copernica webhook checked" in await flash(page)
    assert (await web_bridge.copernica.admin("GET", "webhooks"))["count"] == 3

    await page.get_by_role("button", name="Test Copernica connection").click()
    assert "Copernica connection works: 1 database found" in await flash(page)
    await page.get_by_role("button", name="Test Salesforce connection").click()
    assert "Salesforce connection works" in await flash(page)

    key = page.get_by_label("Consumer key (External Client App)")
    await key.fill("someone-elses-app")
    await page.get_by_role("button", name="Save Salesforce settings").click()
    message = await flash(page)  # tested before saving: the working access stays
    assert "do not work" in message and "The saved access stays in use" in message, message
    assert await key.input_value() == "someone-elses-app"  # what was typed is kept
    await page.get_by_role("button", name="Test Salesforce connection").click()
    assert "Salesforce connection works" in await flash(page)
    await key.fill("someone-elses-app")
    await page.get_by_role("button", name="Save Salesforce settings").click()
    await page.get_by_role("checkbox", name=re.compile("Save anyway")).check()  # explicit
    await page.get_by_role("button", name="Save Salesforce settings").click()
    assert "saved as you asked, although the test failed" in await flash(page)
    await page.get_by_role("button", name="Test Salesforce connection").click()
    message = await flash(page)
    assert message.startswith("Salesforce connection failed:"), message
    await key.fill(web_bridge.salesforce.settings.client_id)
    await page.get_by_role("button", name="Save Salesforce settings").click()
    assert "Salesforce access tested and saved" in await flash(page)
    await page.get_by_role("button", name="Test Salesforce connection").click()
    assert "Salesforce connection works" in await flash(page)

    await page.get_by_label("Copernica to Salesforce").check()
    await page.locator("#sync").get_by_label("Yes").first.check()
    await page.get_by_role("button", name="Save sync settings").click()
    assert "Sync settings saved" in await flash(page)
    tenant = await web_bridge.reload_tenant()
    assert tenant.direction == "cp_to_sf" and tenant.apply_deletes
    await page.goto(f"{web_bridge.url}/sfcp")
    assert "cannot be managed from here" in await page.locator("main").inner_text()


async def test_a_user_changes_its_own_password_on_the_account_page(page, web_bridge):
    email = await user_of_role(web_bridge, "user")
    await login(page, web_bridge, "/account", email=email)
    await page.wait_for_url(f"{web_bridge.url}/account")
    assert "this session" in await page.locator("#sessions").inner_text()
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password (at least 10 characters)").fill("short")
    await page.get_by_label("Repeat the new password").fill("short")
    await page.locator("#password form").evaluate("f => f.noValidate = true")
    await page.get_by_role("button", name="Change password").click()
    assert "at least 10 characters" in await flash(page)
    assert await page.get_by_label("Current password").input_value() == ""  # never kept
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password (at least 10 characters)").fill("changed-password-1")
    await page.get_by_label("Repeat the new password").fill("changed-password-1")
    await page.get_by_role("button", name="Change password").click()
    assert "Your password has been changed" in await flash(page)
    await page.get_by_role("button", name="Sign out everywhere").click()
    assert "signed out everywhere" in await flash(page)
    await login(page, web_bridge, "/account", email=email, password="changed-password-1")
    await page.wait_for_url(f"{web_bridge.url}/account")
    await page.goto(f"{web_bridge.url}/config")  # admins only: a page in the site's layout
    assert await page.locator("h1").inner_text() == "Not allowed"
    assert "Only an administrator" in await page.get_by_role("alert").inner_text()
    assert await page.get_by_role("navigation").get_by_role("link", name="Account").count() == 1


async def test_create_and_delete_a_database(page, web_bridge):
    await login(page, web_bridge)
    await page.get_by_label("Database name").fill("Webinar leads")
    for name in ("FirstName", "LastName", "Email", "Id"):
        assert await page.get_by_label(name, exact=True).is_checked()
    await page.get_by_role("button", name="Create database").click()
    message = await flash(page)
    assert "Database Webinar leads created with 4 fields" in message and "SalesforceId" in message
    async with CopernicaClient.for_sandbox(web_bridge.copernica.url) as client:
        databases = {d.name: d async for d in client.databases()}
        fields = {f.name: f.type async for f in client.fields(databases["Webinar leads"].id)}
    assert fields == {"FirstName": "text", "LastName": "text", "Email": "email",
                      "SalesforceId": "text"}

    await page.get_by_label("Database", exact=True).select_option(label="Webinar leads")
    await page.get_by_role("button", name="Delete database…").click()
    assert "Delete database Webinar leads?" in await page.locator("h1").inner_text()
    await page.get_by_role("button", name="Yes, delete Webinar leads").click()
    message = await flash(page)
    assert "archived instead" in message
    async with CopernicaClient.for_sandbox(web_bridge.copernica.url) as client:
        assert (await client.database(databases["Webinar leads"].id)).archived
    options = await page.get_by_label("Database", exact=True).locator("option").all_inner_texts()
    assert "Webinar leads" not in options


async def test_send_an_emailing_and_see_its_statistics(page, web_bridge):
    await login(page, web_bridge)
    content = page.get_by_label("Template or document")
    labels = await content.locator("option").all_inner_texts()
    assert len(labels) >= 3  # the sandbox's drag-and-drop template and Publisher document
    await content.select_option(index=1)
    target = page.get_by_label("Send to")
    assert (await target.locator("option").first.inner_text()).startswith("Database: ")
    await page.get_by_role("button", name="Send emailing").click()
    heading = await page.locator("h1").inner_text()  # nothing goes out before a confirmation
    assert re.fullmatch(r"Send .+ to \d+ profiles?\?", heading), heading
    assert "of the database" in await page.locator("main").inner_text()
    assert await page.locator("#emailings table tbody tr").count() == 0
    await page.get_by_role("button", name=re.compile(r"^Yes, send to \d+ profile")).click()
    message = await flash(page)
    assert re.search(r"Emailing \d+ sent: .+ to .+, \d+ destinations?\.", message), message
    row = page.locator("#emailings table tbody tr").first
    assert "statistics not available" not in await row.inner_text()


async def test_sync_manually_moves_the_status_bar_to_done(page, web_bridge):
    await login(page, web_bridge)
    await page.get_by_role("button", name="Sync manually").click()
    assert "Your request has been added to the queue" in await flash(page)
    await page.locator('#run-state[data-state="done"]').wait_for(timeout=45_000)
    assert "manual" in await page.locator("#run-state").inner_text()
    assert await page.locator("#last-success").inner_text() != "never"


async def test_terminate_session(page, web_bridge):
    await login(page, web_bridge)
    await page.get_by_role("button", name="Terminate session").click()
    assert "Your session has been terminated" in await flash(page)
    assert await page.locator("h1").inner_text() == "Login"
    await page.goto(f"{web_bridge.url}/sfcp")
    assert await page.locator("h1").inner_text() == "Login"


async def test_requeue_an_error_report(page, web_bridge):
    queue = JobQueue(web_bridge.pool)
    tenant_id = web_bridge.tenant.id
    job_id = await queue.enqueue(tenant_id, "ui-test", "contact-1", {})
    [job] = await queue.claim("ui-test", tenant_id=tenant_id)
    await queue.fail(job, Failure("LastName is required", "mapping", permanent=True))
    async with web_bridge.pool.acquire() as conn:
        report_id = await reports.record_error(
            conn, tenant_id, category="mapping", operation="update", direction="cp_to_sf",
            record_id="contact-1", message="LastName is required", job_id=job_id,
        )
    await login(page, web_bridge)
    await page.get_by_role("button", name=f"Requeue error report {report_id}").click()
    assert f"The job of error report {report_id} was requeued" in await flash(page)
    assert await page.locator(f"#error-{report_id} .report-status").inner_text() == "requeued"
    async with web_bridge.pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM jobs WHERE id = $1", job_id) == "waiting"


async def test_dashboard_shows_chart_usage_held_jobs_and_stream(page, web_bridge):
    async with web_bridge.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO audit_log (tenant_id, at, direction, action, outcome) "
            "SELECT $1, now() - make_interval(hours => g % 5), "
            "CASE WHEN g % 2 = 0 THEN 'sf_to_cp' ELSE 'cp_to_sf' END, 'update', 'ok' "
            "FROM generate_series(1, 9) g", web_bridge.tenant.id)
    await login(page, web_bridge, "/dashboard")
    await page.wait_for_url(f"{web_bridge.url}/dashboard")
    assert await page.locator("svg.chart rect.bar").count() >= 2
    legend = await page.locator("p.legend").inner_text()
    assert "Salesforce → Copernica: 4" in legend and "Copernica → Salesforce: 5" in legend
    assert "API usage today" in await page.locator("main").inner_text()


async def _framing_site(bridge, port: int) -> TestServer:
    """A page on another origin that frames the tab, as Salesforce does."""
    async def outer(_: web.Request) -> web.Response:
        return web.Response(
            text=f'<!doctype html><title>Salesforce</title><h1>Salesforce</h1>'
            f'<iframe id="tab" src="{bridge.url}/sfcp" width="1000" height="800"></iframe>',
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/", outer)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def test_the_tab_works_inside_an_iframe_of_another_origin(page, web_bridge):
    """The session cookie (SameSite=None; Secure; Partitioned) and the CSP frame-ancestors let
    the tab work when framed by another site, as Salesforce frames it."""
    server = await _framing_site(web_bridge, web_bridge.frame_port)
    try:
        await page.goto(f"{web_bridge.frame_origin}/")
        frame = page.frame_locator("#tab")
        await frame.get_by_label("E-mail address").fill(web_bridge.email)
        await frame.get_by_label("Password").fill(PASSWORD)
        await frame.get_by_role("button", name="Login").click()
        await frame.get_by_role("button", name="Sync manually").click()
        assert "Your request has been added to the queue" in (
            await frame.locator("p.flash").first.inner_text()
        )
    finally:
        await server.close()


async def test_a_site_not_in_frame_ancestors_cannot_frame_the_tab(page, web_bridge):
    server = await _framing_site(web_bridge, free_port())
    try:
        await page.goto(str(server.make_url("/")).replace("127.0.0.1", "localhost"))
        await page.wait_for_load_state("load")
        await asyncio.sleep(0.5)
        assert await page.frame_locator("#tab").get_by_label("E-mail address").count() == 0
    finally:
        await server.close()


async def test_every_page_fits_the_tab_and_every_field_has_a_label(page, web_bridge):
    await login(page, web_bridge)
    for path in ("/sfcp", "/config", "/dashboard", "/password-reset"):
        await page.goto(f"{web_bridge.url}{path}")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1000, (path, width)
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                 .filter(e => e.type !== 'hidden')
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                 .map(e => e.name)"""
        )
        assert unlabelled == [], (path, unlabelled)
