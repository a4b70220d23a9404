"""A reconcile reads every page of ``profileids`` (paged at 100 here, as Copernica may): of 2,500
linked profiles none is taken for deleted, and the one profile that is gone is found."""

from __future__ import annotations

from tests.e2e.sync_helpers import run_to_end, set_tenant
from tests.fixtures.bridge import RunningBridge

LINKED = 2500


async def test_a_reconcile_reads_every_page_of_profile_ids(bridge: RunningBridge) -> None:
    await set_tenant(bridge, direction="sf_to_cp")  # compare links and profile ids only
    database = bridge.tenant.copernica_database
    rows = [{"fields": {"Email": f"p{n}@x.org"}} for n in range(LINKED)] + [
        {"fields": {}, "removed": True}
    ]
    seeded = await bridge.copernica.admin("POST", f"databases/{database}/profiles/seed",
                                          {"profiles": rows})
    gone = seeded["ids"][-1]
    async with bridge.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO links (tenant_id, salesforce_id, copernica_id) VALUES ($1, $2, $3)",
            [(bridge.tenant.id, f"003{n:015d}", cp_id) for n, cp_id in enumerate(seeded["ids"])],
        )
    await bridge.copernica.admin("POST", "variants", {"profileids_cap": 100})

    state, message = await run_to_end(bridge, "full", within=60)
    assert state == "done", message
    assert ", 1 brought up to date" in message  # only the profile that is gone
    async with bridge.pool.acquire() as conn:
        audited = await conn.fetch(
            "SELECT copernica_id FROM audit_log WHERE tenant_id = $1 AND action = 'copernica_delete'",
            bridge.tenant.id,
        )
        still_linked = await conn.fetchval(
            "SELECT count(*) FROM links WHERE tenant_id = $1 AND copernica_id <> $2",
            bridge.tenant.id, gone,
        )
    assert [r["copernica_id"] for r in audited] in ([], [gone])
    assert still_linked == LINKED
