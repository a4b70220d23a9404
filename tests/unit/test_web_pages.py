"""Pure pieces of the pages: the dashboard chart, throttling rule, redirects, field types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.security import throttle
from bridge.security.csrf import matches
from bridge.web import chart
from bridge.web.guard import safe_next
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


def test_throttling_rule():
    recent = NOW - timedelta(minutes=1)
    assert throttle.judge(throttle.PER_CLIENT - 1, 10, recent, recent, NOW).allowed
    blocked = throttle.judge(throttle.PER_CLIENT, throttle.PER_CLIENT, recent, recent, NOW)
    assert not blocked.allowed and 0 < blocked.retry_after <= throttle.LOCKOUT
    assert throttle.judge(throttle.PER_CLIENT, 5, NOW - timedelta(hours=1),
                          NOW - timedelta(hours=1), NOW).allowed
    assert not throttle.judge(0, throttle.PER_ADDRESS, None, recent, NOW).allowed


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
