"""Error reports with a life cycle: one report per record and cause, its direction right, a
sentence a person can act on; resolved by itself when the record syncs, in the bridge and in
the Copernica_Sync_Error__c record in Salesforce; requeueing never adds a second report."""

import asyncio
import re

from bridge.sync.reports import error_reports, requeue_report
from bridge.web.keys import QUEUE
from tests.e2e.sync_helpers import create_contact, eventually, profile_of, quiet
from tests.e2e.test_sync_errors import _pushed
from tests.fixtures.browser import WebUser

INVALID = "not-an-address"  # Salesforce refuses it: INVALID_EMAIL_ADDRESS


async def _reports(bridge):
    async with bridge.pool.acquire() as conn:
        return await error_reports(conn, bridge.tenant.id)


async def _linked_pair(bridge):
    sf_id = await create_contact(bridge, LastName="Lovelace", Email="ada@example.org")
    profile = await eventually(lambda: profile_of(bridge, sf_id), 20)
    await quiet(bridge)
    return sf_id, str(profile["ID"])


async def _refused_copernica_change(bridge):
    """A linked contact whose Copernica change Salesforce refuses; returns its ids and report."""
    sf_id, cp_id = await _linked_pair(bridge)
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Email": INVALID}})
    [report] = await eventually(lambda: _reports(bridge), 20)
    return sf_id, cp_id, report


async def test_a_report_closes_by_itself_when_the_record_syncs(bridge):
    sf_id, cp_id, report = await _refused_copernica_change(bridge)
    # a Copernica change that Salesforce refused goes Copernica → Salesforce
    assert report["direction"] == "cp_to_sf" and report["record_id"] == sf_id
    assert report["code"] == "INVALID_EMAIL_ADDRESS" and report["attempts"] == 1
    assert report["message"] == (
        f"The change of contact {sf_id} could not be saved in Salesforce: Salesforce answered "
        "INVALID_EMAIL_ADDRESS on Email (1 attempt)."
    )
    fields = "Id, Status__c, Contact__c, Direction__c, Details__c"
    [record] = await eventually(lambda: _pushed(bridge, fields), 20)
    assert record["Status__c"] == "open" and record["Contact__c"] == sf_id
    assert record["Direction__c"] == "cp_to_sf"
    assert "Error code: INVALID_EMAIL_ADDRESS" in record["Details__c"]
    assert "What to do: correct the record" in record["Details__c"]
    assert INVALID not in record["Details__c"]
    # the dashboard and the tab name the contact (read from Salesforce now, never stored) and link it
    user = WebUser(bridge.url)
    try:
        await user.login(bridge.email)
        status, dashboard = await user.get("/dashboard")
        tab_status, tab = await user.get("/sfcp")
    finally:
        await user.close()
    assert status == tab_status == 200
    for page, row_id in ((dashboard, f"report-{report['id']}"), (tab, f"error-{report['id']}")):
        row = re.search(rf'<tr id="{row_id}">.*?</tr>', page, re.S).group(0)
        assert f'href="{bridge.salesforce.url}/{sf_id}"' in row and ">Lovelace</a>" in row
        assert "INVALID_EMAIL_ADDRESS on Email" in row and "What to do: correct the record" in row

    # the user corrects the address in Copernica: the record syncs, the report closes
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Email": "ada@lovelace.org"}})

    async def resolved():
        [after] = await _reports(bridge)
        return after if after["status"] == "resolved" else None

    after = await eventually(resolved, 20)
    assert after["id"] == report["id"] and after["resolved_at"] is not None

    async def record_resolved():
        [now] = await _pushed(bridge, "Id, Status__c")
        return now if now["Status__c"] == "resolved" else None

    assert (await eventually(record_resolved, 20))["Id"] == record["Id"]
    async with bridge.pool.acquire() as conn:  # its held job had nothing left to do
        held = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state = 'held'", bridge.tenant.id
        )
    assert held == 0
    assert not await requeue_report(bridge.app[QUEUE], bridge.tenant.id, report["id"])


async def test_requeueing_twice_before_the_fix_keeps_one_report(bridge):
    _, _, report = await _refused_copernica_change(bridge)
    queue = bridge.app[QUEUE]
    # a double click: one requeue takes the held job, the other finds it waiting already
    both = await asyncio.gather(*(requeue_report(queue, bridge.tenant.id, report["id"]) for _ in "ab"))
    assert sorted(both) == [False, True]
    for attempts in (2, 3):  # requeued before the fix: it fails again on the same cause
        if attempts == 3:
            assert await requeue_report(queue, bridge.tenant.id, report["id"])

        async def failed_again(attempts=attempts):
            [again] = await _reports(bridge)
            return again if again["status"] == "open" and again["attempts"] == attempts else None

        again = await eventually(failed_again, 20)
        assert again["id"] == report["id"]
        assert again["message"].endswith(f"({attempts} attempts).")
    await quiet(bridge)
    assert len(await _reports(bridge)) == 1
    [record] = await eventually(lambda: _pushed(bridge, "Id, Status__c"), 20)
    assert record["Status__c"] == "open"
