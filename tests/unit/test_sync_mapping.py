"""Field mapping and value conversion: every plausible pair of field types round-trips through
the Copernica sandbox's coercion and a Salesforce-like store without looking changed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.copernica.models import Field
from bridge.sync.mapping import (
    FieldMap,
    Mapping,
    build_mapping,
    comparable,
    fingerprint,
    fingerprints,
    from_copernica,
    from_salesforce,
    parse_copernica_datetime,
    parse_salesforce_datetime,
    to_copernica,
    to_salesforce,
)
from sandbox.copernica.values import coerce
from sandbox.salesforce import schema
from sandbox.salesforce.rest import describe

AMS = "Europe/Amsterdam"
KEY = b"tenant-key-0123456789abcdef"
CHOICES = ("Primary", "Secondary", "Tertiary")

TEXT_PAIRS = [
    ("string", "text"),
    ("string", "big"),
    ("textarea", "big"),
    ("email", "email"),
    ("email", "text"),
    ("phone", "phone_gsm"),
    ("phone", "phone_fax"),
    ("phone", "text"),
    ("url", "text"),
    ("picklist", "select"),
    ("picklist", "text"),
    ("multipicklist", "text"),
    ("reference", "text"),
]
PAIRS = [
    *TEXT_PAIRS,
    ("boolean", "integer"),
    ("boolean", "float"),
    ("boolean", "text"),
    ("date", "date"),
    ("date", "empty_date"),
    ("date", "datetime"),
    ("date", "empty_datetime"),
    ("date", "text"),
    ("datetime", "datetime"),
    ("datetime", "empty_datetime"),
    ("datetime", "date"),
    ("datetime", "empty_date"),
    ("datetime", "text"),
    ("double", "float"),
    ("double", "integer"),
    ("double", "text"),
    ("int", "integer"),
    ("int", "float"),
    ("int", "text"),
    ("currency", "float"),
    ("percent", "float"),
]
# Pairs where no detail is lost: a Salesforce value comes back from Copernica unchanged.
LOSSLESS = {
    *TEXT_PAIRS,
    ("boolean", "integer"),
    ("boolean", "float"),
    ("boolean", "text"),
    ("date", "date"),
    ("date", "empty_date"),
    ("date", "datetime"),
    ("date", "empty_datetime"),
    ("date", "text"),
    ("double", "float"),
    ("double", "text"),
    ("int", "integer"),
    ("int", "float"),
    ("int", "text"),
    ("currency", "float"),
    ("percent", "float"),
}


def field_map(
    sf_type: str, cp_type: str, *, name: str = "X__c", to_sf: bool = True, tz: str = AMS
) -> FieldMap:
    return FieldMap(
        sf_name=name,
        cp_name=name.lower(),
        sf_type=sf_type,
        cp_type=cp_type,
        to_salesforce=to_sf,
        cp_choices=CHOICES if cp_type == "select" else (),
        timezone=tz,
    )


def mapping_of(*fields: FieldMap, tz: str = AMS) -> Mapping:
    return Mapping(fields=tuple(fields), link_field="SalesforceId", timezone=tz)


# --- what each side stores ------------------------------------------------------------------


def cp_store(mapping: Mapping, fields: dict[str, str], written: dict[str, str]) -> dict[str, str]:
    """A Copernica profile after ``written`` (by cp_name) went through the sandbox's coercion."""
    stored = dict(fields)
    tz = ZoneInfo(mapping.timezone)
    for fm in mapping.fields:
        if fm.cp_name in written:
            default = "\n".join(fm.cp_choices)
            stored[fm.cp_name] = coerce(fm.cp_type, written[fm.cp_name], default=default, tz=tz)
    return stored


def sf_value(fm: FieldMap, value: Any) -> Any:
    """What Salesforce REST returns after a value was written (typed, then rendered)."""
    if value is None:
        return False if fm.sf_type == "boolean" else None
    if fm.sf_type == "boolean":
        assert isinstance(value, bool)
        return value
    if fm.sf_type in ("double", "currency", "percent"):
        return float(value)
    if fm.sf_type == "int":
        return int(float(value))
    if fm.sf_type == "datetime":
        moment = schema.parse_datetime(value)
        assert moment is not None, value
        return schema.rest_datetime(moment.replace(microsecond=moment.microsecond // 1000 * 1000))
    if fm.sf_type == "date":
        assert schema.parse_date(value) is not None, value
        return value
    assert isinstance(value, str)
    return value


def sf_store(mapping: Mapping, record: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    stored = dict(record)
    for fm in mapping.fields:
        if fm.sf_name in written:
            stored[fm.sf_name] = sf_value(fm, written[fm.sf_name])
    return stored


def via_copernica(mapping: Mapping, canonical: dict[str, str]) -> dict[str, str]:
    stored = cp_store(mapping, {}, to_copernica(mapping, canonical))
    return from_copernica(mapping, stored)


def via_salesforce(mapping: Mapping, canonical: dict[str, str]) -> dict[str, str]:
    return from_salesforce(mapping, sf_store(mapping, {}, to_salesforce(mapping, canonical)))


# --- strategies: raw values each side may hold ------------------------------------------------

# Instants around Amsterdam's DST changes, where wall-clock time is missing or repeated.
DST_EDGES = [
    datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
    datetime(2024, 10, 27, 1, 0, tzinfo=UTC),
    datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
    datetime(2025, 10, 26, 1, 0, tzinfo=UTC),
]
instants = st.one_of(
    st.datetimes(datetime(1950, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda edge, seconds: edge + timedelta(seconds=seconds),
        st.sampled_from(DST_EDGES),
        st.integers(-7200, 7200),
    ),
)
dates = st.dates(date(1900, 1, 1), date(2099, 12, 31))
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
emails = st.builds(
    lambda user, host: f"{user}@{host}.nl",
    st.from_regex(r"[A-Za-z0-9.]{1,10}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True),
)
decimals = st.decimals(min_value=-(10**12), max_value=10**12, allow_nan=False, places=4)
floats = st.one_of(
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False),
    st.sampled_from([0.1, 2.5, -2.5, 0.5, 1e-7, 123456.789]),
)


def sf_raw(fm: FieldMap) -> st.SearchStrategy[Any]:
    """A value Salesforce REST may return for the field."""
    kind = fm.sf_type
    if kind == "boolean":
        return st.booleans()
    if kind == "date":
        return st.none() | dates.map(date.isoformat)
    if kind == "datetime":
        return st.none() | instants.map(schema.rest_datetime)
    if kind == "int":
        return st.none() | st.integers(-(10**12), 10**12)
    if kind in ("double", "currency", "percent"):
        return st.none() | floats | st.integers(-(10**9), 10**9).map(float)
    if kind == "email":
        return st.none() | emails
    if fm.cp_type == "select":
        return st.none() | st.sampled_from([*CHOICES, "Other", "primary"])
    return st.none() | texts


def cp_raw(fm: FieldMap) -> st.SearchStrategy[str]:
    """A value someone may put in the Copernica field (coerced by the sandbox afterwards)."""
    kind, cp_type = fm.sf_type, fm.cp_type
    if cp_type == "select":
        return st.sampled_from(["", *CHOICES])
    if kind == "boolean":
        if cp_type == "text":
            return st.sampled_from(["", "1", "0", "true", "False", "yes", "NO", "on", "ja", "Nee"])
        return st.sampled_from(["", "0", "1"])
    if cp_type in ("integer", "foreign_key"):
        return st.integers(-(10**12), 10**12).map(str)
    if cp_type == "float":
        return floats.map(repr) | decimals.map(str)
    if cp_type in ("date", "empty_date"):
        return st.just("") | dates.map(date.isoformat)
    if cp_type in ("datetime", "empty_datetime"):
        return st.just("") | instants.map(lambda m: m.strftime("%Y-%m-%d %H:%M:%S"))
    if kind == "date":
        return st.just("") | dates.map(date.isoformat) | dates.map(lambda d: d.strftime("%d-%m-%Y"))
    if kind == "datetime":
        return (
            st.just("")
            | instants.map(lambda m: m.strftime("%Y-%m-%d %H:%M:%S"))
            | instants.map(lambda m: m.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )
    if kind in ("double", "int", "currency", "percent"):
        return st.just("") | decimals.map(str) | st.integers(-999, 999).map(str)
    if kind == "email":
        return st.just("") | emails
    return texts


pairs = st.sampled_from(PAIRS).map(lambda pair: field_map(*pair))


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_salesforce_values_survive_copernica(data: st.DataObject) -> None:
    fm = data.draw(pairs)
    mapping = mapping_of(fm)
    canonical = from_salesforce(mapping, {fm.sf_name: data.draw(sf_raw(fm))})
    back = via_copernica(mapping, canonical)
    fm = mapping.fields[0]
    assert comparable(fm, back[fm.sf_name]) == comparable(fm, canonical[fm.sf_name])
    assert fingerprints(KEY, mapping, back) == fingerprints(KEY, mapping, canonical)
    empty_number = canonical[fm.sf_name] == "" and fm.cp_type in ("integer", "float")
    if (fm.sf_type, fm.cp_type) in LOSSLESS and fm.cp_type != "select" and not empty_number:
        assert back == canonical


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_copernica_values_survive_salesforce(data: st.DataObject) -> None:
    fm = data.draw(pairs)
    mapping = mapping_of(fm)
    stored = cp_store(mapping, {}, {fm.cp_name: data.draw(cp_raw(fm))})
    canonical = from_copernica(mapping, stored)
    back = via_salesforce(mapping, canonical)
    fm = mapping.fields[0]
    assert comparable(fm, back[fm.sf_name]) == comparable(fm, canonical[fm.sf_name])
    # and what Copernica holds is itself stable when written back to Copernica
    again = via_copernica(mapping, canonical)
    assert comparable(fm, again[fm.sf_name]) == comparable(fm, canonical[fm.sf_name])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_comparable_is_idempotent_and_canonical(data: st.DataObject) -> None:
    fm = data.draw(pairs)
    mapping = mapping_of(fm)
    fm = mapping.fields[0]
    canonical = from_salesforce(mapping, {fm.sf_name: data.draw(sf_raw(fm))})[fm.sf_name]
    reduced = comparable(fm, canonical)
    assert comparable(fm, reduced) == reduced


def test_every_sf_type_has_a_pair_under_test() -> None:
    assert {sf for sf, _ in PAIRS} >= {
        "string", "email", "phone", "url", "textarea", "picklist", "multipicklist", "boolean",
        "date", "datetime", "double", "int", "currency", "percent", "reference",
    }  # fmt: skip


# --- datetimes and timezones ------------------------------------------------------------------


def convert(fm: FieldMap, sf: Any) -> tuple[str, str, str]:
    """(canonical, what Copernica is sent, canonical read back from Copernica)."""
    mapping = mapping_of(fm, tz=fm.timezone)
    canonical = from_salesforce(mapping, {fm.sf_name: sf})
    written = to_copernica(mapping, canonical)[fm.cp_name]
    back = from_copernica(mapping, cp_store(mapping, {}, {fm.cp_name: written}))
    return canonical[fm.sf_name], written, back[fm.sf_name]


@pytest.mark.parametrize(
    ("sf", "canonical", "local"),
    [
        ("2024-05-14T09:21:37.000+0000", "2024-05-14T09:21:37Z", "2024-05-14 11:21:37"),
        ("2024-01-14T09:21:37.999+0000", "2024-01-14T09:21:37Z", "2024-01-14 10:21:37"),
        ("2024-02-25T02:27:17Z", "2024-02-25T02:27:17Z", "2024-02-25 03:27:17"),
        ("2024-02-25T04:27:17+02:00", "2024-02-25T02:27:17Z", "2024-02-25 03:27:17"),
        ("2024-12-31T23:30:00.000+0000", "2024-12-31T23:30:00Z", "2025-01-01 00:30:00"),
        # spring forward: 02:00 CET becomes 03:00 CEST
        ("2024-03-31T00:59:59.000+0000", "2024-03-31T00:59:59Z", "2024-03-31 01:59:59"),
        ("2024-03-31T01:00:00.000+0000", "2024-03-31T01:00:00Z", "2024-03-31 03:00:00"),
    ],
)
def test_datetime_to_copernica_local_time(sf: str, canonical: str, local: str) -> None:
    assert convert(field_map("datetime", "datetime"), sf) == (canonical, local, canonical)


def test_autumn_overlap_is_one_wall_clock_time() -> None:
    """03:00 CEST becomes 02:00 CET: 00:30Z and 01:30Z are both 02:30 in Amsterdam."""
    fm = mapping_of(field_map("datetime", "datetime")).fields[0]
    first = convert(fm, "2024-10-27T00:30:00.000+0000")
    second = convert(fm, "2024-10-27T01:30:00.000+0000")
    assert first == ("2024-10-27T00:30:00Z", "2024-10-27 02:30:00", "2024-10-27T00:30:00Z")
    assert second == ("2024-10-27T01:30:00Z", "2024-10-27 02:30:00", "2024-10-27T00:30:00Z")
    assert comparable(fm, second[0]) == comparable(fm, second[2])
    assert fingerprint(KEY, fm, second[0]) == fingerprint(KEY, fm, second[2])
    # just before and after the overlap nothing is lost
    assert convert(fm, "2024-10-27T00:59:59.000+0000")[2] == "2024-10-27T00:59:59Z"
    assert convert(fm, "2024-10-27T02:00:00.000+0000")[2] == "2024-10-27T02:00:00Z"


def test_missing_spring_time_in_copernica_is_read_as_winter_time() -> None:
    mapping = mapping_of(field_map("datetime", "datetime"))
    fm = mapping.fields[0]
    canonical = from_copernica(mapping, {fm.cp_name: "2024-03-31 02:30:00"})[fm.sf_name]
    assert canonical == "2024-03-31T01:30:00Z"
    assert to_copernica(mapping, {fm.sf_name: canonical}) == {fm.cp_name: "2024-03-31 03:30:00"}
    assert comparable(fm, via_copernica(mapping, {fm.sf_name: canonical})[fm.sf_name]) == (
        comparable(fm, canonical)
    )


def test_datetime_in_copernica_date_field_keeps_the_local_date() -> None:
    fm = mapping_of(field_map("datetime", "date")).fields[0]
    canonical, written, back = convert(fm, "2024-05-14T22:30:00.000+0000")
    assert written == "2024-05-15"  # already the 15th in Amsterdam
    assert back == "2024-05-14T22:00:00Z"  # midnight in Amsterdam
    assert comparable(fm, canonical) == comparable(fm, back)
    assert fingerprint(KEY, fm, canonical) == fingerprint(KEY, fm, back)
    assert comparable(fm, "2024-05-15T21:59:59Z") == comparable(fm, back)  # 23:59:59 local
    assert comparable(fm, "2024-05-15T22:00:00Z") != comparable(fm, back)  # the next day


def test_datetime_in_text_field_reads_zones_and_local_time() -> None:
    mapping = mapping_of(field_map("datetime", "text"))
    fm = mapping.fields[0]
    for text in ("2024-05-14 11:21:37", "2024-05-14T09:21:37Z", "2024-05-14T11:21:37+02:00"):
        assert from_copernica(mapping, {fm.cp_name: text}) == {fm.sf_name: "2024-05-14T09:21:37Z"}
    assert from_copernica(mapping, {fm.cp_name: "soon"}) == {fm.sf_name: "soon"}


def test_other_timezone() -> None:
    fm = field_map("datetime", "datetime", tz="America/New_York")
    assert convert(fm, "2024-07-01T12:00:00.000+0000")[1] == "2024-07-01 08:00:00"
    assert mapping_of(fm, tz="UTC").fields[0].timezone == "UTC"  # the mapping's zone wins


def test_date_in_copernica_datetime_field_ignores_the_time() -> None:
    mapping = mapping_of(field_map("date", "datetime"))
    fm = mapping.fields[0]
    assert to_copernica(mapping, {fm.sf_name: "1988-04-17"}) == {fm.cp_name: "1988-04-17 00:00:00"}
    assert from_copernica(mapping, {fm.cp_name: "1988-04-17 15:45:00"}) == {
        fm.sf_name: "1988-04-17"
    }


@pytest.mark.parametrize("cp_type", ["date", "empty_date", "datetime", "empty_datetime", "text"])
@pytest.mark.parametrize("sf_type", ["date", "datetime"])
def test_empty_dates(sf_type: str, cp_type: str) -> None:
    mapping = mapping_of(field_map(sf_type, cp_type))
    fm = mapping.fields[0]
    for empty in ("", "0000-00-00", "0000-00-00 00:00:00"):
        assert from_copernica(mapping, {fm.cp_name: empty}) == {fm.sf_name: ""}
    assert from_salesforce(mapping, {fm.sf_name: None}) == {fm.sf_name: ""}
    assert to_salesforce(mapping, {fm.sf_name: ""}) == {fm.sf_name: None}
    assert via_copernica(mapping, {fm.sf_name: ""}) == {fm.sf_name: ""}
    assert from_copernica(mapping, {}) == {fm.sf_name: ""}


def test_salesforce_datetime_forms() -> None:
    expected = datetime(2024, 5, 14, 9, 21, 37, tzinfo=UTC)
    for text in (
        "2024-05-14T09:21:37.000+0000",
        "2024-05-14T09:21:37Z",
        "2024-05-14T11:21:37+02:00",
        "2024-05-14T04:21:37.123-0500",
    ):
        assert parse_salesforce_datetime(text) == expected
    assert parse_salesforce_datetime("14-05-2024") is None
    assert parse_copernica_datetime("2024-05-14 11:21:37", AMS) == expected
    assert parse_copernica_datetime("0000-00-00 00:00:00", AMS) is None
    mapping = mapping_of(field_map("datetime", "datetime"))
    epoch_ms = int(expected.timestamp() * 1000) + 456  # Pub/Sub CDC
    assert from_salesforce(mapping, {"X__c": epoch_ms}) == {"X__c": "2024-05-14T09:21:37Z"}
    assert to_salesforce(mapping, {"X__c": "2024-05-14T09:21:37Z"}) == {
        "X__c": "2024-05-14T09:21:37Z"
    }


# --- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", "true"), ("0", "false"), ("", "false"), ("true", "true"), ("FALSE", "false"),
        ("Yes", "true"), ("no", "false"), ("on", "true"), ("Off", "false"), ("ja", "true"),
        ("NEE", "false"), ("2", "true"), ("0.0", "false"), ("whatever", "false"),
    ],
)  # fmt: skip
def test_booleans_from_copernica(text: str, expected: str) -> None:
    mapping = mapping_of(field_map("boolean", "text"))
    assert from_copernica(mapping, {"x__c": text}) == {"X__c": expected}


def test_booleans_to_each_side() -> None:
    numeric = mapping_of(field_map("boolean", "integer"))
    text = mapping_of(field_map("boolean", "text"))
    real = mapping_of(field_map("boolean", "float"))
    assert to_copernica(numeric, {"X__c": "true"}) == {"x__c": "1"}
    assert to_copernica(numeric, {"X__c": "false"}) == {"x__c": "0"}
    assert to_copernica(real, {"X__c": "true"}) == {"x__c": "1"}
    assert to_copernica(text, {"X__c": "true"}) == {"x__c": "true"}
    assert to_copernica(text, {"X__c": "false"}) == {"x__c": "false"}
    assert from_salesforce(text, {"X__c": True}) == {"X__c": "true"}
    assert from_salesforce(text, {"X__c": None}) == {"X__c": "false"}
    assert to_salesforce(text, {"X__c": "true"}) == {"X__c": True}
    assert to_salesforce(text, {"X__c": ""}) == {"X__c": False}  # no null checkbox


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        (3, "3"), (3.0, "3"), (3.5, "3.5"), (-0.25, "-0.25"), (-0.0, "0"), (1e16, "10000000000000000"),
        (1e-7, "0.0000001"), (0.1, "0.1"), (None, ""), ("2.50", "2.5"),
    ],
)  # fmt: skip
def test_numbers_from_salesforce(raw: Any, canonical: str) -> None:
    mapping = mapping_of(field_map("double", "float"))
    assert from_salesforce(mapping, {"X__c": raw}) == {"X__c": canonical}


def test_numbers_to_copernica_integer_fields_round() -> None:
    mapping = mapping_of(field_map("double", "integer"))
    fm = mapping.fields[0]
    rounded = {"2.5": "3", "-2.5": "-3", "2.4": "2", "7": "7", "": ""}
    for canonical, written in rounded.items():
        assert to_copernica(mapping, {"X__c": canonical}) == {"x__c": written}
    assert comparable(fm, "2.5") == comparable(fm, "3")
    assert comparable(fm, "") == comparable(fm, "0")  # Copernica shows an empty number as 0
    assert from_copernica(mapping, {"x__c": "0"}) == {"X__c": "0"}


def test_numbers_from_copernica() -> None:
    floats = mapping_of(field_map("double", "float"))
    assert from_copernica(floats, {"x__c": "1e+16"}) == {"X__c": "10000000000000000"}
    assert from_copernica(floats, {"x__c": "1.5e-07"}) == {"X__c": "0.00000015"}
    text = mapping_of(field_map("double", "text"))
    assert from_copernica(text, {"x__c": "3.50"}) == {"X__c": "3.5"}
    assert from_copernica(text, {"x__c": "three"}) == {"X__c": "three"}
    assert from_copernica(text, {"x__c": ""}) == {"X__c": ""}


def test_numbers_to_salesforce() -> None:
    double = mapping_of(field_map("double", "float"))
    whole = mapping_of(field_map("int", "float"))
    assert to_salesforce(double, {"X__c": "3"}) == {"X__c": 3}
    assert to_salesforce(double, {"X__c": "3.5"}) == {"X__c": 3.5}
    assert to_salesforce(double, {"X__c": ""}) == {"X__c": None}
    assert to_salesforce(double, {"X__c": "three"}) == {"X__c": "three"}  # Salesforce says no
    assert to_salesforce(whole, {"X__c": "3.5"}) == {"X__c": 4}
    fm = whole.fields[0]
    assert comparable(fm, "3.5") == comparable(fm, "4")


def test_numbers_compare_at_double_precision() -> None:
    fm = field_map("double", "float")
    assert comparable(fm, "0.1000000000000000000001") == comparable(fm, "0.1")
    assert Decimal(comparable(fm, "123456.789")) == Decimal("123456.789")


# --- text, e-mail, select ---------------------------------------------------------------------


def test_text_is_kept_as_is() -> None:
    mapping = mapping_of(field_map("textarea", "big"))
    value = "  Line one\nLine two;  "
    assert via_copernica(mapping, {"X__c": value}) == {"X__c": value}
    assert from_salesforce(mapping, {"X__c": None}) == {"X__c": ""}
    multi = mapping_of(field_map("multipicklist", "text"))
    assert via_copernica(multi, {"X__c": "a;b"}) == {"X__c": "a;b"}


def test_email_compares_case_insensitively() -> None:
    fm = field_map("email", "email", name="Email")
    assert comparable(fm, "Ann.Smith@Example.ORG") == "ann.smith@example.org"
    assert fingerprint(KEY, fm, "Ann@X.nl") == fingerprint(KEY, fm, "ann@x.nl")
    mapping = mapping_of(fm)
    assert via_copernica(mapping, {"Email": "Ann@X.nl"}) == {"Email": "Ann@X.nl"}  # kept as is
    text = field_map("string", "text")
    assert fingerprint(KEY, text, "Ann") != fingerprint(KEY, text, "ann")


def test_select_compares_only_its_choices() -> None:
    fm = field_map("picklist", "select")
    mapping = mapping_of(fm)
    assert via_copernica(mapping, {"X__c": "Primary"}) == {"X__c": "Primary"}
    assert via_copernica(mapping, {"X__c": "Other"}) == {"X__c": ""}
    assert comparable(fm, "Other") == comparable(fm, "")
    assert comparable(fm, "primary") == ""  # choices are case-sensitive


def test_copernica_names_are_case_insensitive_and_missing_is_empty() -> None:
    mapping = mapping_of(
        field_map("string", "text", name="LastName"), field_map("string", "text", name="City")
    )
    assert from_copernica(mapping, {"LASTNAME": "Smith"}) == {"LastName": "Smith", "City": ""}
    assert from_salesforce(mapping, {"lastname": "Smith"}) == {"LastName": "Smith", "City": ""}


def test_writes_carry_only_given_and_writable_fields() -> None:
    mapping = mapping_of(
        field_map("string", "text", name="LastName"),
        field_map("string", "text", name="Name", to_sf=False),
    )
    canonical = {"LastName": "Smith", "Name": "Ann Smith", "Unmapped": "x"}
    assert to_salesforce(mapping, canonical) == {"LastName": "Smith"}
    assert to_salesforce(mapping, {"LastName": ""}) == {"LastName": None}
    assert to_copernica(mapping, canonical) == {"lastname": "Smith", "name": "Ann Smith"}
    assert to_copernica(mapping, {}) == {}


def test_long_values_are_not_truncated() -> None:
    mapping = mapping_of(field_map("string", "text", name="FirstName"))
    value = "x" * 500
    assert to_salesforce(mapping, {"FirstName": value}) == {"FirstName": value}


# --- build_mapping ----------------------------------------------------------------------------


def contact_fields() -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in describe(schema.CONTACT, "60.0")["fields"]}


def cp(number: int, name: str, kind: str = "text", value: str = "") -> Field:
    return Field(id=number, name=name, type=kind, value=value)


def test_build_mapping_matches_names_case_insensitively() -> None:
    cp_fields = [
        cp(1, "Id"),
        cp(2, "lastname"),
        cp(3, "Email", "email"),
        cp(4, "Birthdate", "empty_date"),
        cp(5, "Name"),
        cp(6, "MailingAddress"),
        cp(7, "MailingCity"),
        cp(8, "LastModifiedDate", "datetime"),
        cp(9, "Newsletter"),
        cp(10, "Level__c", "select", "Primary\nSecondary*\nTertiary"),
        cp(11, "HasOptedOutOfEmail", "integer"),
    ]
    mapping = build_mapping(cp_fields, contact_fields(), link_field="Id", timezone="UTC")
    names = [fm.sf_name for fm in mapping.fields]
    assert names == [
        "LastName", "Email", "Birthdate", "Name", "MailingCity", "LastModifiedDate", "Level__c",
        "HasOptedOutOfEmail",
    ]  # fmt: skip
    last = mapping.by_sf_name("LastName")
    assert (last.cp_name, last.sf_type, last.cp_type, last.to_salesforce) == (
        "lastname",
        "string",
        "text",
        True,
    )
    assert mapping.by_sf_name("Name").to_salesforce is False
    assert mapping.by_sf_name("LastModifiedDate").to_salesforce is False
    assert mapping.by_sf_name("Email").to_salesforce is True
    assert mapping.by_sf_name("Level__c").cp_choices == ("Primary", "Secondary", "Tertiary")
    assert mapping.link_field == "Id"
    assert {fm.timezone for fm in mapping.fields} == {"UTC"}
    with pytest.raises(KeyError):
        mapping.by_sf_name("MailingAddress")


def test_build_mapping_skips_link_field_and_id() -> None:
    cp_fields = [cp(1, "salesforceid"), cp(2, "ID"), cp(3, "FirstName")]
    sf_fields = contact_fields()
    sf_fields["SalesforceId"] = {**sf_fields["FirstName"], "name": "SalesforceId"}
    mapping = build_mapping(cp_fields, sf_fields, link_field="SalesforceId", timezone=AMS)
    assert [fm.sf_name for fm in mapping.fields] == ["FirstName"]
    assert mapping.link_field == "SalesforceId"


def test_build_mapping_needs_updateable_and_createable() -> None:
    sf_fields = {
        "A": {"name": "A", "type": "string", "updateable": True, "createable": False},
        "B": {"name": "B", "type": "string", "updateable": False, "createable": True},
        "C": {"name": "C", "type": "string", "updateable": True, "createable": True},
        "D": {"name": "D", "type": "location", "updateable": True, "createable": True},
        "E": {"name": "E", "type": "base64", "updateable": True, "createable": True},
    }
    cp_fields = [cp(n, name) for n, name in enumerate("ABCDE")]
    mapping = build_mapping(cp_fields, sf_fields, link_field="Id", timezone=AMS)
    assert [(fm.sf_name, fm.to_salesforce) for fm in mapping.fields] == [
        ("A", False),
        ("B", False),
        ("C", True),
    ]


def test_build_mapping_prefers_the_exact_spelling() -> None:
    cp_fields = [cp(1, "email", "text"), cp(2, "Email", "email"), cp(3, "EMAIL", "text")]
    mapping = build_mapping(cp_fields, contact_fields(), link_field="Id", timezone=AMS)
    assert [(fm.cp_name, fm.cp_type) for fm in mapping.fields] == [("Email", "email")]


def test_salesforce_select() -> None:
    mapping = mapping_of(
        field_map("string", "text", name="LastName"),
        field_map("datetime", "datetime", name="LastModifiedDate", to_sf=False),
        field_map("email", "email", name="Email"),
    )
    assert mapping.salesforce_select() == [
        "Id",
        "LastModifiedDate",
        "IsDeleted",
        "MasterRecordId",
        "LastName",
        "Email",
    ]


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(Exception, match="Mars"):
        mapping_of(field_map("string", "text"), tz="Mars/Olympus")


# --- fingerprints -----------------------------------------------------------------------------


def test_fingerprints_are_keyed_and_reveal_nothing() -> None:
    fm = field_map("string", "text", name="LastName")
    mine = fingerprint(KEY, fm, "Smith")
    assert len(mine) == 16 and int(mine, 16) >= 0
    assert "Smith" not in mine and "smith" not in mine.lower()
    assert fingerprint(KEY, fm, "Smith") == mine  # stable
    assert fingerprint(b"another tenant", fm, "Smith") != mine
    assert fingerprint(KEY, fm, "Smyth") != mine
    assert fingerprint(KEY, field_map("string", "text", name="FirstName"), "Smith") != mine
    assert fingerprint(KEY, fm, "") != fingerprint(KEY, fm, " ")


def test_fingerprints_of_a_record() -> None:
    mapping = mapping_of(
        field_map("string", "text", name="LastName"), field_map("email", "email", name="Email")
    )
    prints = fingerprints(KEY, mapping, {"LastName": "Smith", "Email": "A@B.nl", "Other": "x"})
    assert set(prints) == {"LastName", "Email"}
    assert prints["Email"] == fingerprint(KEY, mapping.by_sf_name("Email"), "a@b.nl")
    assert fingerprints(KEY, mapping, {"LastName": "Smith"}).keys() == {"LastName"}
