"""The status bar tells the truth, in a real Chromium: during a first sync of 5,000 contacts
its "done" grows steadily, from well short of the total to the total; a failing Salesforce shows within 10 s;
with automatic sync off, a change that waits is shown."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator

import pytest

from bench.harness import seed
from bridge.app import create_app
from bridge.sync.runs import request_sync
from bridge.tenants import update_tenant
from bridge.web.keys import QUEUE
from tests.e2e.sync_helpers import create_profile, eventually, quiet, set_tenant
from tests.fixtures.bridge import QUICK_SYNC, RunningBridge
from tests.fixtures.shutdown import close_server, start

pytestmark = [pytest.mark.browser]

CONTACTS = 5_000


async def login(page, bridge) -> None:
    await page.goto(f"{bridge.url}/sfcp")
    await page.get_by_label("E-mail address").fill(bridge.email)
    await page.get_by_label("Password").fill("a-long-test-password")
    await page.get_by_role("button", name="Login").click()
    await page.locator("#status-bar").wait_for()


@pytest.fixture
async def seeded_bridge(bridge_setup: RunningBridge) -> AsyncIterator[RunningBridge]:
    """5,000 contacts in Salesforce before the bridge starts; automatic sync off until the test
    starts the first full sync, with the page already watching."""
    from aiohttp.test_utils import TestServer

    await seed(bridge_setup.salesforce.url, CONTACTS)
    async with bridge_setup.pool.acquire() as conn:
        tenant = await update_tenant(conn, bridge_setup.tenant.id, auto_sync=False)
    app = create_app(bridge_setup.settings, sync_options=QUICK_SYNC)
    server = await start(TestServer(app, host="127.0.0.1", port=bridge_setup.settings.port))
    try:
        yield dataclasses.replace(bridge_setup, app=app, tenant=tenant)
    finally:
        await close_server(server, "the bridge")


async def _bar(page) -> tuple[str, int | None, int | None, str]:
    """What the run's line shows: state, done, total (as the script set them) and its text."""
    return tuple(await page.locator("#run-state").evaluate(
        """e => [e.dataset.state, e.dataset.done ? Number(e.dataset.done) : null,
                 e.dataset.total ? Number(e.dataset.total) : null, e.textContent]"""
    ))


@pytest.mark.timeout(1500)
async def test_a_first_sync_of_5000_contacts_grows_from_near_0_to_the_total(page, seeded_bridge):
    bridge = seeded_bridge
    await login(page, bridge)
    # Copernica answers every call 20 ms late: the run takes 8 s at least (12 writes at a time),
    # so that the bar, refreshed every second, has steps to show however fast the machine is
    await bridge.copernica.admin("POST", "faults", {"latency": 0.02})
    run_id = await request_sync(bridge.app[QUEUE], bridge.tenant.id, "full", "test")
    async with bridge.pool.acquire() as conn:  # real time on: the run's echoes come in meanwhile
        await update_tenant(conn, bridge.tenant.id, auto_sync=True)
    samples: list[tuple[str, int | None, int | None, str]] = []
    deadline = time.monotonic() + 1200  # a loaded machine: minutes, not a speed to assert
    while time.monotonic() < deadline:
        sample = await _bar(page)
        if not samples or sample != samples[-1]:
            samples.append(sample)
        if sample[0] == "done":
            break
        await asyncio.sleep(0.3)
    assert samples[-1][:3] == ("done", CONTACTS, CONTACTS), samples[-10:]
    assert f"Run #{run_id} (full sync) finished" in samples[-1][3]
    counted = [(done, total) for state, done, total, _ in samples if state == "running" and total]
    assert counted, samples
    # the bar refreshes every second while the run moves: its first count is short of the
    # total (how far short depends on the machine's speed)…
    assert counted[0][0] < CONTACTS, counted[:5]
    dones = [done for done, _ in counted] + [CONTACTS]
    assert dones == sorted(dones), samples  # …and only grows…
    assert len(set(dones)) >= 4, samples  # …step by step, not at once
    texts = [text for state, *_, text in samples if state == "running"]
    assert any(re.search(r"of 5,000 done, (about \d+ min|less than a minute) left", t) for t in texts)
    summary = samples[-1][3]
    assert f"{CONTACTS:,} compared, {CONTACTS:,} updated in Copernica, 0 in Salesforce" in summary


async def _statistics_job(bridge) -> int:
    async with bridge.pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'statistics'",
            bridge.tenant.id,
        )


async def test_a_failing_salesforce_shows_within_10_seconds(page, bridge):
    await login(page, bridge)
    await quiet(bridge)
    # the daily statistics job waits a day: it is no waiting change
    assert await eventually(lambda: _statistics_job(bridge), 20) == 1
    await page.locator("#waiting-changes", has_text="No changes waiting.").wait_for()
    await bridge.salesforce.admin(
        "POST", "/faults", {"path": "/services/data/*", "status": 503, "times": None}
    )
    try:
        failing_since = time.monotonic()
        await create_profile(bridge, LastName="Waiting", Email="waiting@example.org")
        trouble = page.locator("#problem-text")
        await trouble.filter(has_text="Salesforce failing since").wait_for(timeout=10_000)
        assert time.monotonic() - failing_since <= 10.5
        assert "retrying (attempt" in await trouble.inner_text()
        waiting = await page.locator("#waiting-changes").inner_text()
        assert "retrying after an error" in waiting or "waiting" in waiting
    finally:
        await bridge.salesforce.admin("DELETE", "/faults")
    await page.locator("#problems").wait_for(state="hidden", timeout=60_000)


async def test_with_auto_sync_off_a_waiting_change_is_shown(page, bridge):
    await quiet(bridge)
    await set_tenant(bridge, auto_sync=False)
    await login(page, bridge)
    assert "Automatic sync is off" in await page.locator("#realtime-state").inner_text()
    await create_profile(bridge, LastName="Held back", Email="held@example.org")
    waiting = page.locator("#waiting-changes")
    await waiting.filter(has_text="1 Copernica change waiting since").wait_for(timeout=15_000)
    assert "automatic sync is off" in await waiting.inner_text()
    assert "Sync manually" in await waiting.inner_text()
    await page.get_by_role("button", name="Sync manually").click()
    await page.locator('#run-state[data-state="done"]').wait_for(timeout=60_000)
    assert await waiting.inner_text() == "No changes waiting."
