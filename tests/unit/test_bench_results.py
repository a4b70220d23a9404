"""What the sync bench reads and writes: the sandboxes' ``/_sandbox/landings`` (when an edit
carrying a token was stored, by whom, and the API calls so far) and ``bench/results.json``."""

from __future__ import annotations

import json
from pathlib import Path

from bench.bench_sync import FULL, Phase, Results, summary, write_results
from bench.harness import Usage
from bridge.copernica.client import CopernicaClient
from bridge.salesforce import SalesforceClient
from tests.fixtures.copernica import RunningSandbox as CopernicaSandbox
from tests.fixtures.salesforce import RunningSandbox as SalesforceSandbox

RESULT_KEYS = {
    "sf_calls_per_1000_sf_to_cp", "cp_calls_per_1000_sf_to_cp", "sf_calls_per_1000_cp_to_sf",
    "cp_calls_per_1000_cp_to_sf", "p99_ms_sf_to_cp_100", "p99_ms_cp_to_sf_100",
    "cpu_ms_per_change", "sustained_changes_per_s", "webhook_answer_ms_p50",
}


async def test_salesforce_landings_tell_user_edits_from_the_bridges_writes(
    sf_sandbox: SalesforceSandbox, sf_client: SalesforceClient
) -> None:
    contact = (await sf_sandbox.admin("POST", "/contacts", {"LastName": "Lovelace"}))["id"]
    await sf_sandbox.admin("POST", "/landings", {"field": "Title", "prefix": "bench-"})

    await sf_sandbox.admin("PATCH", f"/contacts/{contact}", {"Title": "bench-user"})
    await sf_sandbox.admin("PATCH", f"/contacts/{contact}", {"Title": "not a token"})
    await sf_client.update("Contact", contact, {"Title": "bench-bridge"})

    first = await sf_sandbox.admin("GET", "/landings")
    assert [(e["value"], e["caller"], e["records"]) for e in first["entries"]] == [
        ("bench-user", "", [contact]), ("bench-bridge", "test-bridge", [contact]),
    ]
    assert first["entries"][0]["at"] <= first["entries"][1]["at"]
    assert first["api_calls"] == sf_sandbox.state.api_used > 0

    again = await sf_sandbox.admin("GET", f"/landings?after={first['next']}")
    assert again["entries"] == [] and again["next"] == first["next"]


async def test_copernica_landings_tell_user_edits_from_rest_writes(
    copernica_sandbox: CopernicaSandbox, copernica_client: CopernicaClient
) -> None:
    await copernica_client.create_field(1, "Title", "text")
    profile = int((await copernica_sandbox.admin(
        "POST", "databases/1/profiles", {"fields": {"Title": "CEO"}}
    ))["ID"])
    await copernica_sandbox.admin("POST", "landings", {"field": "Title", "prefix": "bench-"})

    await copernica_sandbox.admin("PUT", f"profiles/{profile}", {"fields": {"Title": "bench-user"}})
    await copernica_client.update_profile_fields(profile, {"Title": "bench-bridge"})

    first = await copernica_sandbox.admin("GET", "landings")
    assert [(e["value"], e["caller"], e["profile"]) for e in first["entries"]] == [
        ("bench-user", "ms", str(profile)), ("bench-bridge", "rest", str(profile)),
    ]
    assert first["api_calls"] == sum(copernica_sandbox.state.api_calls.values()) > 0
    again = await copernica_sandbox.admin("GET", f"landings?after={first['next']}")
    assert again["entries"] == []


def _phase(label: str, **values: object) -> Phase:
    idle = Usage(1.0, 0.5, 0.1, 0.1, 0.1, 0.1, 1.0, 2.0)
    base: dict[str, object] = {
        "label": label, "changes": 1000, "push_seconds": 1.0, "landed_seconds": 2.0,
        "sf_to_cp": [], "cp_to_sf": [], "lost": 0, "arrivals": [], "calls_landed": (0, 0),
        "calls_settled": (0, 0), "busy": idle, "work": idle,
    }
    return Phase(**{**base, **values})  # type: ignore[arg-type]


def test_results_json_holds_every_key_as_a_number_or_null(tmp_path: Path) -> None:
    results = Results(FULL)
    results.phases = {
        "steady 100/s": _phase("steady 100/s", sf_to_cp=[10.0, 20.0], answers=[3.0]),
        "burst Salesforce → Copernica": _phase("x", calls_landed=(5, 1000)),
        "burst Copernica → Salesforce": _phase("x", calls_landed=(4, 2)),
        # the first and last 100 landings slow (filling, the last window draining), the 800
        # between them one a millisecond
        "burst both ways (sustained)": _phase(
            "x", landed_seconds=2.0,
            arrivals=[k * 0.004 for k in range(100)] + [0.4 + k * 0.001 for k in range(800)]
            + [1.2 + k * 0.008 for k in range(100)],
        ),
    }
    values = summary(results)
    path = tmp_path / "results.json"
    write_results(values, path)
    written = json.loads(path.read_text())

    assert set(written) >= RESULT_KEYS
    assert written["sf_calls_per_1000_sf_to_cp"] == 5 and written["cp_calls_per_1000_sf_to_cp"] == 1000
    assert written["sustained_changes_per_s"] == 1000  # the middle 80 % of the landings
    assert written["landed_changes_per_s"] == 500  # first push → last landing
    assert written["cpu_ms_per_change"] == 0.5  # 0.5 CPU seconds of the bridge over 1,000 changes
    assert written["p99_ms_cp_to_sf_100"] is None  # nothing measured: null, not NaN
    assert all(v is None or isinstance(v, int | float) for v in written.values())
