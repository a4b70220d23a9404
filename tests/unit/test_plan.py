"""The planner's decision table: for every kind of change, linked or not, what each direction
writes, with apply-deletes on and off and under every conflict rule.

Each row names a situation and, by hand from the rules in bridge/sync/plan.py, merge.py and
design.md, what the plan is in each direction (both, sf_to_cp, cp_to_sf). A row runs under every
apply-deletes setting and conflict rule it lists (all of them unless it says otherwise): where a
row does not list one, that setting must not change the plan. An outcome reads
``sf:<action> cp:<action> link:<action>``, then the audits and conflict winners, then
``refused`` when the plan cannot be carried out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.sync.mapping import fingerprints
from bridge.sync.plan import (
    CopernicaSide,
    LinkState,
    Plan,
    SalesforceSide,
    Settings,
    Snapshot,
    plan,
)
from bridge.vocabulary import CONFLICT_RULES, DIRECTIONS, ConflictRule, Direction
from tests.unit.test_sync_mapping import KEY, field_map, mapping_of

MAPPING = mapping_of(
    field_map("string", "text", name="LastName"),
    field_map("string", "text", name="FirstName"),
    field_map("email", "email", name="Email"),
)
SF_ID, CP_ID, MASTER = "003000000000001AAA", "41", "003000000000002AAA"
BASE = {"LastName": "Smith", "FirstName": "Ann", "Email": "ann@example.org"}
AGREED = fingerprints(KEY, MAPPING, BASE)
EARLY = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)
LATE = EARLY + timedelta(minutes=5)


def contact(
    *, deleted: bool = False, master: str | None = None, modified: datetime = EARLY, **values: str
) -> SalesforceSide:
    return SalesforceSide({
        "Id": SF_ID, "IsDeleted": deleted, "MasterRecordId": master,
        "LastModifiedDate": modified.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), **BASE, **values,
    })


def profile(*, linked: bool = True, **values: str) -> CopernicaSide:
    fields = {name.lower(): value for name, value in {**BASE, **values}.items()}
    fields["SalesforceId"] = SF_ID if linked else ""
    # Copernica's modified is local time (Amsterdam, UTC+2 in May): five minutes after EARLY
    return CopernicaSide(fields, (LATE + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"))


def changes(**values: str) -> SalesforceSide:
    """Only the fields a CDC update carried."""
    return SalesforceSide({"Id": SF_ID, **values}, complete=False)


UNREAD = CopernicaSide(complete=False)  # not read: as agreed
LINK = LinkState(SF_ID, CP_ID, AGREED)
TOMBSTONE = LinkState(SF_ID, CP_ID, AGREED, sf_deleted=True)
NO_CONTACT: Any = None
NO_PROFILE: Any = None
ALL_RULES: tuple[ConflictRule, ...] = CONFLICT_RULES


@dataclass(frozen=True)
class Row:
    name: str
    link: LinkState | None
    sf: SalesforceSide | None
    cp: CopernicaSide | None
    both: str
    sf_to_cp: str
    cp_to_sf: str
    apply_deletes: tuple[bool, ...] = (True, False)
    rules: tuple[ConflictRule, ...] = ALL_RULES

    def expected(self, direction: Direction) -> str:
        return {"both": self.both, "sf_to_cp": self.sf_to_cp, "cp_to_sf": self.cp_to_sf}[direction]


NOTHING = "sf:- cp:- link:none"
AGREE = "sf:- cp:- link:save"  # nothing to write; the link (re)states the agreement
TO_CP = "sf:- cp:update link:save"
TO_SF = "sf:update cp:- link:save"

ROWS = [
    # --- updates of linked records ---------------------------------------------------------
    Row("salesforce update, linked", LINK, contact(FirstName="Bea"), profile(),
        both=TO_CP, sf_to_cp=TO_CP, cp_to_sf=AGREE),
    Row("copernica update, linked", LINK, contact(), profile(FirstName="Bea"),
        both=TO_SF, sf_to_cp=AGREE, cp_to_sf=TO_SF),
    Row("echo: both sides as agreed", LINK, contact(), profile(),
        both=AGREE, sf_to_cp=AGREE, cp_to_sf=AGREE),
    Row("both changed a field to the same value", LINK, contact(FirstName="Bea"),
        profile(FirstName="Bea"), both=AGREE, sf_to_cp=AGREE, cp_to_sf=AGREE),
    Row("profile lost the link field's contact id", LINK, contact(), profile(linked=False),
        both=TO_CP, sf_to_cp=TO_CP, cp_to_sf=TO_CP),
    # conflicts: Salesforce changed at EARLY (unless it says otherwise), Copernica at LATE
    Row("conflict, salesforce wins", LINK, contact(FirstName="Bea"), profile(FirstName="Cy"),
        both=f"{TO_CP} audit:conflict wins:salesforce",
        sf_to_cp=f"{TO_CP} audit:conflict wins:salesforce",
        cp_to_sf=f"{TO_SF} audit:conflict wins:copernica", rules=("salesforce_wins",)),
    Row("conflict, copernica wins", LINK, contact(FirstName="Bea"), profile(FirstName="Cy"),
        both=f"{TO_SF} audit:conflict wins:copernica",
        sf_to_cp=f"{TO_CP} audit:conflict wins:salesforce",
        cp_to_sf=f"{TO_SF} audit:conflict wins:copernica", rules=("copernica_wins",)),
    Row("conflict, newest (copernica's) wins", LINK, contact(FirstName="Bea"),
        profile(FirstName="Cy"),
        both=f"{TO_SF} audit:conflict wins:copernica",
        sf_to_cp=f"{TO_CP} audit:conflict wins:salesforce",
        cp_to_sf=f"{TO_SF} audit:conflict wins:copernica", rules=("newest",)),
    Row("conflict, newest (salesforce's) wins", LINK,
        contact(FirstName="Bea", modified=LATE + timedelta(minutes=1)), profile(FirstName="Cy"),
        both=f"{TO_CP} audit:conflict wins:salesforce",
        sf_to_cp=f"{TO_CP} audit:conflict wins:salesforce",
        cp_to_sf=f"{TO_SF} audit:conflict wins:copernica", rules=("newest",)),
    # --- what a change event carried, the other side not read ------------------------------
    Row("salesforce change event, profile not read", LINK, changes(FirstName="Bea"), UNREAD,
        both=TO_CP, sf_to_cp=TO_CP, cp_to_sf=AGREE),
    Row("salesforce change event echoing the agreement", LINK, changes(FirstName="Ann"), UNREAD,
        both=AGREE, sf_to_cp=AGREE, cp_to_sf=AGREE),
    Row("copernica webhook, contact not read", LINK, changes(), profile(FirstName="Bea"),
        both=TO_SF, sf_to_cp=AGREE, cp_to_sf=TO_SF),
    # --- creates ---------------------------------------------------------------------------
    Row("salesforce create, no profile", None, contact(), NO_PROFILE,
        both="sf:- cp:create link:save", sf_to_cp="sf:- cp:create link:save", cp_to_sf=NOTHING),
    Row("copernica create, no contact", None, NO_CONTACT, profile(linked=False),
        both="sf:create cp:update link:save", sf_to_cp=NOTHING,
        cp_to_sf="sf:create cp:update link:save"),
    Row("copernica create without a last name", None, NO_CONTACT,
        profile(linked=False, LastName=""),
        both="sf:create cp:update link:save refused", sf_to_cp=NOTHING,
        cp_to_sf="sf:create cp:update link:save refused"),
    Row("first merge: matched, values equal", None, contact(), profile(linked=False),
        both=TO_CP, sf_to_cp=TO_CP, cp_to_sf=TO_CP),
    Row("first merge: matched, values differ", None, contact(FirstName="Bea"),
        profile(linked=False, FirstName="Cy"),
        both=f"{TO_CP} audit:conflict wins:salesforce",
        sf_to_cp=f"{TO_CP} audit:conflict wins:salesforce",
        # the profile gets the link field whatever the direction
        cp_to_sf="sf:update cp:update link:save audit:conflict wins:copernica",
        rules=("salesforce_wins",)),
    Row("neither side has a record", None, NO_CONTACT, NO_PROFILE,
        both=NOTHING, sf_to_cp=NOTHING, cp_to_sf=NOTHING),
    # --- deletes ---------------------------------------------------------------------------
    Row("salesforce delete, linked, apply deletes on", LINK, contact(deleted=True), profile(),
        both="sf:- cp:delete link:drop", sf_to_cp="sf:- cp:delete link:drop",
        cp_to_sf="sf:- cp:- link:tombstone audit:delete", apply_deletes=(True,)),
    Row("salesforce delete, linked, apply deletes off", LINK, contact(deleted=True), profile(),
        both="sf:- cp:- link:tombstone audit:delete",
        sf_to_cp="sf:- cp:- link:tombstone audit:delete",
        cp_to_sf="sf:- cp:- link:tombstone audit:delete", apply_deletes=(False,)),
    Row("contact gone for good (not even in the recycle bin), apply deletes on", LINK,
        NO_CONTACT, profile(),
        both="sf:- cp:delete link:drop", sf_to_cp="sf:- cp:delete link:drop",
        cp_to_sf="sf:- cp:- link:tombstone audit:delete", apply_deletes=(True,)),
    Row("salesforce delete again, already a tombstone", TOMBSTONE, contact(deleted=True),
        profile(), both="sf:- cp:- link:tombstone", sf_to_cp="sf:- cp:- link:tombstone",
        cp_to_sf="sf:- cp:- link:tombstone", apply_deletes=(False,)),
    Row("salesforce delete, never linked", None, contact(deleted=True), NO_PROFILE,
        both=NOTHING, sf_to_cp=NOTHING, cp_to_sf=NOTHING),
    Row("copernica delete, linked", LINK, contact(), NO_PROFILE,
        both="sf:- cp:- link:drop audit:copernica_delete",
        sf_to_cp="sf:- cp:- link:drop audit:copernica_delete",
        cp_to_sf="sf:- cp:- link:drop audit:copernica_delete"),
    # --- undelete and merge ------------------------------------------------------------------
    Row("salesforce undelete of a tombstone, unchanged", TOMBSTONE, contact(), profile(),
        both=AGREE, sf_to_cp=AGREE, cp_to_sf=AGREE),
    Row("salesforce undelete of a tombstone, changed meanwhile", TOMBSTONE,
        contact(FirstName="Bea"), profile(), both=TO_CP, sf_to_cp=TO_CP, cp_to_sf=AGREE),
    Row("salesforce merge: the loser's profile follows the master", LINK,
        contact(deleted=True, master=MASTER), profile(),
        both="sf:- cp:- link:relink audit:merge", sf_to_cp="sf:- cp:- link:relink audit:merge",
        cp_to_sf="sf:- cp:- link:relink audit:merge"),
    Row("salesforce merge, the loser's profile already gone", LINK,
        contact(deleted=True, master=MASTER), NO_PROFILE,
        both="sf:- cp:- link:tombstone audit:delete",
        sf_to_cp="sf:- cp:- link:tombstone audit:delete",
        cp_to_sf="sf:- cp:- link:tombstone audit:delete"),
]

CASES = [
    pytest.param(row, direction, apply, rule,
                 id=f"{row.name} | {direction} | deletes {'on' if apply else 'off'} | {rule}")
    for row in ROWS
    for direction in DIRECTIONS
    for apply in row.apply_deletes
    for rule in row.rules
]


def snapshot(
    row: Row, direction: Direction = "both", apply_deletes: bool = False,
    rule: ConflictRule = "newest",
) -> Snapshot:
    cp_id = CP_ID if row.cp is not None or row.link is not None else None
    sf_id = SF_ID if row.sf is not None or row.link is not None else None
    return Snapshot(
        Settings(direction, apply_deletes, rule, KEY), sf_id, cp_id, row.link, row.sf, row.cp
    )


def outcome(result: Plan) -> str:
    words = [f"sf:{result.salesforce or '-'}", f"cp:{result.copernica or '-'}",
             f"link:{result.link}"]
    words += [f"audit:{audit.action}" for audit in result.audits]
    if result.merged is not None:
        words += [f"wins:{conflict.winner}" for conflict in result.merged.conflicts]
    if result.refused:
        words.append("refused")
    return " ".join(words)


@pytest.mark.parametrize(("row", "direction", "apply_deletes", "rule"), CASES)
def test_the_plan_of_each_row(
    row: Row, direction: Direction, apply_deletes: bool, rule: ConflictRule
) -> None:
    assert outcome(plan(MAPPING, snapshot(row, direction, apply_deletes, rule))) == row.expected(
        direction
    )


def by_name(name: str) -> Row:
    return next(row for row in ROWS if row.name == name)


def test_every_kind_of_change_is_in_the_table() -> None:
    names = " ".join(row.name for row in ROWS)
    for kind in ("create", "update", "delete", "undelete", "merge", "conflict"):
        assert kind in names
    assert {row.link is None for row in ROWS} == {True, False}
    for rule in CONFLICT_RULES:
        assert any(rule in row.rules and "conflict" in row.name for row in ROWS)


def test_a_salesforce_update_writes_only_what_changed_to_copernica() -> None:
    result = plan(MAPPING, snapshot(by_name("salesforce update, linked")))
    assert result.merged is not None
    assert result.merged.to_copernica == {"FirstName": "Bea"}
    assert result.merged.agreed == fingerprints(KEY, MAPPING, {**BASE, "FirstName": "Bea"})


def test_a_change_event_is_planned_as_a_read_record_would_be() -> None:
    """What a CDC update carries, with the profile as agreed, plans the same writes and the
    same agreement as reading both sides would."""
    carried = plan(MAPPING, snapshot(by_name("salesforce change event, profile not read")))
    read = plan(MAPPING, snapshot(by_name("salesforce update, linked")))
    assert carried.merged == read.merged
    assert (carried.salesforce, carried.copernica, carried.link) == (
        read.salesforce, read.copernica, read.link,
    )


def test_a_webhook_is_planned_as_a_read_record_would_be() -> None:
    carried = plan(MAPPING, snapshot(by_name("copernica webhook, contact not read")))
    read = plan(MAPPING, snapshot(by_name("copernica update, linked")))
    assert carried.merged == read.merged
    assert carried.salesforce == read.salesforce == "update"


def test_a_merge_names_the_surviving_contact() -> None:
    result = plan(MAPPING, snapshot(by_name("salesforce merge: the loser's profile follows the master")))
    assert result.relink_to == MASTER


def test_a_refused_create_says_which_field_salesforce_requires() -> None:
    result = plan(MAPPING, snapshot(by_name("copernica create without a last name")))
    assert result.refused is not None and "LastName" in result.refused


def test_a_conflict_is_audited_with_both_values_and_the_rule() -> None:
    result = plan(MAPPING, snapshot(by_name("conflict, copernica wins"), rule="copernica_wins"))
    (audit,) = result.audits
    assert audit.fields == ("FirstName",)
    assert audit.detail == {"salesforce": "Bea", "copernica": "Cy", "rule": "copernica_wins"}
    assert (audit.salesforce_id, audit.copernica_id) == (SF_ID, CP_ID)


def test_a_create_agrees_on_what_it_writes() -> None:
    result = plan(MAPPING, snapshot(by_name("salesforce create, no profile")))
    assert result.merged is not None
    assert result.merged.to_copernica == BASE
    assert result.merged.agreed == AGREED
