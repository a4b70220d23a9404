"""Sending an emailing from the Salesforce tab against the Copernica sandbox in its documented mode:
the send is recorded the moment Copernica accepted it, a reply that names no emailing id still
records it, and sending the same form again never sends a second emailing. Nested selections are
offered as targets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.fixtures.bridge import RunningBridge
from tests.fixtures.browser import WebUser


@pytest.fixture
async def user(bridge: RunningBridge) -> AsyncIterator[WebUser]:
    web_user = WebUser(bridge.url)
    status, _ = await web_user.login(bridge.email)
    assert status == 200
    yield web_user
    await web_user.close()


async def send_form(user: WebUser) -> tuple[str, str]:
    """The tab's emailing form: its one-time send key, and the page."""
    status, page = await user.get("/sfcp")
    assert status == 200 and "could not be reached" not in page, page
    found = re.search(r'name="send_key" value="([^"]+)"', page)
    assert found is not None
    return found.group(1), page


async def sends(bridge: RunningBridge) -> list[tuple[str, int | None]]:
    async with bridge.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT state, emailing_id FROM emailing_sends WHERE tenant_id = $1 ORDER BY id",
            bridge.tenant.id,
        )
    return [(r["state"], r["emailing_id"]) for r in rows]


async def test_a_send_is_recorded_and_never_sent_twice(
    bridge: RunningBridge, user: WebUser
) -> None:
    database = bridge.tenant.copernica_database
    await bridge.copernica.admin(
        "POST", f"databases/{database}/profiles/seed", {"profiles": [{"fields": {"Email": "a@b.c"}}]}
    )
    emailings = bridge.copernica.state.account.emailings
    key, _ = await send_form(user)
    form = {"content": "ms:1", "target": f"database:{database}", "send_key": key, "confirm": "yes"}
    _, page = await user.post("/sfcp/emailings", form)
    [(state, emailing_id)] = await sends(bridge)
    assert state == "sent" and emailing_id in emailings
    assert f"Emailing {emailing_id} sent: Newsletter to Sandbox, 1 destination." in page

    _, page = await user.post("/sfcp/emailings", form)  # the same form again: a retry
    assert "it is not sent twice" in page
    assert len(emailings) == 1 and len(await sends(bridge)) == 1

    await bridge.copernica.admin(
        "POST", "variants", {"created_id": "none", "created_id_kinds": ["emailing"]}
    )
    key, _ = await send_form(user)
    unreadable = {**form, "send_key": key}
    _, page = await user.post("/sfcp/emailings", unreadable)
    assert "Emailing sent: Newsletter to Sandbox" in page and "did not say" in page
    assert len(emailings) == 2
    assert (await sends(bridge))[-1] == ("sent", None)  # recorded, without its id
    _, page = await user.post("/sfcp/emailings", unreadable)
    assert "it is not sent twice" in page and len(emailings) == 2
    _, page = await user.get("/sfcp")
    assert "statistics not available" in page  # the send without an id shows, without figures


async def test_refused_sends_are_not_kept_and_nested_selections_are_targets(
    bridge: RunningBridge, user: WebUser
) -> None:
    database = bridge.tenant.copernica_database
    outer = await bridge.copernica.admin("POST", f"databases/{database}/views", {"name": "Leads"})
    inner = await bridge.copernica.admin(
        "POST", f"databases/{database}/views", {"name": "Hot", "parent": outer["ID"]}
    )
    key, page = await send_form(user)
    assert f'value="view:{inner["ID"]}">Selection: Leads › Hot</option>' in page
    await bridge.copernica.admin("POST", "faults", {"status": 500, "count": 1, "method": "POST"})
    await bridge.copernica.admin("POST", "variants", {"send_paths": "new"})  # a renamed API
    form = {"content": "publisher:1", "target": f"view:{inner['ID']}", "send_key": key, "confirm": "yes"}
    _, page = await user.post("/sfcp/emailings", form)
    assert "Copernica did not say whether the emailing went out" in page  # the 500
    assert [s for s, _ in await sends(bridge)] == ["unknown"]
    _, page = await user.post("/sfcp/emailings", form)
    assert "may have gone out already" in page  # kept: never sent a second time
    key, _ = await send_form(user)
    _, page = await user.post("/sfcp/emailings", {**form, "send_key": key})
    assert "sent: Monthly update to Leads › Hot" in page  # falls back to html/emailing
    assert [s for s, _ in await sends(bridge)] == ["unknown", "sent"]
