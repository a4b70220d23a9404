"""A run ends once what it queued is applied, however busy the tenant stays: the changes that
keep coming after it queued its work are not waited for. Here, five contacts' changes each wait
a second before they are due (as a retry would), one arriving every 0.1 s, so one always waits."""

from __future__ import annotations

import asyncio
import itertools

from bridge.sync.engine import salesforce_key
from bridge.sync.jobs import JobQueue
from bridge.sync.snapshot import salesforce_read_payload
from bridge.vocabulary import SYNC
from tests.e2e.sync_helpers import create_contact, eventually, profile_of, run_to_end
from tests.fixtures.bridge import RunningBridge


async def test_a_run_ends_while_changes_keep_coming(bridge: RunningBridge) -> None:
    sf_ids = [
        await create_contact(bridge, FirstName="Busy", LastName=f"Tenant {n}", Email=f"b{n}@t.example")
        for n in range(5)
    ]
    for sf_id in sf_ids:
        await eventually(lambda sf_id=sf_id: profile_of(bridge, sf_id))
    queue, run_over = JobQueue(bridge.pool), asyncio.Event()
    changes = 0

    async def traffic() -> None:  # two minutes at most
        nonlocal changes
        for sf_id in itertools.islice(itertools.cycle(sf_ids), 1200):
            if run_over.is_set():
                return
            payload = {"sf_id": sf_id} | salesforce_read_payload()
            await queue.enqueue(bridge.tenant.id, SYNC, salesforce_key(sf_id), payload, delay=1.0)
            changes += 1
            await asyncio.sleep(0.1)

    busy = asyncio.create_task(traffic())
    try:
        await eventually(lambda: asyncio.sleep(0, changes >= 15))  # the traffic is on
        state, message = await run_to_end(bridge, "reconcile", within=60)
        assert not busy.done(), "the run waited for the traffic to stop"
    finally:
        run_over.set()
        await busy
    assert state == "done", message
