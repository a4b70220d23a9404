"""The bridge's PostgreSQL really goes away (``pg_ctl stop -m fast``) and comes back: nothing is
lost, the bridge heals by itself and says honestly how it is meanwhile; ``bridge serve`` waits
for a database that is not up yet, and the other commands say so in one line.

The server is the test's own (``stoppable_postgres``, on a TCP port), and ``new_database`` is
overridden here so that ``bridge_setup`` puts the tenant on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import sys
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from bridge.app import create_app
from sandbox.copernica import SandboxSettings as CopernicaSettings
from tests.e2e.sync_helpers import (
    assert_sides_agree,
    contacts,
    create_contact,
    eventually,
    profile_of,
    profiles,
    quiet,
)
from tests.fixtures.bridge import QUICK_SYNC, free_port
from tests.fixtures.shutdown import close_server, start

CHANGES = 500  # on each side
ROUND = 10  # changes per side and round, on distinct records
SEEDED = 60  # contacts the changes are made to
OUTAGE = 20.0  # seconds PostgreSQL is down


@pytest.fixture
def new_database(stoppable_postgres):
    async def make(migrated: bool = True) -> str:
        return stoppable_postgres.url  # migrated by the fixture already

    return make


@pytest.fixture
def copernica_settings(copernica_signing_key):
    """Webhook retries that outlast the outage (Copernica's own schedule is not documented:
    the emulator's is configurable)."""
    return CopernicaSettings(
        signing_key_pem=copernica_signing_key,
        webhook_retry_base=0.1,
        webhook_max_attempts=16,
        webhook_timeout=2.0,
    )


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with asyncio.timeout(5), http.get(url) as reply:
            return reply.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


@pytest.mark.timeout(300)
async def test_postgres_stopped_for_20_s_during_500_changes_on_each_side(
    bridge_setup, stoppable_postgres
):
    setup = bridge_setup
    rng = random.Random(20)
    options = dataclasses.replace(QUICK_SYNC, database_check_interval=0.5)
    app = create_app(setup.settings, sync_options=options)
    server = await start(TestServer(app, host="127.0.0.1", port=setup.settings.port))
    http = aiohttp.ClientSession()
    try:
        sf_ids = [
            await create_contact(setup, FirstName="F", LastName=f"L{n}", Email=f"o{n}@x.org")
            for n in range(SEEDED)
        ]
        await quiet(setup, within=90)
        cp_of = {sf_id: str((await profile_of(setup, sf_id))["ID"]) for sf_id in sf_ids}
        titles: dict[str, str] = {}  # Salesforce edits Title, Copernica edits FirstName
        first_names: dict[str, str] = {}

        async def one_round(n: int) -> None:
            sf_targets = rng.sample(sf_ids, ROUND)
            cp_targets = rng.sample(sf_ids, ROUND)
            for sf_id in sf_targets:
                titles[sf_id] = f"t{n}"
            for sf_id in cp_targets:
                first_names[sf_id] = f"f{n}"
            await asyncio.gather(
                *(setup.salesforce.admin("PATCH", f"/contacts/{s}", {"Title": f"t{n}"})
                  for s in sf_targets),
                *(setup.copernica.admin("PUT", f"profiles/{cp_of[s]}", {"fields": {"FirstName": f"f{n}"}})
                  for s in cp_targets),
            )

        rounds = CHANGES // ROUND
        before, during = rounds // 4, rounds // 2  # the rest after the restart
        for n in range(before):
            await one_round(n)
        await stoppable_postgres.stop()
        stopped = time.monotonic()
        ready = f"{setup.url}/readyz"
        assert await eventually(lambda: _is(http, ready, 503), 10)
        async with http.get(ready) as reply:
            assert "unreachable" in (await reply.json())["database"]
        for n in range(before, before + during):  # spread over the outage
            await one_round(n)
            await asyncio.sleep(max(0.0, stopped + OUTAGE * (n - before + 1) / during - time.monotonic()))
        assert await _status(http, ready) == 503  # still down, still honest
        await stoppable_postgres.start()
        restarted = time.monotonic()
        for n in range(before + during, rounds):
            await one_round(n)
        await eventually(lambda: _is(http, ready, 200), 60)
        recovery = time.monotonic() - restarted

        # edits made now land within 10 s, on both sides
        probe = sf_ids[0]
        await setup.salesforce.admin("PATCH", f"/contacts/{probe}", {"Description": "after"})
        await setup.copernica.admin("PUT", f"profiles/{cp_of[sf_ids[1]]}",
                                    {"fields": {"LastName": "After"}})
        made = time.monotonic()

        async def sf_landed() -> bool:
            profile = await profile_of(setup, probe)
            return bool(profile and profile["fields"].get("Description") == "after")

        async def cp_landed() -> bool:
            contact = await setup.salesforce.admin("GET", f"/contacts/{sf_ids[1]}")
            return contact["LastName"] == "After"

        try:
            await eventually(sf_landed, 10)
            sf_after = time.monotonic() - made
            await eventually(cp_landed, 10)
            cp_after = time.monotonic() - made
        except AssertionError:
            await _diagnose(setup, app)
            raise

        await quiet(setup, within=120)
        assert await assert_sides_agree(setup) == SEEDED
        by_id = {c["Id"]: c for c in await contacts(setup)}
        by_sf = {p["fields"]["SalesforceId"]: p for p in await profiles(setup)}
        lost = [(s, "Title", t, by_sf[s]["fields"]["Title"]) for s, t in titles.items()
                if by_sf[s]["fields"]["Title"] != t]
        lost += [(s, "FirstName", f, by_id[s]["FirstName"]) for s, f in first_names.items()
                 if by_id[s]["FirstName"] != f]
        assert not lost, f"{len(lost)} change(s) lost: {lost}"
        print(f"\nready {recovery:.1f} s after PostgreSQL came back; new edits landed in "
              f"{sf_after:.1f} s (Salesforce → Copernica), {cp_after:.1f} s (Copernica → Salesforce)")
    finally:
        await http.close()
        await close_server(server, "the bridge")


async def _diagnose(setup, app) -> None:
    from bridge.web.keys import SUPERVISOR

    async with setup.pool.acquire() as conn:
        jobs = await conn.fetch(
            "SELECT kind, state, count(*), min(run_at) AS first, max(attempts) AS att"
            " FROM jobs GROUP BY 1, 2"
        )
        stream = await conn.fetch("SELECT * FROM stream_state")
    events = await setup.salesforce.admin("GET", "/cdc/events")
    hooks = await setup.copernica.admin("GET", "stats")
    print("\nDIAG jobs", [dict(r) for r in jobs])
    print("DIAG stream", [dict(r) for r in stream], "latest", events["latest"])
    print("DIAG hooks", hooks)
    print("DIAG tasks", [(s.name, s.attempts, s.last_error) for s in app[SUPERVISOR].states.values()])
    print("DIAG streaming", await setup.salesforce.admin("GET", "/streaming"))


async def _is(http: aiohttp.ClientSession, url: str, status: int) -> bool:
    return await _status(http, url) == status


@pytest.mark.timeout(120)
async def test_serve_waits_for_its_database_and_migrate_says_so_in_one_line(
    stoppable_postgres, tmp_path
):
    password = "not-to-be-printed"
    url = stoppable_postgres.url.replace("postgres@", f"postgres:{password}@")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url, "BRIDGE_SECRET_KEYS": Fernet.generate_key().decode(),
        "PORT": str(port), "BRIDGE_DATA_DIR": str(tmp_path), "LOG_LEVEL": "INFO",
    }
    await stoppable_postgres.stop()
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "migrate", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(migrate.communicate(), 60)
    assert migrate.returncode == 2
    lines = err.decode().strip().splitlines()
    assert lines == [
        f"bridge: error: cannot reach PostgreSQL at 127.0.0.1:{stoppable_postgres.port}: "
        "connection refused (is PostgreSQL running?)"
    ], err.decode()

    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "serve", "--host", "127.0.0.1", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    output: list[str] = []

    async def read() -> None:
        assert serve.stderr is not None
        while line := await serve.stderr.readline():
            output.append(line.decode())

    reader = asyncio.create_task(read())
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await eventually(lambda: _waited(output, 2), 30)
            assert await _status(http, f"{base}/healthz") == 200  # alive while it waits
            assert await _status(http, f"{base}/readyz") == 503
            await stoppable_postgres.start()
            await eventually(lambda: _is(http, f"{base}/readyz", 200), 30)
        serve.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        await asyncio.wait_for(serve.wait(), 15)
        assert time.monotonic() - stopping < 10
        assert serve.returncode == 0
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        await asyncio.wait_for(reader, 5)
    text = "".join(output)
    assert password not in text and "Traceback" not in text, text
    waiting = [line for line in output if "waiting for PostgreSQL" in line]
    assert f"at 127.0.0.1:{stoppable_postgres.port}: connection refused" in waiting[0]
    assert "attempt 1, next in" in waiting[0]


async def _waited(output: list[str], times: int) -> bool:
    return sum("waiting for PostgreSQL" in line for line in output) >= times

