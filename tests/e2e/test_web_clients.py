"""Pages and workers share the tenant's platform clients: page views cost no new Salesforce
login or Copernica JWT, and credentials saved on the config page are used at the next view."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.web.keys import PLATFORMS
from tests.fixtures.browser import WebBridge, WebUser

pytestmark = pytest.mark.timeout(60)


def salesforce_logins(bridge: WebBridge) -> int:
    """Sessions the Salesforce sandbox issued since it started (one per successful login)."""
    return len(bridge.salesforce.state.sessions.by_token)


def counted(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[None]:
    calls: list[None] = []
    original = getattr(target, name)

    def count(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, count)
    return calls


async def test_two_views_of_the_tab_log_in_to_salesforce_once(
    web_bridge: WebBridge, web_user: WebUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, first = await web_user.login(web_bridge.email)  # lands on the tab
    assert status == 200 and "could not be reached" not in first, first
    jwts = counted(monkeypatch, web_bridge.copernica.state.issuer, "issue")
    status, second = await web_user.get("/sfcp")
    assert status == 200 and "could not be reached" not in second, second
    assert 'name="fields" value="Email"' in second  # the Salesforce fields were read
    # the workers of this process use the same clients: one login for everything
    assert salesforce_logins(web_bridge) == 1
    assert jwts == []


async def test_saved_credentials_are_used_at_the_next_view(
    web_bridge: WebBridge, web_user: WebUser
) -> None:
    sf = web_bridge.salesforce.settings
    await web_user.login(web_bridge.email)
    assert salesforce_logins(web_bridge) == 1
    form = {
        "method": "client_credentials", "login_url": web_bridge.salesforce.url,
        "consumer_key": sf.client_id, "consumer_secret": "not-the-secret",
    }
    await web_user.get("/config")
    status, text = await web_user.post("/config/salesforce", form)
    assert status == 200 and "do not work" in text  # tested first: nothing replaced
    status, text = await web_user.post("/config/salesforce", {**form, "anyway": "yes"})
    assert status == 200 and "saved as you asked" in text
    status, text = await web_user.get("/sfcp")
    assert "Salesforce could not be reached" in text and "invalid client credentials" in text
    await web_user.get("/config")
    status, text = await web_user.post(
        "/config/salesforce", {**form, "consumer_secret": sf.client_secret}
    )
    assert "Salesforce access tested and saved." in text
    status, text = await web_user.get("/sfcp")
    assert status == 200 and "could not be reached" not in text
    # one login to test the repaired credentials, one for the client every page then shares
    assert salesforce_logins(web_bridge) == 3
    clients = web_bridge.app[PLATFORMS]  # type: ignore[index]  # the app of a started bridge
    client = await clients.salesforce(web_bridge.tenant.id)
    assert client.authenticator.client_secret == sf.client_secret  # type: ignore[attr-defined]
