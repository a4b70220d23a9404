"""The planner's decision table: for every kind of change, linked or not, what each direction
writes, with apply-deletes on and off and under every conflict rule.

Each row names a situation and, by hand from the rules in bridge/sync/plan.py, merge.py and
design.md, what the plan is in each direction (both, sf_to_cp, cp_to_sf). A row runs under every
apply-deletes setting and conflict rule it lists (all of them unless it says otherwise): where a
row does not list one, that setting must not change the plan. An outcome reads
``sf:<action> cp:<action> link:<action>``, then the audits and conflict winners, then
``refused`` when the plan cannot be carried out.

A second table says, for what the jobs carried (change events, webhooks, scans), which sides
the engine still reads and what stands for a side it does not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.copernica.models import Profile
from bridge.salesforce.stream import ChangeEvent
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
from bridge.sync.snapshot import (
    FRESHNESS,
    Known,
    copernica_absent_payload,
    copernica_profile_payload,
    copernica_read_payload,
    copernica_webhook_payload,
    read_payloads,
    salesforce_change_payload,
    salesforce_record_payload,
    what_is_known,
    without_values,
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


# --- what the jobs' payloads make known (bridge.sync.snapshot) -------------------------------

AGREED_AT = 1_700_000_000.0
FRESH = AGREED_AT + FRESHNESS + 5  # known well after the agreement was recorded
STALE = AGREED_AT - 1  # known before it: may predate the bridge's own write
SETTLED = LinkState(SF_ID, CP_ID, AGREED, agreed_at=AGREED_AT)
SETTLED_TOMBSTONE = LinkState(SF_ID, CP_ID, AGREED, sf_deleted=True, agreed_at=AGREED_AT)
PARTLY_AGREED = LinkState(
    SF_ID, CP_ID, {k: v for k, v in AGREED.items() if k != "Email"}, agreed_at=AGREED_AT
)


def cdc(change_type: str = "UPDATE", at: float = FRESH, **values: Any) -> dict[str, Any]:
    event = ChangeEvent(
        channel="/data/ContactChangeEvent", entity="Contact", change_type=change_type,
        record_ids=[SF_ID], changed_fields=[*values, "LastModifiedDate"],
        values={**values, "LastModifiedDate": "2024-05-14T09:00:00.000Z"},
        change_origin="", commit_timestamp=datetime.fromtimestamp(at, UTC), commit_user="",
        transaction_key="", sequence_number=1, replay_id=1,
    )
    return salesforce_change_payload(event)


def hook(at: float = FRESH, linked: bool = True, drop: str = "", **values: str) -> dict[str, Any]:
    fields = dict(profile(linked=linked, **values).fields)
    fields.pop(drop, None)
    return copernica_webhook_payload(fields, "2024-05-14 11:00:00", at)


def scanned_contact(at: float = FRESH, **values: str) -> dict[str, Any]:
    return salesforce_record_payload(contact(**values).record, at)


def scanned_profile(at: float = FRESH, **values: str) -> dict[str, Any]:
    side = profile(**values)
    return copernica_profile_payload(Profile(int(CP_ID), dict(side.fields), modified=side.modified), at)


@dataclass(frozen=True)
class Carried:
    name: str
    link: LinkState | None
    payloads: tuple[dict[str, Any], ...]  # in the order the jobs were queued
    reads: str  # "none", "sf", "cp" or "both"
    known: str = ""  # what stands for an unread side: "sf:changes", "cp:agreed", ...


def carried_outcome(known: Known) -> str:
    reads = {(False, False): "none", (True, False): "sf", (False, True): "cp", (True, True): "both"}
    words = [reads[(known.read_sf, known.read_cp)]]
    if not known.read_sf and known.sf is not None:
        words.append("sf:record" if known.sf.complete else "sf:changes")
    if not known.read_cp:
        if known.cp is None:
            words.append("cp:none")
        else:
            words.append("cp:profile" if known.cp.complete else "cp:agreed")
    if not known.search_cp:
        words.append("no search")
    return " ".join(words)


CARRIED = [
    # linked, news of one side
    Carried("a fresh change event", SETTLED, (cdc(FirstName="Bea"),), "none sf:changes cp:agreed"),
    Carried("a stale change event", SETTLED, (cdc(at=STALE, FirstName="Bea"),), "both"),
    Carried("a stale change event echoing the agreement", SETTLED,
            (cdc(at=STALE, FirstName="Ann"),), "none sf:changes cp:agreed"),
    Carried("a change event of an unmapped field only", SETTLED, (cdc(Phone="123"),),
            "none sf:changes cp:agreed"),
    Carried("a create, delete or undelete event", SETTLED, (cdc("DELETE"),), "both"),
    Carried("a fresh webhook", SETTLED, (hook(FirstName="Bea"),), "none sf:changes cp:profile"),
    Carried("a stale webhook", SETTLED, (hook(at=STALE, FirstName="Bea"),), "both"),
    Carried("a stale webhook echoing the agreement", SETTLED, (hook(at=STALE),),
            "none sf:changes cp:profile"),
    Carried("a webhook without a mapped field", SETTLED, (hook(drop="email"),), "both"),
    Carried("a webhook without the link field", SETTLED, (hook(drop="SalesforceId"),), "both"),
    Carried("a delete webhook", SETTLED, (hook(), copernica_read_payload()), "both"),
    Carried("two webhooks in order", SETTLED,
            (hook(FirstName="Bea"), hook(at=FRESH + 2, FirstName="Cy")), "none sf:changes cp:profile"),
    Carried("two webhooks delivered out of order", SETTLED,
            (hook(at=FRESH + 2, FirstName="Cy"), hook(FirstName="Bea")), "both"),
    # linked, news of both sides
    Carried("change event and webhook, both changed", SETTLED,
            (cdc(FirstName="Bea"), hook(LastName="Jones")), "both"),
    Carried("change event and an echoing webhook", SETTLED, (cdc(FirstName="Bea"), hook()),
            "none sf:changes cp:profile"),
    Carried("a scan's contact, the profile has no news", SETTLED, (scanned_contact(FirstName="Bea"),),
            "cp sf:record"),
    Carried("a scan's profile, the contact has no news", SETTLED, (scanned_profile(FirstName="Bea"),),
            "sf cp:profile"),
    Carried("a scan's contact and profile, both changed", SETTLED,
            (scanned_contact(FirstName="Bea"), scanned_profile(LastName="Jones")),
            "none sf:record cp:profile"),
    Carried("no payload at all (a reconcile's or a relink's job)", SETTLED, (), "both"),
    # linked, but the agreement cannot stand for a side
    Carried("a tombstone", SETTLED_TOMBSTONE, (cdc(FirstName="Bea"),), "both"),
    Carried("a field without agreement", PARTLY_AGREED, (cdc(FirstName="Bea"),), "both"),
    # unlinked
    Carried("unlinked: a scan's contact, no profile found", None,
            (scanned_contact(), copernica_absent_payload()), "none sf:record cp:none no search"),
    Carried("unlinked: a contact unchanged since the scan began, no profile found", None,
            (scanned_contact(), copernica_absent_payload(indexed_from=EARLY.timestamp() + 60)),
            "none sf:record cp:none no search"),
    # a contact changed since may be the bridge's own for a profile the scan missed: searched
    Carried("unlinked: a contact changed since the scan began, no profile found", None,
            (scanned_contact(), copernica_absent_payload(indexed_from=EARLY.timestamp())),
            "cp sf:record"),
    Carried("unlinked: a create event", None, (cdc("CREATE"),), "both"),
    Carried("unlinked: a webhook of a new profile", None, (hook(linked=False),), "sf cp:profile"),
]


@pytest.mark.parametrize("row", CARRIED, ids=[row.name for row in CARRIED])
def test_what_the_payloads_make_known(row: Carried) -> None:
    evidence = read_payloads(row.payloads)
    cp_id = CP_ID if row.link is not None or any("cp" in p for p in row.payloads) else None
    known = what_is_known(evidence, MAPPING, KEY, row.link, sf_id=SF_ID, cp_id=cp_id)
    assert carried_outcome(known) == " ".join(filter(None, (row.reads, row.known)))


def test_a_change_event_coalesced_after_another_keeps_both_fields() -> None:
    coalesced = {**cdc(FirstName="Bea"), **cdc(at=FRESH + 1, LastName="Jones")}
    assert read_payloads([coalesced]).sf_values == {
        "FirstName": "Bea", "LastName": "Jones", "LastModifiedDate": "2024-05-14T09:00:00.000Z",
    }


def test_a_change_event_outranks_the_record_a_scan_read() -> None:
    evidence = read_payloads([cdc(FirstName="Bea"), scanned_contact(at=FRESH + 10)])
    assert evidence.sf_full and evidence.sf_values["FirstName"] == "Bea"
    assert evidence.sf_values["LastName"] == "Smith"


def test_a_read_after_every_webhook_stands_for_the_profile() -> None:
    evidence = read_payloads([
        hook(at=FRESH + 2, FirstName="Cy"), hook(FirstName="Bea"), scanned_profile(at=FRESH + 3, FirstName="Di"),
    ])
    assert not evidence.cp_read and evidence.cp_fields is not None
    assert evidence.cp_fields["firstname"] == "Di"


def test_a_planned_change_event_writes_only_the_carried_field() -> None:
    known = what_is_known(read_payloads([cdc(FirstName="Bea")]), MAPPING, KEY, SETTLED,
                          sf_id=SF_ID, cp_id=CP_ID)
    result = plan(MAPPING, Snapshot(Settings("both", False, "newest", KEY), SF_ID, CP_ID,
                                    SETTLED, known.sf, known.cp))
    assert (result.salesforce, result.copernica) == (None, "update")
    assert result.merged is not None and result.merged.to_copernica == {"FirstName": "Bea"}


def test_a_payload_without_values_holds_none_and_asks_for_reads() -> None:
    payload = {"sf_id": SF_ID, "cp_id": CP_ID, "sf_at": FRESH, **cdc(FirstName="Bea"),
               **hook(FirstName="Bea"), **scanned_contact(), **scanned_profile()}
    stripped = without_values(payload)
    assert stripped == {"sf_id": SF_ID, "cp_id": CP_ID, "sf_at": FRESH, "sf_read": True,
                        "cp_read": True}
    known = what_is_known(read_payloads([stripped]), MAPPING, KEY, SETTLED, sf_id=SF_ID, cp_id=CP_ID)
    assert (known.read_sf, known.read_cp) == (True, True)
