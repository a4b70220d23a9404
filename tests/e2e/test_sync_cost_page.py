"""Before a full sync the pages say what it costs: the tab and the config page show, beside
"Sync manually", the calls on both sides for the contacts and profiles there are now."""

from __future__ import annotations

import html
import re

from bridge.sync import reconcile
from bridge.sync.runs import full_sync_cost
from tests.e2e.sync_helpers import run_to_end
from tests.fixtures.bridge import RunningBridge
from tests.fixtures.browser import WebUser


def cost_line(page: str) -> str:
    found = re.search(r'<p class="help" id="sync-cost">(.*?)</p>', page, re.S)
    assert found, "no cost estimate on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


async def test_the_tab_and_the_config_page_show_the_cost_of_a_full_sync(
    bridge: RunningBridge, admin: WebUser
) -> None:
    await admin.get("/sfcp")  # counted before the records come: 0 and 0
    await bridge.salesforce.admin(
        "POST", "/records/Contact", {"records": [{"LastName": f"C{i}"} for i in range(250)]}
    )
    database = bridge.tenant.copernica_database
    await bridge.copernica.admin(
        "POST",
        f"databases/{database}/profiles/seed",
        {"profiles": [{"fields": {"LastName": f"P{i}"}} for i in range(120)]},
    )
    assert "0 contact(s) and 0 profile(s)" in cost_line((await admin.get("/sfcp"))[1])
    # a run changes the records: the pages count again afterwards
    assert (await run_to_end(bridge, "full", within=120))[0] == "done"
    # both ways: each side now has the other's records too
    expected = full_sync_cost(370, 370, "both", bulk_from=reconcile.BULK_FROM)
    spent = []
    for path in ("/sfcp", "/config", "/sfcp"):
        before = await api_calls(bridge)
        status, page = await admin.get(path)
        assert status == 200
        spent.append(await api_calls(bridge) - before)
        line = cost_line(page)
        assert "370 contact(s) and 370 profile(s)" in line, line
        assert f"{expected.salesforce:,} Salesforce API call(s)" in line, line
        assert f"{expected.copernica:,} Copernica API call(s)" in line, line
        assert "counting costs 1 Salesforce call and 1 Copernica call, again after" in line
    # the first view counted; the same page again shows those counts without a call for them
    assert spent[2] == spent[0] - 2, spent


async def api_calls(bridge: RunningBridge) -> int:
    """API calls spent so far on both platforms, by their own counters."""
    salesforce = (await bridge.salesforce.admin("GET", ""))["api_usage"]["used"]
    copernica = (await bridge.copernica.admin("GET", "stats"))
    return int(salesforce) + int(copernica["api_calls"])


async def test_the_estimate_says_when_a_side_cannot_answer(bridge: RunningBridge) -> None:
    await bridge.salesforce.admin(  # the daily API budget is spent: the COUNT is refused
        "POST",
        "/faults",
        {
            "path": "/services/data/*/query",
            "status": 403,
            "times": None,
            "error_code": "REQUEST_LIMIT_EXCEEDED",
        },
    )
    user = WebUser(bridge.url)  # the first pages of this process since then
    try:
        await user.login(bridge.email)
        status, page = await user.get("/sfcp")
    finally:
        await user.close()
    assert status == 200
    assert cost_line(page).startswith("The cost of a full comparison cannot be estimated now")
