"""Echo suppression does not depend on ``changeOrigin``: Salesforce documents
``Sforce-Call-Options`` for sObject Rows, Query and Bulk, not for the sObject Collections the
bridge writes with — and the sandbox, by default, leaves the bridge's client id out of those
writes' change events. 500 Copernica edits then cause at most 500 Salesforce writes and no
Copernica write: the echoes are recognised by their fingerprints."""

from __future__ import annotations

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
from tests.fixtures.bridge import RunningBridge

RECORDS = 25
EDITS = 500


async def test_copernica_edits_come_back_as_unmarked_events_and_loop_nowhere(
    bridge: RunningBridge,
) -> None:
    variants = await bridge.salesforce.admin("GET", "/variants")
    assert variants["collections_call_options"] is False  # the documented default
    pairs = {}
    for n in range(RECORDS):
        sf_id = await create_contact(bridge, FirstName="E", LastName=f"Echo{n}", Email=f"e{n}@x.org")
        pairs[sf_id] = ""
    for sf_id in pairs:
        pairs[sf_id] = str((await eventually(lambda s=sf_id: profile_of(bridge, s)))["ID"])
    await quiet(bridge)
    sf_before, cp_before = await bridge_writes(bridge)
    events_before = (await bridge.salesforce.admin("GET", "/cdc/events"))["latest"]

    rng = random.Random(500)

    async def edit(n: int) -> None:
        sf_id = rng.choice(list(pairs))
        field = rng.choice(("Title", "FirstName"))
        await bridge.copernica.admin(
            "PUT", f"profiles/{pairs[sf_id]}", {"fields": {field: f"{field}-{n}"}}
        )

    for start in range(0, EDITS, 25):
        await asyncio.gather(*(edit(n) for n in range(start, start + 25)))
    await quiet(bridge, within=90)

    sf_writes, cp_writes = await bridge_writes(bridge)
    assert 0 < sf_writes - sf_before <= EDITS
    assert cp_writes == cp_before  # no echo went back to Copernica
    origins = [
        e.data["payload"]["ChangeEventHeader"]["changeOrigin"]
        for e in bridge.salesforce.state.org.events.events
        if e.replay_id > events_before
    ]
    assert origins and not any("client=" in o for o in origins)  # the echoes are unmarked
    print(f"\n{EDITS} edits -> {sf_writes - sf_before} Salesforce writes, {len(origins)} echoes")
    assert await assert_sides_agree(bridge) == RECORDS
    await quiet(bridge)  # and it stays so: a loop would keep writing
    assert await bridge_writes(bridge) == (sf_writes, cp_writes)
