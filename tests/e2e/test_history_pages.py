"""What the sync did, as the pages show it: the fields that sync, one contact's history with its
conflict (both values, the side that won and the rule), the conflicts, the runs, the conflict rule
as a setting, editing a database from the tab and statistics on demand. Through the running app
over HTTP, both sandboxes and PostgreSQL; another tenant never sees any of it."""

from __future__ import annotations

import re
import secrets

from markupsafe import escape

from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.sync.runs import get_run
from bridge.tenants import (
    create_tenant,
    create_user,
    update_tenant,
)
from bridge.vocabulary import CONFLICT_RULES
from tests.e2e.sync_helpers import (
    contacts,
    create_contact,
    eventually,
    profile_of,
    quiet,
    set_tenant,
)
from tests.fixtures.bridge import PASSWORD, RunningBridge
from tests.fixtures.browser import WebUser


async def other_tenant_user(bridge: RunningBridge, role: str = "admin") -> WebUser:
    """A user of another tenant (nothing saved: it has no history of its own)."""
    record = await create_tenant(bridge.pool, f"other-{secrets.token_hex(4)}", "Other Ltd")
    email = f"{role}@{record.slug}.example"
    await create_user(bridge.pool, record.slug, email, PASSWORD, role)
    user = WebUser(bridge.url)
    await user.login(email)
    return user


async def finished_run(bridge: RunningBridge, run_id: int):
    async def done():
        async with bridge.pool.acquire() as conn:
            run = await get_run(conn, bridge.tenant.id, run_id)
        return run if run is not None and run.state in ("done", "failed") else None

    return await eventually(done, 60)


async def test_a_conflict_shows_in_the_contact_history_the_conflicts_and_the_runs(
    bridge: RunningBridge, admin: WebUser
) -> None:
    await admin.get("/config")
    _, page = await admin.post("/config/conflict-rule", {"conflict_rule": "copernica_wins"})
    assert "Conflict rule saved: Copernica wins" in page
    assert (await bridge.reload_tenant()).conflict_rule == "copernica_wins"
    email = "ann.visible@example.org"
    sf_id = await create_contact(bridge, LastName="Visible", FirstName="Ann", Email=email)
    profile = await eventually(lambda: profile_of(bridge, sf_id), 20)
    await quiet(bridge)
    await set_tenant(bridge, auto_sync=False)  # both edits wait for "Sync manually"
    await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"FirstName": "Salesforce Ann"})
    await bridge.copernica.admin("PUT", f"profiles/{profile['ID']}",
                                 {"fields": {"FirstName": "Copernica Ann"}})
    await admin.get("/sfcp")
    await admin.post("/sfcp/sync")
    async with bridge.pool.acquire() as conn:
        run_id = await conn.fetchval(
            "SELECT max(id) FROM sync_runs WHERE tenant_id = $1 AND kind = 'manual'",
            bridge.tenant.id,
        )
    run = await finished_run(bridge, run_id)
    assert run.state == "done", run.message
    contact = next(c for c in await contacts(bridge) if c["Id"] == sf_id)
    assert contact["FirstName"] == "Copernica Ann"

    # by e-mail, by either platform's id (a Salesforce Id as the API or a URL shows it)
    for query in (email, sf_id, sf_id[:15], str(profile["ID"])):
        status, page = await admin.get("/sfcp/history", params={"q": query})
        assert status == 200, query
        assert "Copernica won" in page, query
        assert "rule “Copernica wins”" in page
        assert "Salesforce had <q class=\"value\">Salesforce Ann</q>" in page
        assert "Copernica had <q class=\"value\">Copernica Ann</q>" in page
        assert "created (Salesforce → Copernica)" in page  # the first sync of this contact

    _, page = await admin.get("/sfcp/conflicts")
    assert f'href="/sfcp/history?q={sf_id}"' in page and "FirstName" in page
    assert "Copernica Ann" in page and 'id="current-rule">Copernica wins' in page

    _, page = await admin.get("/sfcp/runs")
    assert f'id="run-{run_id}"' in page and f"Manual sync #{run_id}" in page
    assert bridge.email in page  # who pressed "Sync manually"
    assert str(escape(run.message)) in page  # the run's summary

    async with bridge.pool.acquire() as conn:  # the audit retention window has passed
        await conn.execute(QUERIES["erase_old_audit_values"], 0)
    _, page = await admin.get("/sfcp/history", params={"q": sf_id})
    assert "Copernica won" in page and "Salesforce Ann" not in page
    assert "Both values and the rule were erased after the audit retention window" in page

    other = await other_tenant_user(bridge)
    try:
        for query in (email, sf_id):
            _, page = await other.get("/sfcp/history", params={"q": query})
            assert "Nothing recorded" in page and "Salesforce Ann" not in page
        _, page = await other.get("/sfcp/conflicts")
        assert "No conflicts so far" in page and sf_id not in page
        _, page = await other.get("/sfcp/runs")
        assert f'id="run-{run_id}"' not in page
    finally:
        await other.close()


async def test_a_search_for_something_that_is_no_contact_says_what_to_type(
    admin: WebUser,
) -> None:
    status, page = await admin.get("/sfcp/history", params={"q": "not an address"})
    assert status == 400 and "Type an e-mail address, a Salesforce Contact Id" in page
    assert 'aria-invalid="true"' in page and 'value="not an address"' in page


async def test_the_conflict_rule_is_set_by_an_administrator_with_a_valid_form(
    bridge: RunningBridge, admin: WebUser
) -> None:
    _, page = await admin.get("/config")
    assert 'action="/config/conflict-rule"' in page
    assert 'name="conflict_rule" value="newest" checked' in page
    assert re.findall(r'name="conflict_rule" value="(\w+)"', page) == list(CONFLICT_RULES)
    status, _ = await admin.post("/config/conflict-rule", {"conflict_rule": "salesforce_wins"},
                                 token="forged")
    assert status == 403
    _, page = await admin.post("/config/conflict-rule", {"conflict_rule": "loudest"})
    assert "Choose one of the conflict rules." in page
    assert (await bridge.reload_tenant()).conflict_rule == "newest"

    email = f"user-{secrets.token_hex(3)}@acme.example"
    await create_user(bridge.pool, bridge.tenant.slug, email, PASSWORD, "user")
    user = WebUser(bridge.url)
    try:
        await user.login(email)
        status, _ = await user.post("/config/conflict-rule", {"conflict_rule": "copernica_wins"})
        assert status == 403
        _, page = await user.get("/sfcp/conflicts")  # may read the rule, not change it
        assert 'id="current-rule">the newest change wins' in page
        assert 'href="/config#conflict-rule"' not in page
    finally:
        await user.close()
    assert (await bridge.reload_tenant()).conflict_rule == "newest"


async def test_the_fields_view_says_what_syncs_which_way(
    bridge: RunningBridge, admin: WebUser
) -> None:
    database = bridge.tenant.copernica_database
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        for name in ("Name", "MailingAddress", "ShoeSize"):
            await client.create_field(database, name, "text")
    _, page = await admin.get("/sfcp/fields")

    def row(copernica_field: str) -> str:
        start = page.index(f'<td data-label="Copernica field">{copernica_field} ')
        return page[start:page.index("</tr>", start)]

    assert "Both ways" in row("FirstName") and "read-only" not in row("FirstName")
    assert "Salesforce → Copernica only" in row("Name") and "read-only in Salesforce" in row("Name")
    assert "not synced" in row("MailingAddress") and "address fields cannot be synced" in row(
        "MailingAddress")
    assert "no Salesforce contact field has this name" in row("ShoeSize")

    await set_tenant(bridge, direction="cp_to_sf")
    _, page = await admin.get("/sfcp/fields")
    assert "Copernica → Salesforce" in row("FirstName")
    assert "read-only in Salesforce, and the direction is Copernica to Salesforce" in row("Name")


async def test_a_database_is_renamed_and_its_fields_added_and_removed_from_the_tab(
    bridge: RunningBridge, admin: WebUser
) -> None:
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        spare = await client.create_database(f"Spare {secrets.token_hex(3)}")
        await client.create_field(spare, "Email", "email")
        old = await client.create_database(f"Old {secrets.token_hex(3)}")
        await client.edit_database(old, archived=True)
        old_name = (await client.database(old)).name
    _, page = await admin.get("/sfcp/databases/edit")
    assert f'<option value="{spare}">' in page and f'<option value="{old}">' not in page
    _, page = await admin.get("/sfcp/databases/edit", params={"database": str(spare)})
    assert f'action="/sfcp/databases/{spare}/rename"' in page

    status, _ = await admin.post(f"/sfcp/databases/{spare}/rename", {"name": "Forged"},
                                 token="forged")
    assert status == 403
    _, page = await admin.post(f"/sfcp/databases/{spare}/rename", {"name": old_name})
    assert "belongs to an archived Copernica database" in page
    assert f'value="{old_name}"' in page  # what was typed is kept
    _, page = await admin.post(f"/sfcp/databases/{spare}/rename", {"name": "Prospects"})
    assert "renamed to Prospects" in page
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        assert (await client.database(spare)).name == "Prospects"

    _, page = await admin.post(f"/sfcp/databases/{spare}/fields",
                               {"fields": ["Title", "Birthdate"]})
    assert "Added to Prospects: Title, Birthdate." in page
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        fields = {f.name: f for f in [f async for f in client.fields(spare)]}
    assert fields["Title"].type == "text" and fields["Birthdate"].type == "empty_date"

    title = fields["Title"].id
    _, page = await admin.post(f"/sfcp/databases/{spare}/fields/{title}/delete")
    assert "Remove field Title?" in page  # asks first
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        assert "Title" in {f.name async for f in client.fields(spare)}
    _, page = await admin.post(f"/sfcp/databases/{spare}/fields/{title}/delete", {"confirm": "yes"})
    assert "Field Title removed from Prospects" in page
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        assert "Title" not in {f.name async for f in client.fields(spare)}

    _, page = await admin.post("/sfcp/databases", {"name": old_name, "fields": ["LastName"]})
    assert "The database was not created: the name" in page
    assert "belongs to an archived Copernica database" in page


async def test_the_field_keeping_the_salesforce_id_cannot_be_removed(
    bridge: RunningBridge, admin: WebUser
) -> None:
    database = bridge.tenant.copernica_database

    async def link_field():  # the first sync creates it
        async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
            return next((f for f in [f async for f in client.fields(database)]
                         if f.name == "SalesforceId"), None)

    link_id = (await eventually(link_field, 30)).id
    _, page = await admin.post(f"/sfcp/databases/{database}/fields/{link_id}/delete",
                               {"confirm": "yes"})
    assert "keeps the Salesforce Id of each profile" in page
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        assert "SalesforceId" in {f.name async for f in client.fields(database)}


async def test_the_pages_need_a_login_and_the_database_pages_the_direction_both(
    bridge: RunningBridge, admin: WebUser
) -> None:
    anonymous = WebUser(bridge.url)
    try:
        for path in ("/sfcp/fields", "/sfcp/history", "/sfcp/conflicts", "/sfcp/runs",
                     "/sfcp/databases/edit"):
            status, page = await anonymous.get(path)
            assert status == 200 and "<h1>Login</h1>" in page, path
    finally:
        await anonymous.close()
    async with bridge.pool.acquire() as conn:
        await update_tenant(conn, bridge.tenant.id, direction="sf_to_cp")
    _, page = await admin.get("/sfcp/databases/edit")
    assert "can only be managed when the data sync direction is Both ways" in page
