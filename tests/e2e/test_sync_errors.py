"""Failures are reports, not silence: a change that cannot be applied
becomes an error report in the bridge and a Copernica_Sync_Error__c record in Salesforce, and
its held job can be requeued."""

from bridge.sync.reports import error_reports, requeue_report
from bridge.tenants import load_salesforce_credentials, salesforce_client
from bridge.web.keys import QUEUE, VAULT
from tests.e2e.sync_helpers import contacts, create_profile, eventually, quiet


async def _reports(bridge):
    async with bridge.pool.acquire() as conn:
        return await error_reports(conn, bridge.tenant.id)


async def _pushed(bridge, fields):
    """The Copernica_Sync_Error__c records in the Salesforce emulator."""
    async with bridge.pool.acquire() as conn:
        creds = await load_salesforce_credentials(conn, bridge.app[VAULT], bridge.tenant.id)
    async with salesforce_client(creds, bridge.settings) as client:
        return [r async for r in client.query(f"SELECT {fields} FROM Copernica_Sync_Error__c")]


async def test_a_profile_without_last_name_is_reported_and_can_be_requeued(bridge):
    cp_id = await create_profile(bridge, FirstName="Nameless", Email="nameless@x.org")
    [report] = await eventually(lambda: _reports(bridge), 20)
    assert report["category"] == "mapping"
    assert report["message"].startswith(f"The change of Copernica profile {cp_id} could not be "
                                        "saved in Salesforce: ")
    assert "LastName" in report["message"]
    assert report["record_id"] == cp_id and report["direction"] == "cp_to_sf"

    [record] = await eventually(lambda: _pushed(bridge, "Id, Category__c, Message__c, Record_Id__c"), 20)
    assert record["Category__c"] == "mapping" and record["Record_Id__c"] == cp_id
    assert not await contacts(bridge)

    # the user fixes the profile in Copernica: that change flows by itself, and the report
    # closes with it (its held job has nothing left to do, so it goes)
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"LastName": "Named"}})
    created = await eventually(lambda: contacts(bridge), 20)
    assert created[0]["LastName"] == "Named"
    [after] = await eventually(
        lambda: _reports_in(bridge, "resolved"), 20
    )
    assert after["id"] == report["id"]
    assert not await requeue_report(bridge.app[QUEUE], bridge.tenant.id, report["id"])
    await quiet(bridge)
    assert len(await contacts(bridge)) == 1


async def _reports_in(bridge, status):
    return [r for r in await _reports(bridge) if r["status"] == status]


async def test_no_report_keeps_or_pushes_the_customer_value_that_was_refused(bridge):
    refused = "ada.lovelace.at.example"  # an address Salesforce refuses: no "@"
    cp_id = await create_profile(bridge, LastName="Lovelace", Email=refused)
    [report] = await eventually(lambda: _reports(bridge), 20)
    assert report["cause"] == "INVALID_EMAIL_ADDRESS on Email"  # code and field, no value
    assert "Salesforce answered INVALID_EMAIL_ADDRESS on Email" in report["message"]
    assert report["record_id"] == cp_id and report["code"] == "INVALID_EMAIL_ADDRESS"

    [record] = await eventually(lambda: _pushed(bridge, "Message__c, Details__c"), 20)
    assert "INVALID_EMAIL_ADDRESS on Email" in record["Message__c"]
    assert refused not in record["Details__c"]
    async with bridge.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT message, details FROM error_reports WHERE tenant_id = $1 UNION ALL "
            "SELECT last_error, NULL FROM jobs WHERE tenant_id = $1 UNION ALL "
            "SELECT detail::text, NULL FROM audit_log WHERE tenant_id = $1",
            bridge.tenant.id,
        )
    assert stored and not [row for row in stored if refused in " ".join(map(str, row))]
