"""Real-time sync through the running app and both sandboxes."""

from tests.e2e.sync_helpers import (
    contacts,
    create_contact,
    create_profile,
    eventually,
    profile_of,
    profiles,
)


async def test_salesforce_create_and_update_reach_copernica(bridge):
    sf_id = await create_contact(bridge, FirstName="Ada", LastName="Lovelace", Email="ada@example.org")
    profile = await eventually(lambda: profile_of(bridge, sf_id))
    assert profile["fields"]["LastName"] == "Lovelace"
    assert profile["fields"]["Email"] == "ada@example.org"

    await bridge.salesforce.admin("PATCH", f"/contacts/{sf_id}", {"Title": "Countess"})

    async def updated():
        found = await profile_of(bridge, sf_id)
        return found if found and found["fields"]["Title"] == "Countess" else None

    await eventually(updated)


async def test_copernica_create_and_update_reach_salesforce(bridge):
    await create_profile(bridge, FirstName="Grace", LastName="Hopper", Email="grace@example.org")

    async def contact():
        found = [c for c in await contacts(bridge) if c.get("Email") == "grace@example.org"]
        return found[0] if found else None

    created = await eventually(contact)
    assert created["LastName"] == "Hopper"
    profile = await eventually(lambda: profile_of(bridge, created["Id"]))
    assert profile["fields"]["FirstName"] == "Grace"
    assert len(await profiles(bridge)) == 1


async def test_two_contacts_sharing_an_address_get_a_profile_each(bridge):
    """A unique e-mail links; a shared one must not make two contacts share (and overwrite)
    one profile."""
    ada = await create_contact(bridge, FirstName="Ada", LastName="Lovelace", Email="same@x.org")
    first = await eventually(lambda: profile_of(bridge, ada))
    grace = await create_contact(bridge, FirstName="Grace", LastName="Hopper", Email="same@x.org")
    second = await eventually(lambda: profile_of(bridge, grace))
    assert first["ID"] != second["ID"]
    assert (await profile_of(bridge, ada))["fields"]["LastName"] == "Lovelace"
    by_id = {c["Id"]: c for c in await contacts(bridge)}
    assert by_id[ada]["LastName"] == "Lovelace" and by_id[grace]["LastName"] == "Hopper"
