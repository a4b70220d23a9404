"""Bridge processes that die: real `bridge serve` processes on one
PostgreSQL, killed with SIGKILL, against both sandboxes in the test's loop."""

import asyncio
import contextlib
import random
import re
import signal
import sys

import aiohttp
import pytest

from sandbox.copernica import SandboxSettings as CopernicaSettings
from tests.e2e.sync_helpers import (
    assert_sides_agree,
    create_contact,
    create_profile,
    eventually,
    profile_of,
    quiet,
)
from tests.fixtures.bridge import free_port


@pytest.fixture
def copernica_settings(copernica_signing_key):
    """Webhook retries that outlast a bridge restart (Copernica's own retry policy is unknown)."""
    return CopernicaSettings(
        signing_key_pem=copernica_signing_key,
        webhook_retry_base=0.2,
        webhook_max_attempts=12,
        webhook_timeout=2.0,
    )


class BridgeProcess:
    def __init__(self, setup, port: int) -> None:
        self.setup, self.port = setup, port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**self.setup.environment(), "PORT": str(self.port)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "serve", "--host", "127.0.0.1", env=env,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as reply:
                        if reply.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError("bridge process did not become ready")

    async def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()


async def _owner(setup) -> str | None:
    """The process holding the tenant's stream lease."""
    async with setup.pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT owner FROM stream_leases WHERE tenant_id = $1 AND expires_at > now()",
            setup.tenant.id,
        )


async def _stream_holders(setup) -> int:
    """Processes consuming the tenant's stream, as the Salesforce sandbox sees its subscribers."""
    streaming = await setup.salesforce.admin("GET", "/streaming")
    return sum(
        1 for client in streaming.get("clients", [])
        if "/data/ContactChangeEvent" in client.get("subscriptions", [])
    )


@pytest.mark.timeout(300)
async def test_two_processes_share_the_work_and_the_survivor_takes_the_stream(bridge_setup):
    setup = bridge_setup
    first = BridgeProcess(setup, free_port())
    second = BridgeProcess(setup, setup.settings.port)  # the webhooks' address
    try:
        await first.start()
        owner = await eventually(lambda: _owner(setup), 20)
        assert owner.endswith(f":{first.proc.pid}")
        await second.start()
        await eventually(lambda: _processes(setup, 2), 20)
        await asyncio.sleep(5)  # looks of both processes: the second leaves the stream alone
        assert await _owner(setup) == owner
        assert await _stream_holders(setup) == 1  # one subscriber per tenant

        before = [await create_contact(setup, LastName=f"Before {n}") for n in range(10)]
        for sf_id in before:
            await eventually(lambda sf_id=sf_id: profile_of(setup, sf_id), 20)

        await first.kill()
        during = [await create_contact(setup, LastName=f"During {n}") for n in range(10)]
        took_over = await eventually(
            lambda: _owner_is(setup, f":{second.proc.pid}"), 10
        )
        assert took_over
        for sf_id in during:  # changes made while nobody streamed are not missed
            # the new owner subscribes and replays first: room for a busy machine
            await eventually(lambda sf_id=sf_id: profile_of(setup, sf_id), 60)
        await create_profile(setup, LastName="From Copernica", Email="cp@x.org")
        # a job the killed process held comes back when its lease (60 s) runs out
        await quiet(setup, within=120)
        assert await assert_sides_agree(setup) == 21
    finally:
        await first.stop()
        await second.stop()


async def _owner_is(setup, suffix: str) -> bool:
    owner = await _owner(setup)
    return bool(owner and owner.endswith(suffix))


async def _processes(setup, count: int) -> bool:
    async with setup.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM bridge_processes") == count


CHANGES = 5000
KILLS = 3


@pytest.mark.timeout(600)
async def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(bridge_setup):
    setup = bridge_setup
    rng = random.Random(5)
    bridge = BridgeProcess(setup, setup.settings.port)
    await bridge.start()
    sf_ids: list[str] = []
    cp_ids: list[str] = []
    synced: dict[str, str] = {}  # Salesforce id -> its profile, once the bridge made it
    try:
        made = 0
        kill_at = sorted(rng.sample(range(500, CHANGES - 500), KILLS))

        async def change(n: int) -> None:
            roll = rng.random()
            if roll < 0.05 or not sf_ids:
                sf_ids.append(await create_contact(
                    setup, FirstName="S", LastName=f"S{n}", Email=f"s{n}@x.org"
                ))
            elif roll < 0.10:
                cp_ids.append(await create_profile(setup, LastName=f"C{n}", Email=f"c{n}@x.org"))
            elif roll < 0.55:
                await setup.salesforce.admin(
                    "PATCH", f"/contacts/{rng.choice(sf_ids)}", {"Title": f"t{n}"}
                )
            else:
                target = rng.choice(cp_ids) if cp_ids and rng.random() < 0.5 else None
                if target is None:
                    sf_id = rng.choice(sf_ids)
                    if sf_id not in synced:
                        profile = await profile_of(setup, sf_id)
                        if profile:
                            synced[sf_id] = str(profile["ID"])
                    target = synced.get(sf_id)
                if target:
                    await setup.copernica.admin(
                        "PUT", f"profiles/{target}", {"fields": {"FirstName": f"f{n}"}}
                    )

        while made < CHANGES:
            if kill_at and made >= kill_at[0]:
                kill_at.pop(0)
                await bridge.kill()
                await asyncio.sleep(rng.random())
                await bridge.start()
            await asyncio.gather(*(change(made + i) for i in range(25)))
            made += 25
        # Generous: on a machine that a CPU hog shares, the backlog of 5,000 changes (and a
        # killed process's leases running out) took more than 180 s to drain.
        await quiet(setup, within=360)
        async with setup.pool.acquire() as conn:
            held = await conn.fetch("SELECT key, last_error FROM jobs WHERE state = 'held'")
        assert not held, [tuple(h) for h in held]
        pairs = await assert_sides_agree(setup)
        assert pairs == len(sf_ids) + len(cp_ids)
    finally:
        await bridge.stop()


async def test_bridge_sync_full_runs_a_full_sync_and_shows_progress(bridge_setup):
    setup = bridge_setup
    records = [{"LastName": f"Seeded {n}", "Email": f"seed{n}@x.org"} for n in range(30)]
    await setup.salesforce.admin("POST", "/records/Contact", {"records": records})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "sync", setup.tenant.slug, "--full",
        env=setup.environment(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert re.search(r"100%\|[^|]*\| (\d+)/\1 ", err.decode())  # the bar went to the end
    assert re.match(r"done: \d+ record\(s\) compared, \d+ brought up to date", out.decode())
    assert await assert_sides_agree(setup) == 30
