"""No loops: after 1,000 random edits spread over both sides, each side
received no more writes from the bridge than edits were made on the other side — none of them
an echo — and both sides agree field by field."""

import asyncio
import random

from tests.e2e.sync_helpers import (
    assert_sides_agree,
    bridge_writes,
    create_contact,
    eventually,
    profile_of,
    quiet,
)

RECORDS = 40
EDITS = 1000


async def test_a_thousand_random_edits_make_no_echo_writes(bridge):
    rng = random.Random(2026)
    pairs = []
    for n in range(RECORDS):
        sf_id = await create_contact(bridge, FirstName="F", LastName=f"L{n}", Email=f"p{n}@x.org")
        pairs.append(sf_id)
    cp_ids = {}
    for sf_id in pairs:
        cp_ids[sf_id] = str((await eventually(lambda sf_id=sf_id: profile_of(bridge, sf_id)))["ID"])
    await quiet(bridge)
    sf_before, cp_before = await bridge_writes(bridge)

    edits = {"salesforce": 0, "copernica": 0}

    async def edit(n: int) -> None:
        sf_id = rng.choice(pairs)
        field = rng.choice(("Title", "FirstName"))
        value = f"{field}-{n}"
        if rng.random() < 0.5:
            edits["salesforce"] += 1
            await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {field: value})
        else:
            edits["copernica"] += 1
            await bridge.copernica.admin("PUT", f"profiles/{cp_ids[sf_id]}", {"fields": {field: value}})

    for start in range(0, EDITS, 20):
        await asyncio.gather(*(edit(n) for n in range(start, start + 20)))
    await quiet(bridge, within=60)

    sf_writes, cp_writes = await bridge_writes(bridge)
    to_salesforce, to_copernica = sf_writes - sf_before, cp_writes - cp_before
    assert 0 < to_salesforce <= edits["copernica"]
    assert 0 < to_copernica <= edits["salesforce"]
    assert await assert_sides_agree(bridge) == RECORDS

    await asyncio.sleep(2)  # an echo loop would keep writing
    assert await bridge_writes(bridge) == (sf_writes, cp_writes)
    print(f"\n{edits} edits -> {to_salesforce} writes to Salesforce, {to_copernica} to Copernica")
