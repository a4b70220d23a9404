"""The sync made visible, in a real Chromium 360 px wide: the conflict rule changed on the config
page, the fields, a contact's history with a conflict (both values, who won, the rule), the
conflicts and the runs, renaming a database and adding a field — and no page scrolls sideways."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.async_api import expect

from bridge.copernica.client import CopernicaClient
from bridge.sync.runs import get_run
from tests.e2e.sync_helpers import create_contact, eventually, profile_of, quiet, set_tenant
from tests.fixtures.bridge import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


async def fits(page) -> None:
    """Nothing wider than the window: no horizontal scroll."""
    width = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"{page.url} is {width} px too wide"


async def test_a_walk_through_what_the_sync_did(page, bridge):
    email = f"walker-{secrets.token_hex(3)}@example.org"
    sf_id = await create_contact(bridge, LastName="Walker", FirstName="Wanda", Email=email)
    profile = await eventually(lambda: profile_of(bridge, sf_id), 60)
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        spare = await client.create_database(f"Spare {secrets.token_hex(3)}")
    await page.set_viewport_size({"width": 360, "height": 800})
    await page.goto(f"{bridge.url}/config")
    await page.get_by_label("E-mail address").fill(bridge.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Login").click()
    await page.wait_for_url(f"{bridge.url}/config")

    rule = page.locator("#conflict-rule")
    await rule.get_by_label("Salesforce wins").check()
    await rule.get_by_role("button", name="Save conflict rule").click()
    outcome = page.locator("#outcome-conflict-rule")
    await expect(outcome).to_contain_text("Conflict rule saved: Salesforce wins")
    await expect(outcome).to_be_in_viewport()
    assert (await bridge.reload_tenant()).conflict_rule == "salesforce_wins"

    await quiet(bridge)
    await set_tenant(bridge, auto_sync=False)  # both edits wait for "Sync manually"
    await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"FirstName": "Wanda SF"})
    await bridge.copernica.admin("PUT", f"profiles/{profile['ID']}",
                                 {"fields": {"FirstName": "Wanda CP"}})
    await page.goto(f"{bridge.url}/sfcp")
    await page.get_by_role("button", name="Sync manually").click()
    async with bridge.pool.acquire() as conn:
        run_id = await conn.fetchval(
            "SELECT max(id) FROM sync_runs WHERE tenant_id = $1 AND kind = 'manual'",
            bridge.tenant.id,
        )

    async def finished():
        async with bridge.pool.acquire() as conn:
            run = await get_run(conn, bridge.tenant.id, run_id)
        return run.state in ("done", "failed")

    await eventually(finished, 60)

    await page.get_by_role("link", name="Fields", exact=True).click()
    first_name = page.locator("tr", has=page.get_by_text("FirstName (text)"))
    await expect(first_name).to_contain_text("Both ways")
    await fits(page)

    await page.get_by_role("link", name="Contact history").click()
    await page.get_by_label("E-mail address or Salesforce Contact Id").fill(email)
    await page.get_by_role("button", name="Show history").click()
    conflict = page.locator("#history tr.conflict")
    await expect(conflict).to_contain_text("Salesforce won: rule “Salesforce wins”")
    await expect(conflict).to_contain_text("Salesforce had Wanda SF, Copernica had Wanda CP")
    await expect(page.locator("#history")).to_contain_text("created (Salesforce → Copernica)")
    await fits(page)

    await page.get_by_role("link", name="Conflicts").click()
    await expect(page.locator("#current-rule")).to_have_text("Salesforce wins")
    await expect(page.locator("tbody tr").first).to_contain_text("FirstName")
    await fits(page)
    await page.get_by_role("link", name="Sync history").click()
    await expect(page.locator(f"#run-{run_id}")).to_contain_text(f"Manual sync #{run_id}")
    await expect(page.locator(f"#run-{run_id}")).to_contain_text(bridge.email)
    await fits(page)

    await page.goto(f"{bridge.url}/sfcp")
    await page.get_by_role("link", name=re.compile("^Edit an existing database")).click()
    await page.get_by_label("Copernica database").select_option(str(spare))
    await page.get_by_role("button", name="Edit", exact=True).click()
    await fits(page)
    await page.get_by_label("Database name").fill("Walked")
    await page.get_by_role("button", name="Rename database").click()
    await expect(page.locator("#outcome-rename")).to_contain_text("renamed to Walked")
    await expect(page.locator("#outcome-rename")).to_be_in_viewport()
    await page.locator("#add-fields").get_by_label("Title", exact=True).check()
    await page.get_by_role("button", name="Add fields").click()
    await expect(page.locator("#outcome-add-fields")).to_contain_text("Added to Walked: Title.")
    await expect(page.locator("#outcome-add-fields")).to_be_in_viewport()
    await expect(page.locator("#fields")).to_contain_text("Title")
    await fits(page)
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        assert (await client.database(spare)).name == "Walked"
        assert "Title" in {f.name async for f in client.fields(spare)}
