"""Helpers of the end-to-end sync tests: waiting for both sides, reading them raw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bridge.sync.jobs import JobQueue
from bridge.sync.runs import RunKind, request_sync
from tests.fixtures.bridge import RunningBridge

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s (last: {value!r})")
        await asyncio.sleep(0.05)


async def contacts(bridge: RunningBridge, include_deleted: bool = False) -> list[dict[str, Any]]:
    query = "?include_deleted=true" if include_deleted else ""
    return (await bridge.salesforce.admin("GET", f"/contacts{query}"))["records"]


async def profiles(bridge: RunningBridge) -> list[dict[str, Any]]:
    """Live profiles of the tenant's database (fields by name)."""
    database = bridge.tenant.copernica_database
    found = await bridge.copernica.admin("GET", f"databases/{database}/profiles")
    items = found["data"] if isinstance(found, dict) else found
    return [p for p in items if not p.get("removed")]


async def profile_of(bridge: RunningBridge, sf_id: str) -> dict[str, Any] | None:
    for profile in await profiles(bridge):
        if profile["fields"].get("SalesforceId") == sf_id:
            return profile
    return None


async def create_contact(bridge: RunningBridge, **fields: Any) -> str:
    reply = await bridge.salesforce.admin("POST", "/contacts", fields)
    return reply["id"]


async def create_profile(bridge: RunningBridge, **fields: str) -> str:
    database = bridge.tenant.copernica_database
    reply = await bridge.copernica.admin("POST", f"databases/{database}/profiles", {"fields": fields})
    return str(reply["ID"])


async def quiet(bridge: RunningBridge, within: float = 15.0) -> None:
    """Wait until every change made so far has travelled: webhooks delivered, CDC events
    ingested, jobs applied — and stayed so for a moment (a write may announce another)."""
    calm = 0

    async def settled() -> bool:
        nonlocal calm
        pending_hooks = (await bridge.copernica.admin("POST", "webhooks/drain"))["pending"]
        retained = await bridge.salesforce.admin("GET", "/cdc/events")
        latest = max((e["replay_id"] for e in retained["events"]), default=0)
        async with bridge.pool.acquire() as conn:
            jobs = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE tenant_id = $1 AND kind = 'sync' AND state <> 'held'",
                bridge.tenant.id,
            )
            replay = await conn.fetchval(
                "SELECT coalesce(max(replay_id), 0) FROM stream_state WHERE tenant_id = $1",
                bridge.tenant.id,
            )
        streaming = bridge.tenant.auto_sync and bridge.tenant.direction != "cp_to_sf"
        caught_up = not streaming or replay >= latest
        calm = calm + 1 if (pending_hooks == 0 and jobs == 0 and caught_up) else 0
        return calm >= 3

    await eventually(settled, within)


async def set_tenant(bridge: RunningBridge, **settings: Any) -> None:
    from bridge.tenants import update_tenant

    async with bridge.pool.acquire() as conn:
        bridge.tenant = await update_tenant(conn, bridge.tenant.id, **settings)
    await asyncio.sleep(0.5)  # the stream supervisor looks every 0.3 s


async def links(bridge: RunningBridge) -> dict[str, str]:
    async with bridge.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT salesforce_id, copernica_id FROM links WHERE tenant_id = $1", bridge.tenant.id
        )
    return {r["salesforce_id"]: r["copernica_id"] for r in rows}


COMPARED = ("FirstName", "LastName", "Email", "Title")


async def assert_sides_agree(bridge: RunningBridge) -> int:
    """Every contact has exactly one profile and every profile one contact, field by field
    equal; returns the number of pairs."""
    by_id = {c["Id"]: c for c in await contacts(bridge)}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for profile in await profiles(bridge):
        grouped.setdefault(profile["fields"].get("SalesforceId", ""), []).append(profile)
    assert set(grouped) == set(by_id), (set(grouped) ^ set(by_id))
    for sf_id, group in grouped.items():
        assert len(group) == 1, f"{len(group)} profiles for {sf_id}"
        contact, fields = by_id[sf_id], group[0]["fields"]
        for name in COMPARED:
            assert (contact.get(name) or "") == fields.get(name, ""), (sf_id, name)
    emails = [c.get("Email") for c in by_id.values() if c.get("Email")]
    assert len(emails) == len(set(emails)), "a contact was created twice"
    return len(by_id)


async def bridge_writes(bridge: RunningBridge) -> tuple[int, int]:
    """(writes the bridge made to Salesforce, REST writes Copernica received)."""
    sf = await bridge.salesforce.admin("GET", "/writes")
    cp = await bridge.copernica.admin("GET", "stats")
    return sf["by_client"].get(bridge.settings.client_id, 0), cp["rest_writes"]


async def run_to_end(
    bridge: RunningBridge, kind: RunKind = "full", within: float = 90.0
) -> tuple[str, str]:
    """Request a run of ``kind`` as the scheduler would and wait until it ends: its state
    ("done" or "failed") and message."""
    run_id = await request_sync(JobQueue(bridge.pool), bridge.tenant.id, kind, "scheduler")

    async def finished() -> tuple[str, str] | None:
        async with bridge.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT state, message FROM sync_runs WHERE id = $1", run_id)
        return (row["state"], str(row["message"])) if row["state"] in ("done", "failed") else None

    return await eventually(finished, within)
