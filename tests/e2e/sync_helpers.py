"""Helpers of the end-to-end sync tests: waiting for both sides, reading them raw."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.fixtures.bridge import RunningBridge

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s (last: {value!r})")
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
