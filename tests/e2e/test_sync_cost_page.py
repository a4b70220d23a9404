"""Before a full sync the pages say what it costs: the tab and the config page show, beside
"Sync manually", the calls on both sides for the contacts and profiles there are now."""

from __future__ import annotations

import html
import re

from bridge.sync import reconcile
from bridge.sync.runs import full_sync_cost
from tests.fixtures.bridge import RunningBridge
from tests.fixtures.browser import WebUser


def cost_line(page: str) -> str:
    found = re.search(r'<p class="help" id="sync-cost">(.*?)</p>', page, re.S)
    assert found, "no cost estimate on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


async def test_the_tab_and_the_config_page_show_the_cost_of_a_full_sync(
    bridge: RunningBridge, admin: WebUser
) -> None:
    await bridge.salesforce.admin(
        "POST", "/records/Contact", {"records": [{"LastName": f"C{i}"} for i in range(2_500)]}
    )
    database = bridge.tenant.copernica_database
    await bridge.copernica.admin(
        "POST",
        f"databases/{database}/profiles/seed",
        {"profiles": [{"fields": {"LastName": f"P{i}"}} for i in range(1_200)]},
    )
    expected = full_sync_cost(2_500, 1_200, "both", bulk_from=reconcile.BULK_FROM)
    for path in ("/sfcp", "/config"):
        status, page = await admin.get(path)
        assert status == 200
        line = cost_line(page)
        assert "2,500 contact(s) and 1,200 profile(s)" in line, line
        assert f"{expected.salesforce:,} Salesforce API call(s)" in line, line
        assert f"{expected.copernica:,} Copernica API call(s)" in line, line
        assert "This estimate cost 1 Salesforce call and 1 Copernica call" in line


async def test_the_estimate_says_when_a_side_cannot_answer(
    bridge: RunningBridge, admin: WebUser
) -> None:
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
    status, page = await admin.get("/sfcp")
    assert status == 200
    assert cost_line(page).startswith("The cost of a full comparison cannot be estimated now")
