"""Decide what to do with one record: a frozen ``Snapshot`` of what is known of both sides goes
in, a frozen ``Plan`` comes out. Pure: no I/O, no clock; the engine reads, executes and records.

The decision table (each row has a test in tests/unit/test_plan.py):

- Deleted in Salesforce (the record is deleted, or a link's contact is gone):
  - merged into another contact (``MasterRecordId``) while the profile lives: the link moves to
    the surviving contact (``relink``), which is then synced;
  - never linked and no profile: nothing;
  - apply deletes on, Salesforce → Copernica allowed, the profile lives: delete the profile and
    drop the link;
  - otherwise the profile is kept and the link becomes a tombstone (audited once).
- Linked, but the profile is gone (deleted in Copernica): only the link goes; Salesforce is
  never touched by a Copernica delete.
- Neither side has a record: nothing. Only the side a switched-off direction would write from
  has a record: nothing.
- Otherwise the 3-way merge (``bridge.sync.merge``) decides the fields; a side without a record
  is created (a contact only with its required fields); the profile is (re)written whenever it
  does not hold the contact's id in the link field; every conflict is audited.

A side may be known only in part (``complete=False``): a Salesforce side holding just the fields
a change event carried, a Copernica side not read at all; what it does not show is as both sides
last agreed (the engine builds such snapshots only for linked records with a full agreement).
"""

from __future__ import annotations

from collections.abc import Mapping as ReadMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bridge.salesforce.client import parse_datetime
from bridge.sync.mapping import Mapping, from_copernica, from_salesforce
from bridge.sync.merge import MergeResult, merge
from bridge.sync.objects import CONTACT, SyncedObject
from bridge.vocabulary import ConflictRule, Direction, Platform

SalesforceAction = Literal["create", "update"]
CopernicaAction = Literal["create", "update", "delete"]
LinkAction = Literal["save", "drop", "tombstone", "relink", "none"]


@dataclass(frozen=True)
class Settings:
    """The tenant's settings a plan depends on."""

    direction: Direction
    apply_deletes: bool
    conflict_rule: ConflictRule
    key: bytes  # of the fingerprints

    @property
    def sf_to_cp(self) -> bool:
        return self.direction != "cp_to_sf"

    @property
    def cp_to_sf(self) -> bool:
        return self.direction != "sf_to_cp"


@dataclass(frozen=True)
class LinkState:
    """The pair as the bridge last recorded it."""

    salesforce_id: str
    copernica_id: str
    agreed: ReadMapping[str, str]  # fingerprints by Salesforce field name
    sf_deleted: bool = False  # a tombstone: the contact was deleted, the profile kept
    agreed_at: float = 0.0  # when the agreement was recorded (Unix seconds)


@dataclass(frozen=True)
class SalesforceSide:
    """The Salesforce record (queryAll: a deleted one too), or only the fields a change event
    carried (``complete=False``; ``Id`` is always there)."""

    record: ReadMapping[str, Any]
    complete: bool = True

    @property
    def id(self) -> str:
        return str(self.record["Id"])

    @property
    def deleted(self) -> bool:
        return bool(self.record.get("IsDeleted"))

    @property
    def master(self) -> str | None:
        master = self.record.get("MasterRecordId")
        return str(master) if master else None


@dataclass(frozen=True)
class CopernicaSide:
    """The live profile's fields and ``modified``; ``complete=False``: not read, as agreed."""

    fields: ReadMapping[str, str] = field(default_factory=dict)
    modified: str = ""
    complete: bool = True


@dataclass(frozen=True)
class Snapshot:
    """Everything the plan of one record depends on."""

    settings: Settings
    sf_id: str | None
    cp_id: str | None
    link: LinkState | None = None
    sf: SalesforceSide | None = None  # None: no record in Salesforce
    cp: CopernicaSide | None = None  # None: no profile in the synced database


@dataclass(frozen=True)
class Audit:
    """One line of the audit log."""

    direction: Direction
    action: str
    fields: tuple[str, ...]
    outcome: str
    salesforce_id: str | None
    copernica_id: str | None
    detail: ReadMapping[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        return {
            "direction": self.direction, "salesforce_id": self.salesforce_id,
            "copernica_id": self.copernica_id, "action": self.action,
            "fields": list(self.fields), "outcome": self.outcome,
            "detail": dict(self.detail) if self.detail is not None else None,
        }


@dataclass(frozen=True)
class Plan:
    salesforce: SalesforceAction | None = None
    copernica: CopernicaAction | None = None
    link: LinkAction = "none"
    merged: MergeResult | None = None
    audits: tuple[Audit, ...] = ()
    relink_to: str | None = None  # the surviving contact of a merge
    refused: str | None = None  # why the plan cannot be carried out (a create lacking a field)

    @property
    def writes(self) -> bool:
        return self.salesforce is not None or self.copernica is not None


NOTHING = Plan()


def plan(mapping: Mapping, snapshot: Snapshot, synced: SyncedObject = CONTACT) -> Plan:
    """What to write where and what becomes of the link (see the module doc)."""
    settings, link, sf, cp = snapshot.settings, snapshot.link, snapshot.sf, snapshot.cp
    if (sf is not None and sf.deleted) or (link is not None and sf is None):
        return _salesforce_deleted(snapshot)
    if link is not None and cp is None:
        return Plan(link="drop", audits=(_audit(snapshot, "cp_to_sf", "copernica_delete", (), "link dropped"),))
    if sf is None and cp is None:
        return NOTHING
    if (sf is None and not settings.cp_to_sf) or (cp is None and not settings.sf_to_cp):
        return NOTHING  # a record of the side that is switched off
    unread: list[Platform] = []
    sf_values = cp_values = None
    if sf is not None:
        sf_values = from_salesforce(mapping, sf.record)
        if not sf.complete:
            sf_values = {name: v for name, v in sf_values.items() if name in sf.record}
            unread.append("salesforce")
    if cp is not None:
        cp_values = from_copernica(mapping, cp.fields) if cp.complete else {}
        if not cp.complete:
            unread.append("copernica")
    result = merge(
        mapping, settings.key, dict(link.agreed) if link is not None else {}, sf_values, cp_values,
        direction=settings.direction, rule=settings.conflict_rule,
        salesforce_modified=_salesforce_modified(sf),
        copernica_modified=_copernica_modified(cp, mapping.timezone),
        changes_only=unread,
    )
    sf_action: SalesforceAction | None = None
    if result.to_salesforce or (sf is None and settings.cp_to_sf):
        sf_action = "update" if sf is not None else "create"
    # The profile keeps the Salesforce Id (for a contact created now: once it has one); one not
    # read holds it, as it did when the link was recorded.
    link_value = _field(cp.fields, mapping.link_field) if cp is not None and cp.complete else None
    needs_link_field = sf_action == "create" or (
        sf is not None and link_value is not None and link_value != sf.id
    )
    cp_action: CopernicaAction | None = None
    if result.to_copernica or cp is None or needs_link_field:
        cp_action = "update" if cp is not None else "create"
    audits = tuple(
        _audit(
            snapshot, "both", "conflict", (conflict.field,), f"{conflict.winner} wins",
            detail={"salesforce": conflict.salesforce, "copernica": conflict.copernica,
                    "rule": settings.conflict_rule},
        )
        for conflict in result.conflicts
    )
    refused = None
    if sf_action == "create":
        missing = [name for name in synced.required if not result.to_salesforce.get(name)]
        if missing:
            refused = (f"this Copernica profile has no {missing[0]}, which Salesforce requires "
                       f"for a {synced.sobject.lower()}")
    return Plan(sf_action, cp_action, "save", result, audits, refused=refused)


def _salesforce_deleted(snapshot: Snapshot) -> Plan:
    settings, link, sf, cp = snapshot.settings, snapshot.link, snapshot.sf, snapshot.cp
    master = sf.master if sf is not None else None
    if master and cp is not None:
        # A merge: the profile follows the surviving contact instead of becoming an orphan.
        return Plan(
            link="relink", relink_to=master,
            audits=(_audit(snapshot, "sf_to_cp", "merge", (), f"relinked to {master}"),),
        )
    if link is None and cp is None:
        return NOTHING
    if settings.apply_deletes and settings.sf_to_cp and cp is not None:
        return Plan(copernica="delete", link="drop")
    if link is None:
        return NOTHING
    audits = () if link.sf_deleted else (
        _audit(snapshot, "sf_to_cp", "delete", (), "profile kept (apply deletes off)"),
    )
    return Plan(link="tombstone", audits=audits)


def _salesforce_modified(sf: SalesforceSide | None) -> datetime | None:
    text = sf.record.get("LastModifiedDate") if sf is not None else None
    return parse_datetime(str(text)) if text else None


def _copernica_modified(cp: CopernicaSide | None, timezone: str) -> datetime | None:
    if cp is None or not cp.modified or cp.modified.startswith("0000"):
        return None
    local = datetime.strptime(cp.modified, "%Y-%m-%d %H:%M:%S")
    return local.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _field(fields: ReadMapping[str, str], name: str) -> str:
    """A Copernica field's value by a name of any case ("" when the profile has none)."""
    lowered = name.lower()
    return next((v for k, v in fields.items() if k.lower() == lowered), "")


def _audit(
    snapshot: Snapshot, direction: Direction, action: str, fields: tuple[str, ...], outcome: str,
    detail: ReadMapping[str, Any] | None = None,
) -> Audit:
    return Audit(direction, action, fields, outcome, snapshot.sf_id, snapshot.cp_id, detail)
