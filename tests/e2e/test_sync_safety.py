"""Conflicts, auto-sync off, and the safety net after lost stream events: through the running
app, both sandboxes and PostgreSQL."""

import asyncio

import pytest

from bridge.sync.runs import get_run, request_sync
from bridge.web.keys import QUEUE
from tests.e2e.sync_helpers import (
    contacts,
    create_contact,
    eventually,
    profile_of,
    quiet,
    set_tenant,
)
from tests.fixtures.browser import WebUser


async def _sync_now(bridge) -> None:
    run_id = await request_sync(bridge.app[QUEUE], bridge.tenant.id, "manual", "test")

    async def finished():
        async with bridge.pool.acquire() as conn:
            run = await get_run(conn, bridge.tenant.id, run_id)
        return run if run.state in ("done", "failed") else None

    run = await eventually(finished, 30)
    assert run.state == "done", run.message


async def _title_of_contact(bridge, sf_id):
    return next(c for c in await contacts(bridge) if c["Id"] == sf_id).get("Title")


async def _linked_pair(bridge, **fields):
    sf_id = await create_contact(bridge, LastName="Pair", **fields)
    profile = await eventually(lambda: profile_of(bridge, sf_id))
    await quiet(bridge)
    return sf_id, str(profile["ID"])


@pytest.mark.parametrize(
    ("rule", "later", "winner"),
    [
        ("newest", "copernica", "copernica"),
        ("newest", "salesforce", "salesforce"),
        ("salesforce_wins", "copernica", "salesforce"),
        ("copernica_wins", "salesforce", "copernica"),
    ],
)
async def test_concurrent_edits_of_one_field_end_as_the_rule_says(bridge, rule, later, winner):
    sf_id, cp_id = await _linked_pair(bridge, Title="Original")
    await set_tenant(bridge, auto_sync=False, conflict_rule=rule)  # hold both edits back

    async def edit_salesforce():
        await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"Title": "From Salesforce"})

    async def edit_copernica():
        await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Title": "From Copernica"}})

    first, second = (edit_salesforce, edit_copernica) if later == "copernica" else (edit_copernica, edit_salesforce)
    await first()
    await asyncio.sleep(1.1)  # Copernica keeps whole seconds
    await second()
    await _sync_now(bridge)

    expected = "From Salesforce" if winner == "salesforce" else "From Copernica"
    assert await _title_of_contact(bridge, sf_id) == expected
    assert (await profile_of(bridge, sf_id))["fields"]["Title"] == expected
    async with bridge.pool.acquire() as conn:
        audit = await conn.fetchrow(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND action = 'conflict'", bridge.tenant.id
        )
    assert audit["fields"] == ["Title"] and audit["outcome"] == f"{winner} wins"
    assert audit["detail"]["salesforce"] == "From Salesforce"
    assert audit["detail"]["copernica"] == "From Copernica"


async def test_with_auto_sync_off_nothing_moves_until_sync_now(bridge):
    sf_id, cp_id = await _linked_pair(bridge, Title="Before")
    await set_tenant(bridge, auto_sync=False)
    new_contact = await create_contact(bridge, LastName="Quiet", Email="quiet@x.org")
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Title": "Changed in Copernica"}})
    await asyncio.sleep(2)  # ample time for anything that would run by itself
    assert await profile_of(bridge, new_contact) is None
    assert await _title_of_contact(bridge, sf_id) == "Before"

    await _sync_now(bridge)
    assert await profile_of(bridge, new_contact) is not None
    assert await _title_of_contact(bridge, sf_id) == "Changed in Copernica"


async def test_switching_automatic_sync_back_on_brings_over_what_waited(bridge):
    sf_id, cp_id = await _linked_pair(bridge, Title="Before")
    await set_tenant(bridge, auto_sync=False)
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Title": "While off"}})
    user = WebUser(bridge.url)
    try:
        await user.login(bridge.email)
        status, page = await user.post(
            "/config/sync", {"direction": "both", "auto_sync": "yes", "apply_deletes": "yes"}
        )
    finally:
        await user.close()
    assert status == 200 and "brings over what changed while automatic sync was off" in page

    async def arrived():
        return await _title_of_contact(bridge, sf_id) == "While off"

    await eventually(arrived, 30)  # nobody pressed "Sync manually"


async def test_a_dropped_stream_resubscribes_and_misses_nothing(bridge):
    await quiet(bridge)
    await bridge.salesforce.admin("POST", "/streaming/drop", {})
    sf_id = await create_contact(bridge, LastName="After drop")
    await eventually(lambda: profile_of(bridge, sf_id), 20)


async def test_an_expired_replay_id_triggers_a_full_reconcile(bridge):
    await _linked_pair(bridge)  # the stream has stored a replay id
    await set_tenant(bridge, auto_sync=False)  # the stream stops, its marker stays
    missed = await create_contact(bridge, LastName="Missed", Email="missed@x.org")
    await bridge.salesforce.admin("POST", "/cdc/purge", {})  # the stored replay id expires
    await set_tenant(bridge, auto_sync=True)
    await eventually(lambda: profile_of(bridge, missed), 30)
    async with bridge.pool.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT requested_by FROM sync_runs WHERE tenant_id = $1", bridge.tenant.id
        )
    assert "stream: ReplayIdInvalid" in {k["requested_by"] for k in kinds}


async def _silent_contact(bridge, **fields) -> str:
    """A contact Salesforce sends no change event for (seeded)."""
    reply = await bridge.salesforce.admin("POST", "/records/Contact", {"records": [fields]})
    return reply["ids"][0]


async def test_a_gap_event_brings_its_records_over(bridge):
    await quiet(bridge)
    sf_id = await _silent_contact(bridge, LastName="Gap", Email="gap@x.org")
    await bridge.salesforce.admin(
        "POST", "/cdc/gap", {"record_ids": [sf_id], "change_type": "GAP_CREATE"}
    )
    profile = await eventually(lambda: profile_of(bridge, sf_id), 20)
    assert profile["fields"]["Email"] == "gap@x.org"


async def test_an_overflow_event_reconciles_everything(bridge):
    await quiet(bridge)
    ids = [await _silent_contact(bridge, LastName=f"Bulk {n}") for n in range(5)]
    await bridge.salesforce.admin("POST", "/cdc/overflow", {})
    for sf_id in ids:
        await eventually(lambda sf_id=sf_id: profile_of(bridge, sf_id), 30)
