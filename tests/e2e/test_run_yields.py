"""A full sync lets real-time changes go first, whichever tenant's: while one is being applied
(here: another tenant's, by another process, whose lease is held), the full sync's writes wait
for it — a bounded while each, so the run still ends — and with none in flight they never wait."""

from __future__ import annotations

import secrets

from bridge.tenants import create_tenant
from bridge.web.keys import METRICS
from sandbox.demo import seed_contacts
from tests.e2e.sync_helpers import eventually, profiles, run_to_end
from tests.fixtures.bridge import RunningBridge

CONTACTS = 24


def yields(bridge: RunningBridge) -> float:
    return bridge.app[METRICS].registry.get_sample_value("bridge_run_yields_total") or 0.0


async def first_sync_over(bridge: RunningBridge) -> bool:
    async with bridge.pool.acquire() as conn:
        states = {r["state"] for r in await conn.fetch(
            "SELECT state FROM sync_runs WHERE tenant_id = $1", bridge.tenant.id
        )}
    return bool(states) and not states & {"queued", "running"}


async def test_a_full_sync_waits_for_a_real_time_change_in_flight_and_still_ends(
    bridge: RunningBridge,
) -> None:
    await eventually(lambda: first_sync_over(bridge), within=60)
    other = await create_tenant(bridge.pool, f"t-{secrets.token_hex(5)}")
    async with bridge.pool.acquire() as conn:  # a change another process is applying now
        await conn.execute(
            "INSERT INTO jobs (tenant_id, kind, key, payload, state, attempts, locked_until,"
            " locked_by, priority) VALUES ($1, 'sync', 'sf:003000000000000AAA', '{}', 'running',"
            " 1, now() + interval '10 minutes', 'elsewhere:1', 0)",
            other.id,
        )
    await seed_contacts(bridge.salesforce.url, CONTACTS, seed=1)
    state, message = await run_to_end(bridge, "full", within=120)
    assert state == "done", message
    assert len(await profiles(bridge)) == CONTACTS  # not starved: every contact arrived
    waited = yields(bridge)
    assert waited >= 1, "the full sync's writes did not wait for the real-time change"

    async with bridge.pool.acquire() as conn:  # that change is applied: nothing in flight now
        await conn.execute("DELETE FROM jobs WHERE locked_by = 'elsewhere:1'")
    await seed_contacts(bridge.salesforce.url, CONTACTS, seed=2)  # more for the next run
    state, message = await run_to_end(bridge, "full", within=120)
    assert state == "done", message
    assert len(await profiles(bridge)) == 2 * CONTACTS
    assert yields(bridge) == waited  # nothing to wait for, no write waited
