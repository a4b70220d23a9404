"""API economy: a burst of edits to linked records costs the floor of calls. A change event
carries the changed fields' values and a webhook the whole profile, so the engine reads
neither side: Salesforce → Copernica costs one Copernica write per profile and no Salesforce
call; Copernica → Salesforce costs one sObject Collections call per batch and no Copernica call
(the change events echoing those writes merge to nothing without a read).

Reads are made to fail meanwhile (Salesforce queries, Copernica GETs): a read would hold the
changes back, so their landing proves there was none."""

from __future__ import annotations

import asyncio

from bridge.sync.snapshot import FRESHNESS
from tests.e2e.sync_helpers import (
    assert_sides_agree,
    contacts,
    create_contact,
    eventually,
    links,
    profiles,
    quiet,
)
from tests.fixtures.bridge import RunningBridge

RECORDS = 40


async def _linked_pairs(bridge: RunningBridge) -> dict[str, str]:
    """RECORDS contacts synced to profiles, their agreements old enough to be trusted."""
    for n in range(RECORDS):
        await create_contact(bridge, FirstName="Lean", LastName=f"Burst{n}", Email=f"lean{n}@x.org")
    pairs = await eventually(lambda: _all_linked(bridge), within=60)
    await quiet(bridge, within=60)

    # A burst a second later still: Copernica keeps whole seconds.
    await agreements_settled(bridge, FRESHNESS + 1)
    return pairs


async def agreements_settled(bridge: RunningBridge, older_than: float = FRESHNESS) -> None:
    """Until every link's agreement is older than ``older_than`` seconds: news known within
    FRESHNESS of an agreement may predate the bridge's own write, and the engine reads again."""

    async def settled() -> bool:
        async with bridge.pool.acquire() as conn:
            return bool(await conn.fetchval(
                "SELECT bool_and(synced_at < now() - make_interval(secs => $2)) FROM links"
                " WHERE tenant_id = $1", bridge.tenant.id, older_than,
            ))

    await eventually(settled, within=15)


async def _all_linked(bridge: RunningBridge) -> dict[str, str] | None:
    found = await links(bridge)
    return found if len(found) == RECORDS else None


async def _calls(bridge: RunningBridge) -> tuple[int, int]:
    """API calls each sandbox received so far (Salesforce, Copernica)."""
    sf = (await bridge.salesforce.admin("GET", "/"))["api_usage"]["used"]
    cp = (await bridge.copernica.admin("GET", "stats"))["api_calls"]
    return int(sf), int(cp)


async def test_salesforce_edits_of_linked_contacts_cost_one_copernica_call_each(
    bridge: RunningBridge,
) -> None:
    pairs = await _linked_pairs(bridge)
    await bridge.salesforce.admin("POST", "/faults", {"path": "*/query*", "status": 500})
    sf_before, cp_before = await _calls(bridge)

    await asyncio.gather(*(
        bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"FirstName": f"Sf{n}", "Title": f"T{n}"})
        for n, sf_id in enumerate(pairs)
    ))

    async def landed() -> bool:
        return {p["fields"].get("Title") for p in await profiles(bridge)} == {
            f"T{n}" for n in range(RECORDS)
        }

    await eventually(landed, within=60)
    await quiet(bridge, within=60)
    sf_after, cp_after = await _calls(bridge)
    print(f"\n{RECORDS} Salesforce edits: {sf_after - sf_before} Salesforce calls, "
          f"{cp_after - cp_before} Copernica calls")
    assert sf_after - sf_before == 0
    assert cp_after - cp_before == RECORDS  # one update per profile; their webhooks: echoes
    await bridge.salesforce.admin("DELETE", "/faults")
    assert await assert_sides_agree(bridge) == RECORDS


async def test_copernica_edits_of_linked_profiles_cost_one_salesforce_call_per_batch(
    bridge: RunningBridge,
) -> None:
    pairs = await _linked_pairs(bridge)
    await bridge.copernica.admin("POST", "faults", {"status": 500, "count": 10_000, "method": "GET"})
    await bridge.salesforce.admin("POST", "/faults", {"path": "*/query*", "status": 500})
    sf_before, cp_before = await _calls(bridge)

    await asyncio.gather(*(
        bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Title": f"C{n}"}})
        for n, cp_id in enumerate(pairs.values())
    ))

    async def landed() -> bool:
        return {c.get("Title") for c in await contacts(bridge)} == {f"C{n}" for n in range(RECORDS)}

    await eventually(landed, within=60)
    await quiet(bridge, within=60)
    sf_after, cp_after = await _calls(bridge)
    print(f"\n{RECORDS} Copernica edits: {sf_after - sf_before} Salesforce calls, "
          f"{cp_after - cp_before} Copernica calls")
    assert cp_after - cp_before == 0  # the sandbox counts the faulted reads: there were none
    # Collections calls only (no query got through), one per batch: fewer than the edits,
    # however the batching windows fell
    assert 1 <= sf_after - sf_before < RECORDS
    await bridge.copernica.admin("POST", "faults", {"status": 0, "count": 0})
    await bridge.salesforce.admin("DELETE", "/faults")
    assert await assert_sides_agree(bridge) == RECORDS
