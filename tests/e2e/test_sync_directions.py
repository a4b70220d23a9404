"""Every kind of change on either side, for all three directions and apply-deletes on and off,
through the running app, both sandboxes and PostgreSQL."""

import pytest

from tests.e2e.sync_helpers import (
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


async def _contact(bridge, **match):
    for record in await contacts(bridge, include_deleted=True):
        if all(record.get(k) == v for k, v in match.items()):
            return record
    return None


@pytest.mark.parametrize("apply_deletes", [True, False], ids=["deletes-on", "deletes-off"])
@pytest.mark.parametrize("direction", ["both", "sf_to_cp", "cp_to_sf"])
async def test_changes_flow_as_the_settings_say(bridge, direction, apply_deletes):
    await set_tenant(bridge, direction=direction, apply_deletes=apply_deletes)
    to_cp = direction in ("both", "sf_to_cp")
    to_sf = direction in ("both", "cp_to_sf")
    await quiet(bridge)

    # Salesforce create and update
    ada = await create_contact(bridge, FirstName="Ada", LastName="Lovelace", Email="ada@x.org")
    await bridge.salesforce.admin("PATCH", f"/contacts/{ada}", {"Title": "Countess"})
    await quiet(bridge)
    profile = await profile_of(bridge, ada)
    if to_cp:
        assert profile and profile["fields"]["Title"] == "Countess"
        assert profile["fields"]["LastName"] == "Lovelace"
    else:
        assert profile is None

    # Copernica create and update
    grace = await create_profile(bridge, FirstName="Grace", LastName="Hopper", Email="g@x.org")
    await bridge.copernica.admin("PUT", f"profiles/{grace}", {"fields": {"Title": "Admiral"}})
    await quiet(bridge)
    contact = await _contact(bridge, Email="g@x.org")
    if to_sf:
        assert contact and contact["Title"] == "Admiral" and contact["LastName"] == "Hopper"
        assert (await links(bridge)).get(contact["Id"]) == grace
    else:
        assert contact is None

    # Copernica delete: never touches Salesforce, only the link goes
    await bridge.copernica.admin("DELETE", f"profiles/{grace}")
    await quiet(bridge)
    if to_sf:
        kept = await _contact(bridge, Email="g@x.org")
        assert kept and not kept.get("IsDeleted")
        assert kept["Id"] not in await links(bridge)

    # Salesforce delete, then undelete
    await bridge.salesforce.admin("DELETE", f"/contacts/{ada}")
    await quiet(bridge)
    after_delete = await profile_of(bridge, ada)
    if to_cp and apply_deletes:
        assert after_delete is None
    elif to_cp:
        assert after_delete is not None  # kept: deletes are not applied
    await bridge.salesforce.admin("POST", f"/contacts/{ada}/undelete")
    await quiet(bridge)
    if to_cp:
        restored = await eventually(lambda: profile_of(bridge, ada))
        assert restored["fields"]["Title"] == "Countess"
        assert len([p for p in await profiles(bridge) if p["fields"].get("SalesforceId") == ada]) == 1


async def test_a_salesforce_merge_relinks_the_profile_to_the_master(bridge):
    master = await create_contact(bridge, LastName="Master", Email="m@x.org")
    loser = await create_contact(bridge, LastName="Loser", Email="l@x.org")
    await eventually(lambda: profile_of(bridge, master))
    loser_profile = await eventually(lambda: profile_of(bridge, loser))
    await quiet(bridge)
    await bridge.salesforce.admin("POST", "/merge", {"master": master, "losers": [loser]})
    await quiet(bridge)
    linked = await links(bridge)
    assert loser not in linked
    assert linked[master] in (str(loser_profile["ID"]), linked[master])
    live = {str(p["ID"]): p for p in await profiles(bridge)}
    assert str(loser_profile["ID"]) in live or linked[master] in live
    assert all(p["fields"].get("SalesforceId") != loser for p in live.values())  # no orphan
