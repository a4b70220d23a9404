"""Echo suppression does not depend on ``changeOrigin``: Salesforce documents
``Sforce-Call-Options`` for sObject Rows, Query and Bulk, not for the sObject Collections the
bridge writes with — and the sandbox, by default, leaves the bridge's client id out of those
writes' change events. 500 Copernica edits then cause at most 500 Salesforce writes and no
Copernica write: the echoes are recognised by their fingerprints.

The other way, the webhook that echoes a bridge write to Copernica carries the profile's fields:
they are what the link agreed on, so it is answered without a job — no Salesforce query, no
profile read — while a user's change, however close behind, still travels."""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import urlencode

import aiohttp

from bridge.vocabulary import webhook_url
from bridge.web.keys import METRICS
from tests.e2e.sync_helpers import (
    assert_sides_agree,
    bridge_writes,
    create_contact,
    eventually,
    profile_of,
    quiet,
)
from tests.e2e.test_sync_economy import agreements_settled
from tests.fixtures.bridge import RunningBridge

RECORDS = 25
EDITS = 500


async def test_copernica_edits_come_back_as_unmarked_events_and_loop_nowhere(
    bridge: RunningBridge,
) -> None:
    variants = await bridge.salesforce.admin("GET", "/variants")
    assert variants["collections_call_options"] is False  # the documented default
    pairs = {}
    for n in range(RECORDS):
        sf_id = await create_contact(bridge, FirstName="E", LastName=f"Echo{n}", Email=f"e{n}@x.org")
        pairs[sf_id] = ""
    for sf_id in pairs:
        pairs[sf_id] = str((await eventually(lambda s=sf_id: profile_of(bridge, s)))["ID"])
    await quiet(bridge)
    sf_before, cp_before = await bridge_writes(bridge)
    events_before = (await bridge.salesforce.admin("GET", "/cdc/events"))["latest"]

    rng = random.Random(500)

    async def edit(n: int) -> None:
        sf_id = rng.choice(list(pairs))
        field = rng.choice(("Title", "FirstName"))
        await bridge.copernica.admin(
            "PUT", f"profiles/{pairs[sf_id]}", {"fields": {field: f"{field}-{n}"}}
        )

    for start in range(0, EDITS, 25):
        await asyncio.gather(*(edit(n) for n in range(start, start + 25)))
    await quiet(bridge, within=90)

    sf_writes, cp_writes = await bridge_writes(bridge)
    assert 0 < sf_writes - sf_before <= EDITS
    assert cp_writes == cp_before  # no echo went back to Copernica
    origins = [
        e.data["payload"]["ChangeEventHeader"]["changeOrigin"]
        for e in bridge.salesforce.state.org.events.events
        if e.replay_id > events_before
    ]
    assert origins and not any("client=" in o for o in origins)  # the echoes are unmarked
    print(f"\n{EDITS} edits -> {sf_writes - sf_before} Salesforce writes, {len(origins)} echoes")
    assert await assert_sides_agree(bridge) == RECORDS
    await quiet(bridge)  # and it stays so: a loop would keep writing
    assert await bridge_writes(bridge) == (sf_writes, cp_writes)


async def _spent(bridge: RunningBridge) -> dict[str, float]:
    """API calls the sandboxes received, and what the bridge made of the Copernica webhooks."""
    assert bridge.app is not None
    registry = bridge.app[METRICS].registry
    sample = lambda name, **labels: registry.get_sample_value(name, labels) or 0.0  # noqa: E731
    return {
        "salesforce_calls": (await bridge.salesforce.admin("GET", "/"))["api_usage"]["used"],
        "copernica_calls": (await bridge.copernica.admin("GET", "stats"))["api_calls"],
        "hooks_stored": sample("bridge_webhooks_total", outcome="stored"),
        "hooks_echo": sample("bridge_webhooks_total", outcome="echo"),
        "echoes": sample("bridge_echoes_suppressed_total", platform="copernica"),
    }


async def _synced_pair(bridge: RunningBridge, n: int) -> tuple[str, str]:
    sf_id = await create_contact(bridge, FirstName="Door", LastName=f"Keeper{n}", Email=f"d{n}@x.org")
    profile = await eventually(lambda: profile_of(bridge, sf_id), within=30)
    await quiet(bridge, within=60)
    return sf_id, str(profile["ID"])


async def _value(bridge: RunningBridge, sf_id: str, name: str) -> tuple[str, str]:
    """(the contact's value of ``name``, its profile's)."""
    contact = await bridge.salesforce.admin("GET", f"/contacts/{sf_id}")
    profile = await profile_of(bridge, sf_id)
    return contact.get(name) or "", (profile or {}).get("fields", {}).get(name, "")


async def test_the_webhook_echoing_a_salesforce_change_becomes_no_job(bridge: RunningBridge) -> None:
    sf_id, cp_id = await _synced_pair(bridge, 0)
    await agreements_settled(bridge)  # so that the change event's values are used
    before = await _spent(bridge)
    await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"Title": "Gatekeeper"})
    await eventually(_landed(bridge, sf_id, "Title", "Gatekeeper"), within=30)
    await quiet(bridge, within=60)
    after = await _spent(bridge)
    spent = {name: after[name] - before[name] for name in after}
    # The change event's job: the profile's write alone (the event carried the change). The
    # write's webhook: none.
    assert spent == {
        "salesforce_calls": 0, "copernica_calls": 1, "hooks_stored": 0, "hooks_echo": 1, "echoes": 1,
    }

    # A user's change right after is no echo: it lands in Salesforce.
    await bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"Title": "Warden"}})
    await eventually(_landed(bridge, sf_id, "Title", "Warden"), within=30)
    await quiet(bridge, within=60)
    assert await _value(bridge, sf_id, "Title") == ("Warden", "Warden")
    assert (await _spent(bridge))["hooks_stored"] == after["hooks_stored"] + 1


async def test_a_copernica_change_close_behind_an_echo_is_not_lost(bridge: RunningBridge) -> None:
    pairs = [await _synced_pair(bridge, n) for n in range(1, 6)]
    # Two quick writes to each profile: the bridge's (from Salesforce) and a user's of another
    # field, in whichever order they happen to arrive.
    await asyncio.gather(*(
        write
        for n, (sf_id, cp_id) in enumerate(pairs)
        for write in (
            bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"Title": f"Title-{n}"}),
            bridge.copernica.admin("PUT", f"profiles/{cp_id}", {"fields": {"FirstName": f"First-{n}"}}),
        )
    ))
    for n, (sf_id, _) in enumerate(pairs):
        await eventually(_landed(bridge, sf_id, "Title", f"Title-{n}"), within=60)
        await eventually(_landed(bridge, sf_id, "FirstName", f"First-{n}"), within=60)
    await quiet(bridge, within=60)
    assert await assert_sides_agree(bridge) == len(pairs)


async def test_a_webhook_not_certainly_an_echo_becomes_a_job(bridge: RunningBridge) -> None:
    sf_id, cp_id = await _synced_pair(bridge, 9)
    profile = await profile_of(bridge, sf_id)
    assert profile is not None
    url = webhook_url(bridge.settings.public_url, bridge.tenant.hook_token)
    account = f"account-{bridge.copernica.state.settings.account_id}"

    async def deliver(kind: str, fields: dict[str, str], as_json: bool = False) -> str:
        database = bridge.tenant.copernica_database or ""
        if as_json:  # the profile's link is then read once the body is parsed
            body = json.dumps(
                {"type": kind, "profile": cp_id, "database": database, "fields": fields}
            ).encode()
        else:
            body = urlencode([
                ("type", kind), ("profile", cp_id), ("database", database),
                *((f"fields[{name}]", value) for name, value in fields.items()),
            ]).encode()
        media = "application/json" if as_json else "application/x-www-form-urlencoded"
        headers = bridge.copernica.state.signer.headers_for(url, body, account, content_type=media)
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as reply:
            assert reply.status == 200
            return str((await reply.json())["status"])

    agreed = dict(profile["fields"])
    assert await deliver("update", agreed) == "echo"  # what the link agreed on, all of it
    assert await deliver("update", agreed, as_json=True) == "echo"
    assert await deliver("update", {k: v for k, v in agreed.items() if k != "Title"}) == "stored"
    assert await deliver("update", {**agreed, "SalesforceId": ""}) == "stored"
    assert await deliver("delete", agreed) == "stored"


def _landed(bridge: RunningBridge, sf_id: str, name: str, value: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await _value(bridge, sf_id, name) == (value, value)

    return check
