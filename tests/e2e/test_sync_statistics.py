"""The statistics of emailings: an emailing sent from the tab gets its Copernica figures as a
Copernica_Emailing__c record in Salesforce, once a day or at once with "Refresh statistics"."""

from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.tenants import load_salesforce_credentials, salesforce_client
from bridge.vocabulary import STATISTICS
from bridge.web.keys import QUEUE, VAULT
from tests.e2e.sync_helpers import create_contact, eventually, profile_of


async def _sent_emailing(bridge, readers: int):
    """An emailing to the synced database of ``readers`` contacts, recorded as sent from the
    tab; returns its id, template and Copernica's figures."""
    for n in range(readers):
        sf_id = await create_contact(bridge, LastName=f"Reader {n}", Email=f"r{n}@x.org")
        await eventually(lambda sf_id=sf_id: profile_of(bridge, sf_id), 20)
    database = bridge.tenant.copernica_database
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as copernica:
        template = [t async for t in copernica.templates()][0]
        emailing_id = await copernica.send_emailing(template.id, database)
        figures = await copernica.emailing_statistics(emailing_id)
    async with bridge.pool.acquire() as conn:
        await conn.execute(
            QUERIES["record_emailing_send"], bridge.tenant.id, "ms", emailing_id, template.id,
            template.name, "database", int(database), "Sandbox", bridge.email,
        )
    return emailing_id, template, figures


async def _emailing_records(bridge) -> list:
    async with bridge.pool.acquire() as conn:
        creds = await load_salesforce_credentials(conn, bridge.app[VAULT], bridge.tenant.id)
    async with salesforce_client(creds, bridge.settings) as client:
        return [r async for r in client.query(
            "SELECT Emailing_Id__c, Name, Destinations__c, Deliveries__c, Clicks__c "
            "FROM Copernica_Emailing__c"
        )]


async def test_statistics_of_a_sent_emailing_reach_salesforce(bridge):
    emailing_id, template, figures = await _sent_emailing(bridge, 3)
    await bridge.app[QUEUE].enqueue(bridge.tenant.id, STATISTICS, "daily", {})

    [record] = await eventually(lambda: _emailing_records(bridge), 20)
    assert record["Emailing_Id__c"] == f"ms-{emailing_id}"
    assert record["Name"] == template.name
    assert figures.destinations == 3
    assert record["Destinations__c"] == figures.destinations
    assert record["Deliveries__c"] == figures.deliveries
    assert record["Clicks__c"] == figures.clicks


async def test_refresh_statistics_brings_them_to_salesforce_now_and_the_tab_labels_them(
    bridge, admin
):
    emailing_id, _, figures = await _sent_emailing(bridge, 2)
    _, page = await admin.get("/sfcp")
    assert "Opens <span class=\"meta\">unique / total</span>" in page
    assert f"<td>{figures.unique_impressions} / {figures.impressions}</td>" in page
    assert f"<td>{figures.unique_clicks} / {figures.clicks}</td>" in page
    _, page = await admin.post("/sfcp/statistics")
    assert "Refreshing the statistics" in page

    [record] = await eventually(lambda: _emailing_records(bridge), 30)  # not a day later
    assert record["Emailing_Id__c"] == f"ms-{emailing_id}" and record["Clicks__c"] == figures.clicks
    status, _ = await admin.post("/sfcp/statistics", token="forged")
    assert status == 403
