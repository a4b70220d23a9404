"""Many tenants on many `bridge serve` processes (issue 15): each tenant its own Salesforce org
and Copernica account in the sandboxes; the processes share the streams evenly, take over a
dead one's within 10 s, rebalance when one joins, and their PostgreSQL connections do not grow
with the number of tenants."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES
from bridge.security.vault import Vault
from bridge.tenants import (
    CopernicaCredentials,
    SalesforceCredentials,
    create_tenant,
    save_credentials,
    update_tenant,
)
from tests.e2e.sync_helpers import eventually
from tests.e2e.test_sync_processes import BridgeProcess
from tests.fixtures.bridge import COPERNICA_FIELDS, free_port

TENANTS = 50
FIRST = 10  # tenants streaming when the connections are counted the first time
POOL_SIZE = 10  # the default BRIDGE_DB_POOL_SIZE: every process runs with it


@dataclass
class Hosted:
    """A tenant on an org and an account of its own."""

    tenant_id: int
    org_id: str
    account_id: str
    database_id: str


async def _host_tenant(setup) -> Hosted:
    org = await setup.salesforce.new_org()
    account = await setup.copernica.new_account()
    record = await create_tenant(setup.pool, f"t-{secrets.token_hex(5)}", "Hosted")
    vault = Vault(setup.settings.secret_keys)
    async with setup.pool.acquire() as conn:
        await save_credentials(conn, vault, record.id, SalesforceCredentials(
            method="client_credentials", login_url=setup.salesforce.url,
            consumer_key=org["client_id"], consumer_secret=org["client_secret"],
        ))
        await save_credentials(conn, vault, record.id, CopernicaCredentials(
            api_token=account["access_token"], hostname=setup.copernica.url,
        ))
        await conn.execute(QUERIES["set_copernica_account"], record.id, account["account_id"])
        await update_tenant(conn, record.id, copernica_database=account["database_id"])
    async with CopernicaClient.for_sandbox(
        setup.copernica.url, api_token=account["access_token"]
    ) as client:
        for name, kind in COPERNICA_FIELDS:
            await client.create_field(account["database_id"], name, kind)
    return Hosted(record.id, org["org_id"], account["account_id"], account["database_id"])


async def _host_tenants(setup, count: int) -> list[Hosted]:
    hosted: list[Hosted] = []
    while len(hosted) < count:
        hosted += await asyncio.gather(
            *(_host_tenant(setup) for _ in range(min(10, count - len(hosted))))
        )
    return hosted


def _owner_name(process: BridgeProcess) -> str:
    assert process.proc is not None
    return f"{socket.gethostname()}:{process.proc.pid}"


async def _streams_by_owner(setup) -> dict[str, int]:
    async with setup.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT owner, count(*) AS n FROM stream_leases WHERE expires_at > now() GROUP BY owner"
        )
    return {r["owner"]: r["n"] for r in rows}


async def _balanced(setup, processes: list[BridgeProcess], tenants: int) -> dict[str, int] | None:
    """The leases per process once every tenant is held and each holds its share ± 1."""
    owners = await _streams_by_owner(setup)
    names = [_owner_name(p) for p in processes]
    share = tenants / len(processes)
    held = [owners.get(name, 0) for name in names]
    if sum(held) == tenants and set(owners) == set(names) and all(
        abs(n - share) <= 1 for n in held
    ):
        return owners
    return None


async def _subscribed(setup, hosted: list[Hosted]) -> bool:
    """Every org's CDC channel has exactly one subscriber."""
    replies = await asyncio.gather(*(
        setup.salesforce.admin("GET", f"/streaming?org={h.org_id}") for h in hosted
    ))
    return all(
        sum("/data/ContactChangeEvent" in c["subscriptions"] for c in reply["clients"]) == 1
        for reply in replies
    )


async def _connections(setup, process: BridgeProcess) -> int:
    async with setup.pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            f"bridge {_owner_name(process)}",
        )


async def _changes_land(setup, hosted: list[Hosted], label: str) -> None:
    """A contact created in every org arrives as a profile in its tenant's account."""
    made = await asyncio.gather(*(
        setup.salesforce.admin(
            "POST", f"/contacts?org={h.org_id}",
            {"LastName": f"{label} {h.tenant_id}", "Email": f"{label}{h.tenant_id}@x.org"},
        )
        for h in hosted
    ))
    waiting = {h.tenant_id: (h, reply["id"]) for h, reply in zip(hosted, made, strict=True)}

    async def landed() -> bool:
        async def arrived(h: Hosted, sf_id: str) -> bool:
            found = await setup.copernica.admin(
                "GET", f"databases/{h.database_id}/profiles?account={h.account_id}"
            )
            items = found["data"] if isinstance(found, dict) else found
            return any(p["fields"].get("SalesforceId") == sf_id for p in items)

        results = await asyncio.gather(*(arrived(h, sf_id) for h, sf_id in waiting.values()))
        for tenant_id, done in zip(list(waiting), results, strict=True):
            if done:
                del waiting[tenant_id]
        return not waiting

    await eventually(landed, 180)


async def _tenant_list(setup) -> Counter[str]:
    """How many tenants `bridge tenant list` shows streamed by each process (and that each row
    shows a queue depth)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "tenant", "list", env=setup.environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    header, *rows = out.decode().splitlines()
    assert "queue" in header and "stream owner" in header
    owners: Counter[str] = Counter()
    for row in rows:
        _, _, _, _, _, queue, owner, *_ = row.split()
        assert queue.isdigit()
        owners[owner] += 1
    return owners


@pytest.mark.timeout(900)
async def test_fifty_tenants_on_two_then_three_processes(bridge_setup):
    setup = bridge_setup
    async with setup.pool.acquire() as conn:  # the set-up's own tenant streams the default org
        await conn.execute("DELETE FROM tenants WHERE id = $1", setup.tenant.id)
    hosted = await _host_tenants(setup, FIRST)
    first, second = BridgeProcess(setup, free_port()), BridgeProcess(setup, free_port())
    third = BridgeProcess(setup, free_port())
    try:
        await asyncio.gather(first.start(), second.start())
        await eventually(lambda: _balanced(setup, [first, second], FIRST), 60)
        await eventually(lambda: _subscribed(setup, hosted), 60)
        await _changes_land(setup, hosted, "Ten")
        at_ten = [await _connections(setup, p) for p in (first, second)]

        hosted += await _host_tenants(setup, TENANTS - FIRST)
        owners = await eventually(lambda: _balanced(setup, [first, second], TENANTS), 90)
        assert sorted(owners.values()) in ([25, 25], [24, 26])
        await eventually(lambda: _subscribed(setup, hosted), 90)
        await _changes_land(setup, hosted, "Fifty")  # a change in every tenant lands
        listed = await _tenant_list(setup)
        assert sorted(listed.values()) == sorted(owners.values())  # as the leases say
        at_fifty = [await _connections(setup, p) for p in (first, second)]
        print(f"\nPostgreSQL connections per process: {at_ten} at {FIRST} tenants, "
              f"{at_fifty} at {TENANTS}")
        # The pool is the whole budget: 25 streams do not take 25 connections.
        assert max(at_ten + at_fifty) <= POOL_SIZE

        await third.start()  # a new process gets its share without restarts
        owners = await eventually(lambda: _balanced(setup, [first, second, third], TENANTS), 60)
        assert sorted(owners.values()) == [16, 17, 17]
        await eventually(lambda: _subscribed(setup, hosted), 90)

        assert third.proc is not None
        third.proc.send_signal(signal.SIGKILL)
        await third.proc.wait()
        killed = time.monotonic()
        await eventually(lambda: _balanced(setup, [first, second], TENANTS), 30)
        took = time.monotonic() - killed
        print(f"the streams of a killed process moved in {took:.1f} s")
        assert took < 10
        # (the sandbox keeps the dead process's CometD clients until they time out)
        await _changes_land(setup, hosted, "After")

        await second.stop()  # SIGTERM: its tenants are handed over at once
        handed = time.monotonic()
        await eventually(lambda: _balanced(setup, [first], TENANTS), 30)
        print(f"the streams of a stopped process moved in {time.monotonic() - handed:.1f} s")
        assert time.monotonic() - handed < 6  # within a look or two, no lease had to expire
    finally:
        await asyncio.gather(first.stop(), second.stop(), third.stop())
