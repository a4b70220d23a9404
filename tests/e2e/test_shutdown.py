"""Stopping is bounded: SIGTERM to a `bridge serve` with a thousand jobs in flight ends the
process within 10 s, with its batches handed back and its leases and locks released; a second
process finishes the work, and nothing is lost or done twice."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.e2e.sync_helpers import assert_sides_agree, eventually, quiet
from tests.e2e.test_sync_processes import BridgeProcess

CONTACTS = 1000


async def _progress(setup) -> tuple[int, int]:
    async with setup.pool.acquire() as conn:
        linked = await conn.fetchval("SELECT count(*) FROM links WHERE tenant_id = $1", setup.tenant.id)
        waiting = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'sync'", setup.tenant.id
        )
    return linked, waiting


@pytest.mark.timeout(300)
async def test_sigterm_with_a_thousand_jobs_in_flight_exits_within_10_s_and_loses_nothing(
    bridge_setup,
):
    setup = bridge_setup
    records = [{"FirstName": "T", "LastName": f"Term {n}", "Email": f"term{n}@x.org"}
               for n in range(CONTACTS)]
    await setup.salesforce.admin("POST", "/records/Contact", {"records": records})
    first = BridgeProcess(setup, setup.settings.port)
    second = BridgeProcess(setup, setup.settings.port)
    try:
        await first.start()  # its first full sync queues a job per contact

        async def busy() -> bool:
            linked, waiting = await _progress(setup)
            return linked >= 50 and waiting >= 300

        await eventually(busy, 120)
        linked_before, waiting_before = await _progress(setup)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        await asyncio.wait_for(first.proc.wait(), 30)
        took = time.monotonic() - stopping
        assert took < 10, f"the process needed {took:.1f} s to stop"
        assert first.proc.returncode == 0
        async with setup.pool.acquire() as conn:  # nothing left claimed by the stopped process
            running = await conn.fetchval("SELECT count(*) FROM jobs WHERE state = 'running'")
            locks = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
        assert running == 0 and locks == 0

        await second.start()
        await quiet(setup, within=180)
        async with setup.pool.acquire() as conn:
            held = await conn.fetch("SELECT key, last_error FROM jobs WHERE state = 'held'")
        assert not held, [tuple(h) for h in held]
        assert await assert_sides_agree(setup) == CONTACTS  # one profile each: none twice
        print(f"\nSIGTERM with {waiting_before} sync jobs waiting and {linked_before} linked: "
              f"exit after {took:.2f} s")
    finally:
        await first.stop()
        await second.stop()
