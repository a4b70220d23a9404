"""Self-healing through the running app, both sandboxes over HTTP and PostgreSQL: faults of the
field heal by themselves, the status says honestly how it is, a lost delete is found by the
next reconcile, held jobs come back when what held them is fixed, and switching the synced
Copernica database never touches the old one."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiohttp.test_utils import TestServer

from bridge.app import create_app
from bridge.copernica.client import CopernicaClient
from bridge.supervise import healthy as supervise_healthy
from bridge.sync import reconcile
from bridge.sync.runs import get_run, request_sync, status
from bridge.tenants import CopernicaCredentials, save_credentials
from bridge.vocabulary import webhook_url
from bridge.web import health
from bridge.web.keys import METRICS, PLATFORMS, QUEUE, SUPERVISOR, VAULT
from sandbox.copernica import SandboxSettings as CopernicaSettings
from tests.e2e.sync_helpers import (
    assert_sides_agree,
    contacts,
    create_contact,
    create_profile,
    eventually,
    links,
    profile_of,
    profiles,
    quiet,
    set_tenant,
)
from tests.fixtures.bridge import QUICK_SYNC
from tests.fixtures.shutdown import close_server, start


@pytest.fixture
def copernica_settings(copernica_signing_key):
    """Copernica retries a failed webhook delivery (its real schedule is not documented; the
    emulator's is configurable): here up to 10 attempts, doubling from 0.1 s."""
    return CopernicaSettings(
        signing_key_pem=copernica_signing_key,
        webhook_retry_base=0.1,
        webhook_max_attempts=10,
        webhook_timeout=2.0,
    )


async def _problems(bridge) -> list[str]:
    async with bridge.pool.acquire() as conn:
        return [p["text"] for p in (await status(conn, bridge.tenant.id))["problems"]]


async def _metrics(bridge) -> str:
    return bridge.app[METRICS].render().decode()


@pytest.mark.timeout(180)
async def test_a_killed_stream_and_failing_copernica_heal_without_anyone_pressing_a_button(bridge):
    pairs = []
    for n in range(4):
        sf_id = await create_contact(bridge, LastName=f"Heal {n}", Email=f"heal{n}@x.org")
        pairs.append((sf_id, str((await eventually(lambda s=sf_id: profile_of(bridge, s), 20))["ID"])))
    await quiet(bridge)

    # The stream's connection dies and CometD answers 500 for a while; Copernica's REST API
    # answers 500 and its webhook deliveries fail (it retries them, doubling the wait).
    await bridge.salesforce.admin("POST", "/faults", {"path": "/cometd*", "status": 500, "times": 6})
    await bridge.salesforce.admin("POST", "/streaming/drop", {})
    await bridge.copernica.admin("POST", "faults", {"status": 500, "count": 40})
    await bridge.copernica.admin("POST", "webhooks/faults", {"fail": 15})

    for n, (sf_id, cp_id) in enumerate(pairs):
        await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"Title": f"sf {n}"})
        await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"FirstName": f"cp {n}"}})
    made_sf = await create_contact(bridge, LastName="Made in Salesforce", Email="msf@x.org")
    made_cp = await create_profile(bridge, LastName="Made in Copernica", Email="mcp@x.org")

    # meanwhile the status bar says what fails instead of nothing
    problems = await eventually(lambda: _problems(bridge), 30)
    assert any(p.startswith("Copernica failing since ") and "retrying (attempt " in p
               for p in problems), problems

    await quiet(bridge, within=120)
    assert await assert_sides_agree(bridge) == 6
    by_id = {c["Id"]: c for c in await contacts(bridge)}
    for n, (sf_id, _) in enumerate(pairs):
        assert by_id[sf_id]["FirstName"] == f"cp {n}"
        assert (await profile_of(bridge, sf_id))["fields"]["Title"] == f"sf {n}"
    assert await profile_of(bridge, made_sf) is not None
    assert any(c["LastName"] == "Made in Copernica" for c in by_id.values()), made_cp
    await eventually(lambda: _no(_problems(bridge)), 30)  # and it says so when it is over

    # Whether the failed webhooks' changes came late or by the reconcile depends on which
    # deliveries drew the failures; a change after the healing travels in real time either way.
    sf_id, cp_id = pairs[0]
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"FirstName": "healed"}})

    async def landed() -> bool:
        return any(c["Id"] == sf_id and c["FirstName"] == "healed" for c in await contacts(bridge))

    await eventually(landed, 30)
    needles = (f'bridge_stream_connected{{tenant="{bridge.tenant.id}"}} 1.0',
               'bridge_sync_lag_seconds_count{direction="sf_to_cp"}',
               'bridge_sync_lag_seconds_count{direction="cp_to_sf"}',
               'bridge_api_calls_total{platform="copernica"}',
               'bridge_api_calls_total{platform="salesforce"}',
               'bridge_database_up 1.0')

    async def missing() -> list[str]:  # the lag is observed once the batch is recorded
        text = await _metrics(bridge)
        return [needle for needle in needles if needle not in text]

    await eventually(lambda: _no(missing()), 30)


async def _no(check) -> bool:
    return not await check


@pytest.mark.timeout(120)
async def test_a_salesforce_delete_whose_event_was_lost_is_applied_by_the_next_reconcile(
    bridge_setup,
):
    setup = bridge_setup
    async with setup.pool.acquire() as conn:
        from bridge.tenants import update_tenant

        setup.tenant = await update_tenant(conn, setup.tenant.id, apply_deletes=True)
    # no stream: every change event is lost; webhooks still arrive
    options = dataclasses.replace(QUICK_SYNC, streams=False)
    app = create_app(setup.settings, sync_options=options)
    server = await start(TestServer(app, host="127.0.0.1", port=setup.settings.port))
    try:
        bridge = dataclasses.replace(setup, app=app)
        records = [{"LastName": f"Kept {n}", "Email": f"kept{n}@x.org"} for n in range(3)]
        ids = (await setup.salesforce.admin("POST", "/records/Contact", {"records": records}))["ids"]
        for sf_id in ids:  # the first full sync links them
            await eventually(lambda s=sf_id: profile_of(bridge, s), 30)
        await _settled_without_stream(bridge)  # the echoes of those creates included
        doomed, kept = ids[0], ids[1]
        gone_in_copernica = str((await profile_of(bridge, ids[2]))["ID"])

        await setup.salesforce.admin("DELETE", f"/contacts/{doomed}")  # its event is lost
        await bridge.copernica.admin("POST", "webhooks/faults", {"fail": 100})
        await bridge.copernica.admin("DELETE", f"profiles/{gone_in_copernica}")  # webhook lost
        await asyncio.sleep(0.5)  # (nothing would apply either by itself)
        assert await profile_of(bridge, doomed) is not None

        async with setup.pool.acquire() as conn:  # the day's first reconcile: deletes too
            await conn.execute(
                "UPDATE watermarks SET value = value - interval '1 day'"
                " WHERE tenant_id = $1 AND name = $2",
                setup.tenant.id, reconcile.DELETES_WATERMARK,
            )
        run_id = await request_sync(app[QUEUE], setup.tenant.id, "reconcile", "scheduler")

        async def finished():
            async with setup.pool.acquire() as conn:
                run = await get_run(conn, setup.tenant.id, run_id)
            return run if run.state in ("done", "failed") else None

        run = await eventually(finished, 60)
        assert run.state == "done", run.message
        assert await profile_of(bridge, doomed) is None  # deleted: apply deletes is on
        assert await profile_of(bridge, kept) is not None
        linked = await links(bridge)
        assert doomed not in linked and gone_in_copernica not in linked.values()
        assert ids[2] in {c["Id"] for c in await contacts(bridge)}  # never deleted in Salesforce
    finally:
        await close_server(server, "the bridge")


async def _settled_without_stream(bridge) -> None:
    calm = 0

    async def settled() -> bool:
        nonlocal calm
        pending = (await bridge.copernica.admin("POST", "webhooks/drain"))["pending"]
        async with bridge.pool.acquire() as conn:
            jobs = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind IN ('sync', 'reconcile')",
                bridge.tenant.id,
            )
        calm = calm + 1 if pending == 0 and jobs == 0 else 0
        return calm >= 3

    await eventually(settled, 30)


async def _salesforce_reports(bridge) -> list[dict]:
    client = await bridge.app[PLATFORMS].salesforce(bridge.tenant.id)
    return [r async for r in client.query(
        "SELECT Id, Category__c, Status__c FROM Copernica_Sync_Error__c"
    )]


@pytest.mark.timeout(120)
async def test_jobs_held_for_a_wrong_copernica_token_come_back_when_it_is_fixed(
    web_bridge, web_user
):
    bridge = web_bridge
    good = bridge.copernica.state.settings.api_token
    async with bridge.pool.acquire() as conn:  # someone saved a wrong token
        await save_credentials(conn, bridge.app[VAULT], bridge.tenant.id,
                               CopernicaCredentials(api_token="wrong-token", hostname=bridge.copernica.url))
    sf_id = await create_contact(bridge, LastName="Held", Email="held@x.org")

    async def held():
        async with bridge.pool.acquire() as conn:
            return await conn.fetch(
                "SELECT id, error_category, error_platform FROM jobs WHERE tenant_id = $1"
                " AND state = 'held' AND kind = 'sync'", bridge.tenant.id,
            )

    jobs = await eventually(held, 30)
    assert {(j["error_category"], j["error_platform"]) for j in jobs} == {("auth", "copernica")}
    records = await eventually(lambda: _salesforce_reports(bridge), 30)
    assert {r["Status__c"] for r in records} == {"open"}
    await web_user.login(bridge.email)
    for page in ("/sfcp/status.json", "/sfcp", "/dashboard"):  # the status bar, the dashboard
        code, text = await web_user.get(page)
        assert code == 200 and "Copernica failing since" in text, (page, text[:2000])

    # the administrator saves the right token: the held job comes back and applies
    code, _ = await web_user.post("/config/copernica", {"api_token": good, "hostname": bridge.copernica.url})
    assert code == 200
    await eventually(lambda: profile_of(bridge, sf_id), 30)
    assert not await held()
    async with bridge.pool.acquire() as conn:
        statuses = {r["status"] for r in await conn.fetch(
            "SELECT status FROM error_reports WHERE tenant_id = $1", bridge.tenant.id)}
    assert statuses == {"resolved"}

    async def resolved_in_salesforce():
        return all(r["Status__c"] == "resolved" for r in await _salesforce_reports(bridge))

    await eventually(resolved_in_salesforce, 30)


@pytest.mark.timeout(120)
async def test_a_task_failing_for_long_is_a_report_and_readyz_is_503_until_it_works(
    bridge, monkeypatch
):
    import aiohttp

    monkeypatch.setattr(health, "READY_FAILING", 0.2)
    supervisor = bridge.app[SUPERVISOR]
    monkeypatch.setattr(supervisor, "report_after", 0.3)
    works = asyncio.Event()

    async def flaky() -> None:
        if not works.is_set():
            raise RuntimeError("this task cannot work")
        supervise_healthy()
        await asyncio.Event().wait()

    supervisor.spawn("flaky", flaky)
    async with aiohttp.ClientSession() as http:

        async def unready():
            async with http.get(f"{bridge.url}/readyz") as reply:
                return await reply.json() if reply.status == 503 else None

        reply = await eventually(unready, 10)
        assert reply["failing_tasks"][0]["task"] == "flaky"
        async with http.get(f"{bridge.url}/healthz") as alive:
            assert alive.status == 200  # alive all along

        async def reported():
            async with bridge.pool.acquire() as conn:
                return await conn.fetchrow(
                    "SELECT status, message FROM error_reports WHERE tenant_id = $1"
                    " AND message LIKE '%keeps failing%'", bridge.tenant.id,
                )

        report = await eventually(reported, 20)
        assert report["status"] == "open" and "RuntimeError" in report["message"]
        assert "cannot work" not in report["message"]  # details stay in the operator's log
        works.set()
        supervisor.poke()

        async def ready():
            async with http.get(f"{bridge.url}/readyz") as reply:
                return reply.status == 200

        await eventually(ready, 10)
        await eventually(lambda: _status_is(reported, "resolved"), 10)
    assert 'bridge_task_restarts_total{task="flaky"}' in await _metrics(bridge)
    await supervisor.cancel("flaky")


async def _status_is(fetch, status: str) -> bool:
    row = await fetch()
    return row is not None and row["status"] == status


@pytest.mark.timeout(180)
async def test_switching_the_synced_database_never_touches_the_old_one(web_bridge, web_user):
    bridge = web_bridge
    await set_tenant(bridge, apply_deletes=True)
    ids = [await create_contact(bridge, LastName=f"Switch {n}", Email=f"sw{n}@x.org")
           for n in range(4)]
    for sf_id in ids:
        await eventually(lambda s=sf_id: profile_of(bridge, s), 30)
    await quiet(bridge, within=60)
    old = bridge.tenant.copernica_database
    before = {p["ID"]: p for p in await profiles(bridge)}
    async with CopernicaClient.for_sandbox(bridge.copernica.url) as client:
        new = str(await client.create_database("Second", description="switched to"))
        for name in ("FirstName", "LastName", "Email", "Title"):
            await client.create_field(new, name, "text")

    await web_user.login(bridge.email)
    code, page = await web_user.post("/config/database", {"database": new})
    assert code == 200 and "Yes, switch to Second" in page  # it says what happens, and asks
    assert "Nothing in" in page and "is deleted or changed" in page
    assert bridge.tenant.copernica_database == old  # nothing happened yet
    code, page = await web_user.post("/config/database", {"database": new, "confirm": "yes"})
    assert "Switched to Second" in page, page
    await bridge.reload_tenant()
    assert bridge.tenant.copernica_database == new

    # edits and a delete after the switch: only the new database may see them
    await bridge.salesforce.admin("PATCH", f"/contacts/{ids[0]}", {"Title": "after the switch"})
    await bridge.salesforce.admin("DELETE", f"/contacts/{ids[1]}")
    await quiet(bridge, within=90)
    live = [i for i in ids if i != ids[1]]
    in_new = {p["fields"].get("SalesforceId") for p in await profiles(bridge)}
    assert in_new == set(live)  # every contact, now in the new database
    assert (await profile_of(bridge, ids[0]))["fields"]["Title"] == "after the switch"

    raw = await bridge.copernica.admin("GET", f"databases/{old}/profiles")
    after = {p["ID"]: p for p in raw["data"]}
    assert after.keys() == before.keys()
    for profile_id, profile in before.items():  # not one profile of the old database changed
        assert not after[profile_id].get("removed")
        assert after[profile_id]["fields"] == profile["fields"]
        assert after[profile_id]["modified"] == profile["modified"]
    hooks = (await bridge.copernica.admin("GET", "webhooks"))["data"]
    url = webhook_url(bridge.settings.public_url, bridge.tenant.hook_token)
    mine = [h for h in hooks if h["handler"] == url]
    assert mine and all(str(h["database"]) == new for h in mine), mine
