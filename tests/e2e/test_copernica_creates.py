"""A profile create whose reply names no id (neither ``X-Created`` nor ``X-location``) is an
error — and its retry finds the profile it made instead of making a second one."""

from __future__ import annotations

from tests.e2e.sync_helpers import (
    create_contact,
    eventually,
    links,
    profiles,
    quiet,
    run_to_end,
    set_tenant,
)
from tests.fixtures.bridge import RunningBridge


async def test_an_unreadable_create_is_never_repeated(bridge: RunningBridge) -> None:
    await bridge.copernica.admin(
        "POST", "variants", {"created_id": "none", "created_id_kinds": ["profile"]}
    )
    sf_id = await create_contact(bridge, FirstName="Only", LastName="Once", Email="once@x.org")

    async def linked() -> str | None:
        return (await links(bridge)).get(sf_id)

    cp_id = await eventually(linked, within=30)  # after the retry found it by its link field
    await quiet(bridge)
    await _made_once(bridge, sf_id, cp_id)


async def test_a_full_syncs_unreadable_create_is_never_repeated(bridge: RunningBridge) -> None:
    """The scan found no profile for the contact, so its job skips the search; but not on a
    retry, after a create whose reply said nothing of what it made."""
    await set_tenant(bridge, auto_sync=False)  # the contact reaches the bridge by the scan alone
    await bridge.copernica.admin(
        "POST", "variants", {"created_id": "none", "created_id_kinds": ["profile"]}
    )
    sf_id = await create_contact(bridge, FirstName="Only", LastName="Once", Email="once@x.org")
    assert await run_to_end(bridge, "full") == ("done", "1 record(s) compared, 1 brought up to date")
    await _made_once(bridge, sf_id, (await links(bridge))[sf_id])


async def _made_once(bridge: RunningBridge, sf_id: str, cp_id: str) -> None:
    made = [p for p in await profiles(bridge) if p["fields"].get("Email") == "once@x.org"]
    assert [str(p["ID"]) for p in made] == [cp_id]
    assert made[0]["fields"]["SalesforceId"] == sf_id
    writes = (await bridge.copernica.admin("GET", "rest-writes"))["recent"]
    creates = [w for w in writes if w["method"] == "POST" and w["path"].split("?")[0].endswith(
        f"/database/{bridge.tenant.copernica_database}/profiles")]
    assert len(creates) == 1
