"""A profile create whose reply names no id (neither ``X-Created`` nor ``X-location``) is an
error — and its retry finds the profile it made instead of making a second one."""

from __future__ import annotations

from tests.e2e.sync_helpers import create_contact, eventually, links, profiles, quiet
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
    made = [p for p in await profiles(bridge) if p["fields"].get("Email") == "once@x.org"]
    assert [str(p["ID"]) for p in made] == [cp_id]
    assert made[0]["fields"]["SalesforceId"] == sf_id
    writes = (await bridge.copernica.admin("GET", "rest-writes"))["recent"]
    creates = [w for w in writes if w["method"] == "POST" and w["path"].split("?")[0].endswith(
        f"/database/{bridge.tenant.copernica_database}/profiles")]
    assert len(creates) == 1
