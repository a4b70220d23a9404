"""The 3-way merge: each rule, echoes, first merges, directions, creates, and the properties that
keep the engine from looping (applying a result and merging again has nothing to do)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sync.mapping import (
    FieldMap,
    Mapping,
    fingerprint,
    fingerprints,
    from_copernica,
    from_salesforce,
    to_copernica,
    to_salesforce,
)
from bridge.sync.merge import Conflict, MergeResult, merge
from tests.unit.test_sync_mapping import (
    KEY,
    PAIRS,
    cp_raw,
    cp_store,
    field_map,
    mapping_of,
    sf_raw,
    sf_store,
)

MAPPING = mapping_of(
    field_map("string", "text", name="LastName"),
    field_map("email", "email", name="Email"),
    field_map("boolean", "integer", name="HasOptedOutOfEmail"),
    field_map("double", "integer", name="Score__c"),
    field_map("string", "text", name="Name", to_sf=False),
)
BASE = {
    "LastName": "Smith",
    "Email": "ann@example.org",
    "HasOptedOutOfEmail": "false",
    "Score__c": "3",
    "Name": "Ann Smith",
}
AGREED = fingerprints(KEY, MAPPING, BASE)
EARLY = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)
LATE = EARLY + timedelta(minutes=5)


def fp(name: str, value: str) -> str:
    return fingerprint(KEY, MAPPING.by_sf_name(name), value)


def changed(**values: str) -> dict[str, str]:
    return {**BASE, **values}


def run(
    salesforce: dict[str, str] | None,
    copernica: dict[str, str] | None,
    agreed: dict[str, str] | None = None,
    **options: Any,
) -> MergeResult:
    return merge(
        MAPPING, KEY, AGREED if agreed is None else agreed, salesforce, copernica, **options
    )


# --- echoes and one-sided changes -----------------------------------------------------------


def test_echo_is_nothing_to_do() -> None:
    result = run(BASE, BASE)
    assert result.nothing_to_do
    assert result == MergeResult({}, {}, AGREED, ())


def test_echo_with_email_in_another_case_is_nothing_to_do() -> None:
    assert run(BASE, changed(Email="Ann@Example.ORG")).nothing_to_do


def test_only_salesforce_changed_goes_to_copernica() -> None:
    result = run(changed(LastName="Jones"), BASE)
    assert result.to_copernica == {"LastName": "Jones"}
    assert result.to_salesforce == {}
    assert result.agreed == {**AGREED, "LastName": fp("LastName", "Jones")}
    assert not result.conflicts and not result.nothing_to_do


def test_only_copernica_changed_goes_to_salesforce() -> None:
    result = run(BASE, changed(LastName="Jones", HasOptedOutOfEmail="true"))
    assert result.to_salesforce == {"LastName": "Jones", "HasOptedOutOfEmail": "true"}
    assert result.to_copernica == {}
    assert result.agreed["HasOptedOutOfEmail"] == fp("HasOptedOutOfEmail", "true")


def test_copernica_change_of_a_read_only_field_is_ignored() -> None:
    result = run(BASE, changed(Name="Someone Else"))
    assert result.nothing_to_do
    assert result.agreed == AGREED


def test_salesforce_change_of_a_read_only_field_reaches_copernica() -> None:
    result = run(changed(Name="Ann Jones"), BASE)
    assert result.to_copernica == {"Name": "Ann Jones"}


def test_both_changed_to_the_same_value_only_updates_agreed() -> None:
    result = run(changed(LastName="Jones"), changed(LastName="Jones"))
    assert result.nothing_to_do
    assert result.agreed["LastName"] == fp("LastName", "Jones") != AGREED["LastName"]


def test_rounding_in_copernica_is_no_change() -> None:
    """3.4 in Salesforce is 3 in a Copernica integer field: in sync."""
    agreed = {**AGREED, "Score__c": fp("Score__c", "3.4")}
    assert run(changed(Score__c="3.4"), changed(Score__c="3"), agreed).nothing_to_do


# --- conflicts ----------------------------------------------------------------------------------


def conflict_of(**options: Any) -> MergeResult:
    return run(changed(LastName="Jones"), changed(LastName="Brown"), **options)


def test_conflict_newest_copernica_later() -> None:
    result = conflict_of(rule="newest", salesforce_modified=EARLY, copernica_modified=LATE)
    assert result.conflicts == (Conflict("LastName", "Jones", "Brown", "copernica"),)
    assert result.to_salesforce == {"LastName": "Brown"}
    assert result.to_copernica == {}
    assert result.agreed["LastName"] == fp("LastName", "Brown")


def test_conflict_newest_salesforce_later() -> None:
    result = conflict_of(salesforce_modified=LATE, copernica_modified=EARLY)
    assert result.conflicts == (Conflict("LastName", "Jones", "Brown", "salesforce"),)
    assert result.to_copernica == {"LastName": "Jones"}
    assert result.to_salesforce == {}


@pytest.mark.parametrize(
    ("sf_time", "cp_time"), [(EARLY, EARLY), (None, LATE), (EARLY, None), (None, None)]
)
def test_conflict_newest_tie_or_unknown_time_goes_to_salesforce(
    sf_time: datetime | None, cp_time: datetime | None
) -> None:
    result = conflict_of(salesforce_modified=sf_time, copernica_modified=cp_time)
    assert result.conflicts[0].winner == "salesforce"
    assert result.to_copernica == {"LastName": "Jones"}


def test_conflict_newest_compares_instants_not_wall_clocks() -> None:
    amsterdam = datetime(2024, 5, 14, 11, 1, tzinfo=UTC).astimezone(ZoneInfo("Europe/Amsterdam"))
    # 13:01 local: one minute after Salesforce's 11:00Z
    result = conflict_of(
        salesforce_modified=datetime(2024, 5, 14, 11, 0, tzinfo=UTC), copernica_modified=amsterdam
    )
    assert result.conflicts[0].winner == "copernica"


def test_conflict_salesforce_wins() -> None:
    result = conflict_of(rule="salesforce_wins", salesforce_modified=EARLY, copernica_modified=LATE)
    assert result.conflicts[0].winner == "salesforce"
    assert result.to_copernica == {"LastName": "Jones"}


def test_conflict_copernica_wins() -> None:
    result = conflict_of(rule="copernica_wins", salesforce_modified=LATE, copernica_modified=EARLY)
    assert result.conflicts[0].winner == "copernica"
    assert result.to_salesforce == {"LastName": "Brown"}


def test_conflict_on_a_read_only_field_goes_to_salesforce() -> None:
    result = run(changed(Name="Ann Jones"), changed(Name="Ann Brown"), rule="copernica_wins")
    assert result.conflicts == (Conflict("Name", "Ann Jones", "Ann Brown", "salesforce"),)
    assert result.to_copernica == {"Name": "Ann Jones"}
    assert result.to_salesforce == {}


def test_conflicts_come_in_mapping_order() -> None:
    result = run(
        changed(LastName="A", Email="a@x.nl"),
        changed(LastName="B", Email="b@x.nl"),
        rule="copernica_wins",
    )
    assert [c.field for c in result.conflicts] == ["LastName", "Email"]
    assert result.to_salesforce == {"LastName": "B", "Email": "b@x.nl"}


# --- first merge --------------------------------------------------------------------------------


def test_first_merge_of_equal_values_agrees() -> None:
    result = run(BASE, changed(Email="ANN@example.org"), agreed={})
    assert result.nothing_to_do
    assert result.agreed == AGREED


def test_first_merge_fills_an_empty_side() -> None:
    result = run(changed(LastName="", Email="ann@x.nl"), changed(Email=""), agreed={})
    assert result.to_salesforce == {"LastName": "Smith"}
    assert result.to_copernica == {"Email": "ann@x.nl"}
    assert not result.conflicts
    assert result.agreed["LastName"] == fp("LastName", "Smith")


def test_first_merge_treats_copernica_zero_and_unchecked_as_empty() -> None:
    result = run(
        changed(Score__c="", HasOptedOutOfEmail="true"),
        changed(Score__c="7", HasOptedOutOfEmail="false"),
        agreed={},
    )
    assert result.to_salesforce == {"Score__c": "7"}
    assert result.to_copernica == {"HasOptedOutOfEmail": "true"}
    assert not result.conflicts
    assert run(changed(Score__c=""), changed(Score__c="0"), agreed={}).nothing_to_do


def test_first_merge_of_different_values_is_a_conflict() -> None:
    result = run(changed(LastName="Jones"), changed(LastName="Brown"), agreed={})
    assert result.conflicts == (Conflict("LastName", "Jones", "Brown", "salesforce"),)
    assert result.to_copernica == {"LastName": "Jones"}


def test_first_merge_does_not_fill_salesforce_read_only_fields() -> None:
    result = run(changed(Name=""), BASE, agreed={})
    assert result.nothing_to_do
    assert "Name" not in result.agreed


# --- directions ---------------------------------------------------------------------------------


def test_sf_to_cp_ignores_copernica_changes() -> None:
    result = run(BASE, changed(LastName="Jones"), direction="sf_to_cp")
    assert result.nothing_to_do
    assert result.agreed["LastName"] == AGREED["LastName"]


def test_sf_to_cp_conflict_goes_to_salesforce() -> None:
    result = conflict_of(
        direction="sf_to_cp", rule="copernica_wins", salesforce_modified=EARLY,
        copernica_modified=LATE,
    )  # fmt: skip
    assert result.conflicts[0].winner == "salesforce"
    assert result.to_copernica == {"LastName": "Jones"} and result.to_salesforce == {}


def test_cp_to_sf_ignores_salesforce_changes() -> None:
    result = run(changed(LastName="Jones", Name="X"), BASE, direction="cp_to_sf")
    assert result.nothing_to_do
    assert result.agreed == AGREED


def test_cp_to_sf_conflict_goes_to_copernica() -> None:
    result = conflict_of(direction="cp_to_sf", rule="salesforce_wins")
    assert result.conflicts[0].winner == "copernica"
    assert result.to_salesforce == {"LastName": "Brown"} and result.to_copernica == {}


def test_cp_to_sf_never_syncs_read_only_fields() -> None:
    result = run(changed(Name="A"), changed(Name="B"), direction="cp_to_sf")
    assert result.nothing_to_do
    assert result.agreed["Name"] == AGREED["Name"]


def test_one_way_first_merge_fills_only_the_target() -> None:
    sf_empty = run(changed(LastName=""), BASE, agreed={}, direction="sf_to_cp")
    assert sf_empty.nothing_to_do and "LastName" not in sf_empty.agreed
    cp_empty = run(BASE, changed(LastName=""), agreed={}, direction="sf_to_cp")
    assert cp_empty.to_copernica == {"LastName": "Smith"}


# --- creates ------------------------------------------------------------------------------------


def test_new_copernica_profile_gets_everything() -> None:
    result = run(changed(Email=""), None, agreed={})
    assert result.to_copernica == changed(Email="")
    assert result.to_salesforce == {} and not result.conflicts
    assert result.agreed == fingerprints(KEY, MAPPING, changed(Email=""))


def test_new_salesforce_contact_gets_the_writable_non_empty_values() -> None:
    result = run(None, changed(Email=""), agreed={})
    assert result.to_salesforce == {
        "LastName": "Smith",
        "HasOptedOutOfEmail": "false",
        "Score__c": "3",
    }
    assert result.to_copernica == {} and not result.conflicts
    assert set(result.agreed) == {"LastName", "Email", "HasOptedOutOfEmail", "Score__c"}


@pytest.mark.parametrize(
    ("salesforce", "copernica", "direction"),
    [(None, BASE, "sf_to_cp"), (BASE, None, "cp_to_sf"), (None, None, "both")],
)
def test_create_against_the_direction_does_nothing(
    salesforce: dict[str, str] | None, copernica: dict[str, str] | None, direction: Any
) -> None:
    result = run(salesforce, copernica, agreed={}, direction=direction)
    assert result.nothing_to_do and result.agreed == {}


def test_agreement_on_unmapped_fields_is_dropped() -> None:
    result = run(BASE, BASE, agreed={**AGREED, "Gone__c": "0123456789abcdef"})
    assert result.agreed == AGREED


# --- properties ---------------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A random mapping, both sides' stored records, an agreement and merge options."""
    count = draw(st.integers(1, 6))
    fields = []
    for number in range(count):
        sf_type, cp_type = draw(st.sampled_from(PAIRS))
        fields.append(
            FieldMap(
                sf_name=f"F{number}__c",
                cp_name=f"f{number}__C",
                sf_type=sf_type,
                cp_type=cp_type,
                to_salesforce=draw(st.booleans()),
                cp_choices=("Primary", "Secondary", "Tertiary") if cp_type == "select" else (),
            )
        )
    mapping = Mapping(tuple(fields), link_field="Id", timezone="Europe/Amsterdam")
    sf_record: dict[str, Any] | None = {}
    cp_fields: dict[str, str] | None = {}
    agreed: dict[str, str] = {}
    for fm in mapping.fields:
        assert sf_record is not None and cp_fields is not None
        sf_record[fm.sf_name] = draw(sf_raw(fm))
        cp_fields.update(cp_store(mapping, {}, {fm.cp_name: draw(cp_raw(fm))}))
        basis = draw(st.sampled_from(["none", "salesforce", "copernica", "other"]))
        if basis == "salesforce":
            agreed[fm.sf_name] = fingerprint(
                KEY, fm, from_salesforce(mapping, sf_record)[fm.sf_name]
            )
        elif basis == "copernica":
            agreed[fm.sf_name] = fingerprint(
                KEY, fm, from_copernica(mapping, cp_fields)[fm.sf_name]
            )
        elif basis == "other":
            other = from_salesforce(mapping, {fm.sf_name: draw(sf_raw(fm))})[fm.sf_name]
            agreed[fm.sf_name] = fingerprint(KEY, fm, other)
    missing = draw(st.sampled_from(["neither", "neither", "neither", "salesforce", "copernica"]))
    if missing == "salesforce":
        sf_record = None
    elif missing == "copernica":
        cp_fields = None
    times = st.none() | st.sampled_from([EARLY, LATE])
    return {
        "mapping": mapping,
        "sf_record": sf_record,
        "cp_fields": cp_fields,
        "agreed": agreed,
        "direction": draw(st.sampled_from(["both", "sf_to_cp", "cp_to_sf"])),
        "rule": draw(st.sampled_from(["newest", "salesforce_wins", "copernica_wins"])),
        "salesforce_modified": draw(times),
        "copernica_modified": draw(times),
    }


def merge_scenario(s: dict[str, Any], agreed: dict[str, str] | None = None) -> MergeResult:
    mapping = s["mapping"]
    sf = None if s["sf_record"] is None else from_salesforce(mapping, s["sf_record"])
    cp = None if s["cp_fields"] is None else from_copernica(mapping, s["cp_fields"])
    return merge(
        mapping,
        KEY,
        s["agreed"] if agreed is None else agreed,
        sf,
        cp,
        direction=s["direction"],
        rule=s["rule"],
        salesforce_modified=s["salesforce_modified"],
        copernica_modified=s["copernica_modified"],
    )


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_applying_a_merge_then_merging_again_has_nothing_to_do(s: dict[str, Any]) -> None:
    mapping: Mapping = s["mapping"]
    result = merge_scenario(s)
    if s["direction"] == "sf_to_cp":
        assert result.to_salesforce == {}
    if s["direction"] == "cp_to_sf":
        assert result.to_copernica == {}
    writable = {fm.sf_name for fm in mapping.fields if fm.to_salesforce}
    assert set(result.to_salesforce) <= writable
    if s["sf_record"] is None or s["cp_fields"] is None:
        assert not result.conflicts
    # apply the writes the way the engine does (a missing side is created)
    if result.to_salesforce or s["sf_record"] is not None:
        s["sf_record"] = sf_store(
            mapping, s["sf_record"] or {}, to_salesforce(mapping, result.to_salesforce)
        )
    if result.to_copernica or s["cp_fields"] is not None:
        s["cp_fields"] = cp_store(
            mapping, s["cp_fields"] or {}, to_copernica(mapping, result.to_copernica)
        )
    again = merge_scenario(s, agreed=result.agreed)
    assert again.nothing_to_do, again
    assert {name: again.agreed.get(name) for name in result.agreed} == result.agreed


@settings(max_examples=50, deadline=None)
@given(scenarios())
def test_merge_is_deterministic(s: dict[str, Any]) -> None:
    assert merge_scenario(s) == merge_scenario(s)


@settings(max_examples=80, deadline=None)
@given(scenarios())
def test_echo_of_the_agreed_state_is_nothing_to_do(s: dict[str, Any]) -> None:
    """When both sides hold what was last agreed, nothing happens whatever the options."""
    mapping: Mapping = s["mapping"]
    if s["sf_record"] is None:
        return
    current = from_salesforce(mapping, s["sf_record"])
    s["cp_fields"] = cp_store(mapping, {}, to_copernica(mapping, current))
    agreed = fingerprints(KEY, mapping, current)
    result = merge_scenario(s, agreed=agreed)
    assert result.nothing_to_do
    assert result.agreed == agreed
