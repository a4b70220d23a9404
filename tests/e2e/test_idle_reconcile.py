"""An idle tenant's hourly reconcile is cheap: at most 3 calls on each side, however many records
the tenant has, because the look for Copernica deletes no webhook announced (which reads every
profile id) is made by the first reconcile of a day, not by every one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.sync import reconcile
from tests.e2e.sync_helpers import eventually, run_to_end
from tests.fixtures.bridge import RunningBridge

LINKED = 2500  # profile ids come in pages of 1,000: 3 pages, were they read


async def api_calls(bridge: RunningBridge) -> tuple[int, int]:
    """(Salesforce, Copernica) API calls so far, by the sandboxes' own counters."""
    salesforce = (await bridge.salesforce.admin("GET", ""))["api_usage"]["used"]
    copernica = (await bridge.copernica.admin("GET", "stats"))["api_calls"]
    return int(salesforce), int(copernica)


async def reconcile_run(bridge: RunningBridge) -> tuple[str, tuple[int, int]]:
    """Run one reconcile; its message and the calls it cost on each side."""
    before = await api_calls(bridge)
    state, message = await run_to_end(bridge, "reconcile", within=60)
    assert state == "done", message
    after = await api_calls(bridge)
    return message, (after[0] - before[0], after[1] - before[1])


async def test_an_idle_tenants_hourly_reconcile_costs_at_most_three_calls_a_side(
    bridge: RunningBridge,
) -> None:
    async def first_sync_over() -> bool:
        async with bridge.pool.acquire() as conn:
            states = {r["state"] for r in await conn.fetch(
                "SELECT state FROM sync_runs WHERE tenant_id = $1", bridge.tenant.id
            )}
        return bool(states) and not states & {"queued", "running"}

    await eventually(first_sync_over, within=60)
    database = bridge.tenant.copernica_database
    rows = [{"fields": {"Email": f"p{n}@x.org"}} for n in range(LINKED)]
    rows.append({"fields": {}, "removed": True})  # deleted while no webhook reached the bridge
    seeded = await bridge.copernica.admin(
        "POST", f"databases/{database}/profiles/seed", {"profiles": rows}
    )
    # the last run began after these records last changed (and beyond the overlap it re-reads)
    last_run = datetime.now(UTC) + reconcile.OVERLAP + timedelta(minutes=1)
    async with bridge.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO links (tenant_id, salesforce_id, copernica_id) VALUES ($1, $2, $3)",
            [(bridge.tenant.id, f"003{n:015d}", cp_id) for n, cp_id in enumerate(seeded["ids"])],
        )
        for name in (reconcile.WATERMARK, reconcile.DELETES_WATERMARK):  # the last run's
            await conn.execute(
                "INSERT INTO watermarks (tenant_id, name, value) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value",
                bridge.tenant.id, name, last_run,
            )

    message, (salesforce, copernica) = await reconcile_run(bridge)
    assert salesforce <= 3 and copernica <= 3, (salesforce, copernica, message)
    assert ", 0 brought up to date" in message

    # a day after the last look for missed deletes, the reconcile looks again and finds it
    async with bridge.pool.acquire() as conn:
        for name, value in ((reconcile.WATERMARK, last_run),
                            (reconcile.DELETES_WATERMARK, last_run - reconcile.DELETES_EVERY * 2)):
            await conn.execute(
                "UPDATE watermarks SET value = $3 WHERE tenant_id = $1 AND name = $2",
                bridge.tenant.id, name, value,
            )
    message, (_, copernica) = await reconcile_run(bridge)
    assert ", 1 brought up to date" in message  # the profile that is gone
    assert copernica > 3  # every page of profile ids
