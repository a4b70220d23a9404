"""Pure pieces of the pages: the dashboard chart, throttling rule, redirects and their answers,
field types."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict
from yarl import URL

from bridge.config import Settings
from bridge.security import throttle
from bridge.security.csrf import matches
from bridge.tenants import my_domain
from bridge.web import chart
from bridge.web.guard import Flash, redirect, safe_next, take_flash
from bridge.web.keys import SETTINGS
from bridge.web.platforms import copernica_field_name, copernica_field_type
from bridge.web.render import when

NOW = datetime(2026, 3, 29, 14, 35, tzinfo=UTC)


def test_the_chart_has_48_hours_and_one_bar_per_direction_and_busy_hour():
    rows = [
        (NOW.replace(minute=5), "sf_to_cp", 4),
        (NOW.replace(minute=0) - timedelta(hours=2), "cp_to_sf", 2),
        (NOW - timedelta(hours=60), "sf_to_cp", 99),  # outside the window
        (NOW.replace(minute=0), "elsewhere", 7),  # unknown direction
    ]
    figure = chart.build(rows, NOW)
    assert len(chart.hours(NOW)) == 48
    assert chart.hours(NOW)[-1] == NOW.replace(minute=0)
    assert figure.maximum == 4
    assert figure.total == {"sf_to_cp": 4, "cp_to_sf": 2}
    assert len(figure.bars) == 2
    tallest = max(figure.bars, key=lambda b: b.height)
    assert tallest.direction == "sf_to_cp" and tallest.y + tallest.height == figure.baseline
    assert all(chart.LEFT <= b.x <= chart.WIDTH for b in figure.bars)
    assert "4 changes" in tallest.label


def test_an_empty_chart_has_no_bars():
    figure = chart.build([], NOW)
    assert figure.bars == () and figure.maximum == 0 and len(figure.ticks) == 8


def _counts(**given):
    counts = {f"{scope}{suffix}": None for scope in ("pair", "client", "address")
              for suffix in ("", "_last")}
    return {**counts, "last_minute": 0, **given}


def test_failures_double_the_wait_and_never_lock_for_ever():
    assert [throttle.backoff(n, 5, 60.0) for n in range(4, 10)] == [0, 1, 2, 4, 8, 16]
    assert throttle.backoff(40, 5, 60.0) == 60.0
    assert throttle.judge(_counts(), NOW).allowed
    just_now = NOW - timedelta(seconds=0.5)
    below = _counts(pair=throttle.FREE_PAIR - 1, pair_last=just_now)
    assert throttle.judge(below, NOW).allowed
    at_limit = throttle.judge(_counts(pair=throttle.FREE_PAIR + 3, pair_last=just_now), NOW)
    assert not at_limit.allowed and 7 < at_limit.retry_after <= 8
    waited = _counts(pair=throttle.FREE_PAIR + 3, pair_last=NOW - timedelta(seconds=9))
    assert throttle.judge(waited, NOW).allowed


def test_someone_elses_failures_delay_an_address_by_a_minute_at_most():
    flood = _counts(address=10_000, address_last=NOW)
    verdict = throttle.judge(flood, NOW)
    assert not verdict.allowed and verdict.retry_after == throttle.ADDRESS_CAP


def test_a_client_spraying_many_addresses_waits_and_so_does_everyone_in_a_flood():
    spray = throttle.judge(_counts(client=throttle.FREE_CLIENT + 2, client_last=NOW), NOW)
    assert not spray.allowed and spray.retry_after == 4
    flood = throttle.judge(_counts(last_minute=throttle.GLOBAL_PER_MINUTE), NOW)
    assert not flood.allowed and flood.retry_after == 1


def test_only_local_paths_are_followed_after_login():
    assert safe_next("/config") == "/config"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil.example", "", None):
        assert safe_next(bad) == "/sfcp"


def test_csrf_tokens_compare_exactly_and_empty_never_matches():
    assert matches("abc", "abc")
    assert not matches("abc", "abd") and not matches("", "") and not matches(None, "x")


def test_salesforce_fields_become_copernica_fields():
    assert copernica_field_type("email") == "email"
    assert copernica_field_type("date") == "empty_date"
    assert copernica_field_type("double") == "float"
    assert copernica_field_type("reference") == "text"
    assert copernica_field_name("Id") == "SalesforceId"
    assert copernica_field_name("FirstName") == "FirstName"


def test_moments_are_shown_in_utc():
    assert when("2026-03-29T16:05:09+02:00") == "2026-03-29 14:05 UTC"
    assert when(NOW) == "2026-03-29 14:35 UTC"
    assert when(None) == "never" and when(None, "–") == "–"


HOSTILE = st.lists(
    st.sampled_from(["/", "//", "\\", "\t", "\n", "\r", " ", ":", "%2f", "%09", "@", "?", "#",
                     "evil.example", "https:", "\x00", "\x7f", "\u3000", "\uff0f", "."]),
    max_size=8,
).map("".join)


@given(st.one_of(HOSTILE, st.text(max_size=24)))
def test_no_next_value_leaves_the_site(target):
    kept = safe_next(target, "/fallback")
    # What a browser does with Location: drops tabs and newlines, reads "\" as "/".
    cleaned = re.sub(r"[\t\n\r]", "", kept).replace("\\", "/")
    assert URL("https://bridge.test/login").join(URL(cleaned)).host == "bridge.test"
    assert kept == "/fallback" or kept == target


def test_the_my_domain_of_a_salesforce_url():
    assert my_domain("https://acme.my.salesforce.com") == "acme"
    assert my_domain("https://ACME--uat.sandbox.my.salesforce.com/") == "acme--uat.sandbox"
    for other in ("https://login.salesforce.com", "https://my.salesforce.com",
                  "https://acme.my.salesforce.com.evil.example", "http://localhost:8801", ""):
        assert my_domain(other) is None


def _answer(form: dict[str, list[str]], kind: str = "error") -> tuple[str, Flash | None]:
    """Where a redirect with a message goes, and the flash the next page reads."""
    app = web.Application()
    app[SETTINGS] = Settings.from_env({})
    request = make_mocked_request("POST", "/config/salesforce", app=app)
    typed = MultiDict([(k, v) for k, values in form.items() for v in values])
    response = redirect(request, "/config#salesforce", "These details do not work.", kind,
                        typed=typed, anyway=True)
    cookie = response.headers["Set-Cookie"].split(";")[0]
    following = make_mocked_request("GET", "/config", headers={"Cookie": cookie}, app=app)
    return response.location, take_flash(following)


def test_an_answer_shows_in_the_section_of_its_form_with_what_was_typed_but_no_secret():
    location, answer = _answer({
        "login_url": ["https://acme.my.salesforce.com"], "fields": ["Email", "LastName"],
        "consumer_secret": ["s3cret"], "password": ["pw"], "private_key": ["PEM"],
        "csrf_token": ["token"],
    })
    assert location == "/config#outcome-salesforce"  # the anchor is the message itself
    assert answer is not None and answer.at == "salesforce" and answer.anyway
    assert answer.value("login_url") == "https://acme.my.salesforce.com"
    assert answer.values("fields") == ["Email", "LastName"]
    assert answer.value("consumer_key", "stored") == "stored"
    assert set(answer.typed) == {"login_url", "fields"}  # secrets are never kept


def test_a_success_keeps_nothing_typed_and_a_huge_form_still_gets_its_answer():
    _, answer = _answer({"login_url": ["https://acme.my.salesforce.com"]}, kind="ok")
    assert answer is not None and answer.typed == {}
    _, answer = _answer({"description": ["x" * 5000]})
    assert answer is not None and answer.text == "These details do not work." and not answer.typed
