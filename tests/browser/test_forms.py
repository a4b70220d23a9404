"""Every form answers where the user is looking, and every page fits a 360-px phone.

The forms are enumerated from the pages themselves: a new form whose answer lands out of view
fails here without anyone adding it to a list.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import pytest

from bridge.db import QUERIES
from bridge.sync import reports
from bridge.sync.jobs import Failure, JobQueue
from tests.fixtures.bridge import PASSWORD, password_hash

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PAGES = ("/config", "/sfcp", "/account")
# The answer to a form: in the section of the form used, or at the top of the page.
OUTCOME = '[id^="outcome"]'
IN_VIEW = """e => { const r = e.getBoundingClientRect();
                   return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }"""
FILL_REQUIRED = """f => {
    for (const e of f.elements) {
        if (!e.required || e.value) continue;
        if (e.tagName === 'SELECT') {
            const o = [...e.options].find(o => o.value);
            if (o) e.value = o.value;
        } else {
            e.value = e.type === 'password' ? 'not-the-password-1' : 'Made by the form test';
        }
    }
}"""
# What each form is: its action (ids as N, so requeue buttons of different reports are one kind)
# and the text of its button.
FORMS = """() => [...document.forms].map(f => f.getAttribute('action').replace(/\\d+/g, 'N') +
                 ' ' + (f.querySelector('[type=submit]')?.textContent.trim() || ''))"""


@pytest.fixture(autouse=True)
def patient(page) -> None:
    page.set_default_navigation_timeout(30_000)  # a save calls both platforms: a busy machine


async def login(page, bridge, path: str, email: str | None = None) -> None:
    await page.goto(f"{bridge.url}{path}")
    if await page.get_by_label("E-mail address").count():
        await page.get_by_label("E-mail address").fill(email or bridge.email)
        await page.get_by_label("Password").fill(PASSWORD)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Login").click()
    await page.wait_for_url(re.compile(re.escape(f"{bridge.url}{path}")))


async def held_error_report(bridge) -> int:
    queue = JobQueue(bridge.pool)
    job_id = await queue.enqueue(bridge.tenant.id, "ui-test", f"contact-{secrets.token_hex(3)}", {})
    [job] = await queue.claim("ui-test", tenant_id=bridge.tenant.id)
    await queue.fail(job, Failure("LastName is required", "mapping", permanent=True))
    async with bridge.pool.acquire() as conn:
        return await reports.record_error(
            conn, bridge.tenant.id, category="mapping", operation="update",
            direction="cp_to_sf", record_id="contact-1", message="LastName is required",
            job_id=job_id,
        )


async def submit(page, form) -> None:
    await form.evaluate(FILL_REQUIRED)
    async with page.expect_navigation():
        await form.locator("[type=submit]").first.click()


async def test_every_form_answers_inside_the_viewport(page, web_bridge):
    await page.set_viewport_size({"width": 1000, "height": 700})  # the Salesforce tab's frame
    await held_error_report(web_bridge)  # so that the tab has a requeue button
    answered = []
    for path in PAGES:
        await login(page, web_bridge, path)
        described = await page.evaluate(FORMS)
        assert described, path
        for what in dict.fromkeys(described):
            await login(page, web_bridge, path)  # again: a form may end the session
            present = await page.evaluate(FORMS)
            if what not in present:  # a requeue button whose report was requeued already
                await held_error_report(web_bridge)
                await page.reload()
                present = await page.evaluate(FORMS)
            await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            await submit(page, page.locator("form").nth(present.index(what)))
            confirm = page.locator("form:has(input[name=confirm][value=yes])")
            if await confirm.count():  # a confirmation page first: its question is in view
                assert await page.locator("h1").evaluate(IN_VIEW), (path, what)
                await submit(page, confirm)
            answer = page.locator(OUTCOME)
            assert await answer.count() == 1, (path, what, page.url)
            assert await answer.get_attribute("role") in ("status", "alert"), (path, what)
            assert await answer.evaluate(IN_VIEW), (path, what, await answer.inner_text())
            answered.append((path, what, await answer.inner_text()))
    whats = [w for _, w, _ in answered]
    for expected in ("/config/copernica", "/config/salesforce", "/config/database",
                     "/config/sync", "/config/test/copernica", "/sfcp/sync", "/sfcp/databases",
                     "/sfcp/emailings", "/account/password", "/account/sign-out-everywhere"):
        assert any(w.startswith(expected + " ") for w in whats), (expected, whats)
    assert any(w.startswith("/sfcp/errors/N/requeue ") for w in whats), whats
    assert any(p == "/config" and w == "/sfcp/sync Sync manually" and "added to the queue" in t
               for p, w, t in answered), answered  # the config page's own "Sync manually"


async def test_what_was_typed_is_kept_after_an_error_but_never_a_secret(page, web_bridge):
    await login(page, web_bridge, "/config")
    await page.get_by_label("Copernica Hostname (optional)").fill("copernica.evil.example")
    await page.get_by_label(re.compile("^Copernica API token")).fill("a-new-token")
    await page.get_by_role("button", name="Save Copernica settings").click()
    answer = page.locator("#outcome-copernica")
    assert "not" in (await answer.inner_text()).lower()
    assert await answer.evaluate(IN_VIEW)
    assert await page.get_by_label("Copernica Hostname (optional)").input_value() == (
        "copernica.evil.example")
    assert await page.get_by_label(re.compile("^Copernica API token")).input_value() == ""

    await login(page, web_bridge, "/sfcp")
    await page.get_by_label("Database name").fill("Sandbox")  # the name is taken
    await page.get_by_label("Email", exact=True).uncheck()
    await page.get_by_role("button", name="Create database").click()
    assert "was not created" in await page.locator("#outcome-databases").inner_text()
    assert await page.get_by_label("Database name").input_value() == "Sandbox"
    assert not await page.get_by_label("Email", exact=True).is_checked()
    assert await page.get_by_label("LastName", exact=True).is_checked()


async def test_an_emailing_is_sent_only_after_a_confirmation_naming_target_and_size(
    page, web_bridge
):
    database = web_bridge.tenant.copernica_database
    seeded = [{"fields": {"Email": f"p{n}@example.com"}} for n in range(3)]
    await web_bridge.copernica.admin("POST", f"databases/{database}/profiles/seed",
                                     {"profiles": seeded})
    await web_bridge.copernica.admin("POST", f"databases/{database}/views", {"name": "Fans"})
    emailings = web_bridge.copernica.state.account.emailings
    await login(page, web_bridge, "/sfcp")
    await page.get_by_label("Template or document").select_option(index=1)
    await page.get_by_label("Send to").select_option(label="Database: Sandbox")
    await page.get_by_role("button", name="Send emailing").click()
    main = await page.locator("main").inner_text()
    assert "to 3 profiles?" in await page.locator("h1").inner_text()
    assert "of the database Sandbox" in main and len(emailings) == 0
    await page.get_by_role("link", name="Cancel").click()  # changed one's mind: nothing sent
    await page.locator("#emailings").wait_for()
    assert len(emailings) == 0

    await page.get_by_label("Template or document").select_option(index=1)
    await page.get_by_label("Send to").select_option(label="Selection: Fans")
    await page.get_by_role("button", name="Send emailing").click()
    assert re.search(r"to \d+ profiles?\?$", await page.locator("h1").inner_text())
    assert "of the selection Fans" in await page.locator("main").inner_text()
    await page.get_by_role("button", name=re.compile(r"^Yes, send to \d+ profile")).click()
    assert "sent:" in await page.locator("#outcome-emailings").inner_text()
    assert len(emailings) == 1


async def _reset_link(bridge) -> str:
    token = secrets.token_urlsafe(32)
    async with bridge.pool.acquire() as conn:
        user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", bridge.email)
        await conn.execute(QUERIES["create_password_reset"],
                           hashlib.sha256(token.encode()).hexdigest(), user_id, 3600.0)
    return f"/password-reset/{token}"


async def fits(page, bridge, path: str) -> None:
    await page.goto(f"{bridge.url}{path}")
    await page.wait_for_load_state("load")
    width = await page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], (path, width)


async def test_no_page_scrolls_sideways_on_a_360_px_phone(page, web_bridge):
    await page.set_viewport_size({"width": 360, "height": 740})
    await held_error_report(web_bridge)  # the widest table of the tab
    for path in ("/login", "/password-reset", await _reset_link(web_bridge),
                 "/password-reset/expired-token", "/no/such/page"):
        await fits(page, web_bridge, path)
    await login(page, web_bridge, "/sfcp")
    for path in ("/sfcp", "/config", "/dashboard", "/account", "/no/such/page"):
        await fits(page, web_bridge, path)
    await page.goto(f"{web_bridge.url}/sfcp")  # the confirmation pages
    await page.get_by_label("Template or document").select_option(index=1)
    await page.get_by_role("button", name="Send emailing").click()
    await fits_now(page, "send confirmation")
    await page.goto(f"{web_bridge.url}/sfcp")
    await page.get_by_label("Database name").fill("A database with a rather long name for phones")
    await page.get_by_role("button", name="Create database").click()
    await page.get_by_label("Database", exact=True).select_option(index=1)
    await page.get_by_role("button", name="Delete database…").click()
    await fits_now(page, "delete confirmation")
    await page.goto(f"{web_bridge.url}/config")
    await page.get_by_label("Copernica database name").select_option(
        label="A database with a rather long name for phones")
    await page.get_by_role("button", name="Save database").click()
    await fits_now(page, "switch confirmation")
    email = f"user-{secrets.token_hex(4)}@acme.example"
    async with web_bridge.pool.acquire() as conn:
        await conn.execute(QUERIES["create_user"], web_bridge.tenant.id, email, password_hash(),
                           "user")
    await page.get_by_role("button", name="Logout").click()
    await login(page, web_bridge, "/sfcp", email=email)
    await fits(page, web_bridge, "/config")  # the 403 page
    assert await page.locator("h1").inner_text() == "Not allowed"


async def fits_now(page, what: str) -> None:
    await page.wait_for_load_state("load")
    width = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert await page.locator("h1").count() == 1, what
    assert width[0] <= width[1], (what, width)
