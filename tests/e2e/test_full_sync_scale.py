"""A full sync from the Bulk API threshold on: Salesforce is read through one Bulk API 2.0 query
job, and unlinked contacts are matched to existing Copernica profiles without a search per
contact (the first-merge rules of the engine: link field first, then a unique, unclaimed e-mail
address). The threshold is lowered to 300 so the test stays small."""

from __future__ import annotations

import pytest

from bridge.sync import reconcile
from tests.e2e.sync_helpers import links, profiles, run_to_end, set_tenant
from tests.fixtures.bridge import RunningBridge

CONTACTS = 320


async def full_sync(bridge: RunningBridge) -> str:
    state, message = await run_to_end(bridge, "full")
    assert state == "done", message
    return message


async def test_a_large_full_sync_reads_through_bulk_and_matches_without_searches(
    bridge: RunningBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "BULK_FROM", 300)
    await set_tenant(bridge, direction="sf_to_cp")
    seeded = await bridge.salesforce.admin(
        "POST",
        "/records/Contact",
        {
            "records": [
                {"LastName": f"Scale{i:03d}", "Email": f"c{i}@scale.example"}
                for i in range(CONTACTS)
            ]
        },
    )
    ids = seeded["ids"]
    database = bridge.tenant.copernica_database
    existing = [
        *({"Email": f"c{i}@scale.example"} for i in range(10)),  # unique, unclaimed: matched
        {"SalesforceId": ids[10]},  # holds the contact's id: matched
        {"Email": "c11@scale.example"},  # an address two profiles share: no match
        {"Email": "c11@scale.example"},
        {"Email": "c12@scale.example", "SalesforceId": "0035g0000000000AAA"},  # claimed
        {"Email": "C13@Scale.Example"},  # Copernica compares text case-insensitively
    ]
    made = await bridge.copernica.admin(
        "POST",
        f"databases/{database}/profiles/seed",
        {"profiles": [{"fields": fields} for fields in existing]},
    )
    calls_before = (await bridge.copernica.admin("GET", "stats"))["api_calls"]

    message = await full_sync(bridge)

    assert f"{CONTACTS} record(s) compared" in message
    linked = await links(bridge)
    assert len(linked) == CONTACTS
    expected = {ids[i]: str(made["ids"][i]) for i in range(10)}
    expected |= {ids[10]: str(made["ids"][10]), ids[13]: str(made["ids"][14])}
    assert {sf: linked[sf] for sf in expected} == expected
    assert linked[ids[11]] not in {str(i) for i in made["ids"]}
    assert linked[ids[12]] not in {str(i) for i in made["ids"]}
    assert len(await profiles(bridge)) == len(existing) + CONTACTS - len(expected)

    bulk = await bridge.salesforce.admin("GET", "/bulk")
    assert bulk["jobs_created"] == 1 and bulk["jobs"] == []  # read once, then deleted
    # One write per contact, a read of each matched profile and a few pages: no searches (the
    # engine used to spend two per unlinked contact, on the link field and the e-mail address).
    spent = (await bridge.copernica.admin("GET", "stats"))["api_calls"] - calls_before
    assert spent <= CONTACTS + len(expected) + 10, spent


async def test_below_the_threshold_the_rest_query_is_used(
    bridge: RunningBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "BULK_FROM", 300)
    await set_tenant(bridge, direction="sf_to_cp")
    await bridge.salesforce.admin(
        "POST", "/records/Contact", {"records": [{"LastName": f"Few{i}"} for i in range(20)]}
    )
    message = await full_sync(bridge)
    assert "20 record(s) compared" in message
    assert len(await links(bridge)) == 20
    assert (await bridge.salesforce.admin("GET", "/bulk"))["jobs_created"] == 0
