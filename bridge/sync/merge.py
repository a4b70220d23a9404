"""The 3-way merge of one link: current Salesforce values, current Copernica values and the
fingerprints both sides last agreed on. Pure: it only decides what to write where.

A side *changed* a field when the fingerprint of its comparable value differs from the agreed
one. Echoes of the bridge's own writes therefore merge to nothing, and merging again after the
writes were applied gives nothing to do. Per field:

- equal on both sides (comparable values): nothing to write, agreed on that value;
- only one side changed: the other side gets its value (to Salesforce only for writable fields);
- both changed (or, without agreement, both non-empty and different): a conflict, won by the
  source side of a one-way direction, by Salesforce for read-only fields, else by ``rule``;
- a change the direction or a read-only field does not let through is ignored and the old
  agreement kept, so it is ignored again next time;
- a side without a record gets everything of the other side (a create), nothing conflicts.

A side named in ``changes_only`` was not read: its values are only the fields a change event
carried, and a field it lacks holds what both sides last agreed on (the planner asks for this
only when every mapped field has an agreement, and not for both sides at once).
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Mapping as ReadMapping
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.sync.mapping import FieldMap, Mapping, comparable, fingerprint
from bridge.vocabulary import ConflictRule, Direction
from bridge.vocabulary import Platform as Side


@dataclass(frozen=True)
class Conflict:
    """Both sides changed a field to different values; the audit log records it."""

    field: str
    salesforce: str
    copernica: str
    winner: Side


@dataclass(frozen=True)
class MergeResult:
    to_copernica: dict[str, str]
    to_salesforce: dict[str, str]
    agreed: dict[str, str]
    conflicts: tuple[Conflict, ...]

    @property
    def nothing_to_do(self) -> bool:
        """No write on either side and nothing for the audit log."""
        return not (self.to_copernica or self.to_salesforce or self.conflicts)


def merge(
    mapping: Mapping,
    key: bytes,
    agreed: ReadMapping[str, str],
    salesforce: ReadMapping[str, str] | None,
    copernica: ReadMapping[str, str] | None,
    *,
    direction: Direction = "both",
    rule: ConflictRule = "newest",
    salesforce_modified: datetime | None = None,
    copernica_modified: datetime | None = None,
    changes_only: Collection[Side] = (),
) -> MergeResult:
    """Decide, field by field, what to write to each side (see the module doc)."""
    if salesforce is None or copernica is None:
        return _create(mapping, key, salesforce, copernica, direction)
    newest = _newest(rule, salesforce_modified, copernica_modified)
    to_cp: dict[str, str] = {}
    to_sf: dict[str, str] = {}
    result_agreed: dict[str, str] = {}
    conflicts: list[Conflict] = []
    for fm in mapping.fields:
        name = fm.sf_name
        old = agreed.get(name)
        may_write_cp = direction != "cp_to_sf"
        may_write_sf = direction != "sf_to_cp" and fm.to_salesforce
        sf_unread = "salesforce" in changes_only and name not in salesforce
        cp_unread = "copernica" in changes_only and name not in copernica
        if sf_unread or cp_unread:
            # The unread side holds the agreed value: only the other side can have changed.
            value = copernica.get(name, "") if sf_unread else salesforce.get(name, "")
            if old is None or (sf_unread and cp_unread) or fingerprint(key, fm, value) == old:
                _keep(result_agreed, name, old)
            elif cp_unread and may_write_cp:
                to_cp[name] = value
                result_agreed[name] = fingerprint(key, fm, value)
            elif sf_unread and may_write_sf:
                to_sf[name] = value
                result_agreed[name] = fingerprint(key, fm, value)
            else:
                _keep(result_agreed, name, old)  # a change the direction or describe ignores
            continue
        sf_value, cp_value = salesforce.get(name, ""), copernica.get(name, "")
        if comparable(fm, sf_value) == comparable(fm, cp_value):
            result_agreed[name] = fingerprint(key, fm, sf_value)
            continue
        sf_changed, cp_changed = _changes(key, fm, old, sf_value, cp_value)
        if sf_changed and cp_changed:
            winner = _winner(fm, direction, newest)
            if (winner == "salesforce" and not may_write_cp) or (
                winner == "copernica" and not may_write_sf
            ):
                _keep(result_agreed, name, old)  # cp_to_sf and a read-only field: not synced
                continue
            conflicts.append(Conflict(name, sf_value, cp_value, winner))
            sf_changed = winner == "salesforce"
            cp_changed = not sf_changed
        if sf_changed and may_write_cp:
            to_cp[name] = sf_value
            result_agreed[name] = fingerprint(key, fm, sf_value)
        elif cp_changed and not sf_changed and may_write_sf:
            to_sf[name] = cp_value
            result_agreed[name] = fingerprint(key, fm, cp_value)
        else:
            _keep(result_agreed, name, old)  # a change the direction or describe ignores
    return MergeResult(to_cp, to_sf, result_agreed, tuple(conflicts))


def _changes(
    key: bytes, fm: FieldMap, old: str | None, sf_value: str, cp_value: str
) -> tuple[bool, bool]:
    """Which sides changed a field whose values differ. Without agreement (first merge) an
    empty side is filled from the other, and two values are a conflict. "Empty" is what the
    pair holds for "": Copernica shows an empty number as 0, an unset checkbox is false."""
    if old is None:
        empty = comparable(fm, "")
        if comparable(fm, sf_value) == empty:
            return False, True
        if comparable(fm, cp_value) == empty:
            return True, False
        return True, True
    sf_changed = fingerprint(key, fm, sf_value) != old
    cp_changed = fingerprint(key, fm, cp_value) != old
    if not (sf_changed or cp_changed):
        return True, True  # only a fingerprint collision gets here: treat it as a conflict
    return sf_changed, cp_changed


def _newest(rule: ConflictRule, sf_time: datetime | None, cp_time: datetime | None) -> Side:
    """The side a conflict goes to under ``rule``; ties and unknown times go to Salesforce."""
    if rule == "salesforce_wins":
        return "salesforce"
    if rule == "copernica_wins":
        return "copernica"
    if sf_time is None or cp_time is None:
        return "salesforce"
    return "copernica" if _aware(cp_time) > _aware(sf_time) else "salesforce"


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _winner(fm: FieldMap, direction: Direction, by_rule: Side) -> Side:
    if direction == "sf_to_cp":
        return "salesforce"
    if direction == "cp_to_sf":
        return "copernica"
    return by_rule if fm.to_salesforce else "salesforce"


def _keep(result: dict[str, str], name: str, old: str | None) -> None:
    if old is not None:
        result[name] = old


def _create(
    mapping: Mapping,
    key: bytes,
    salesforce: ReadMapping[str, str] | None,
    copernica: ReadMapping[str, str] | None,
    direction: Direction,
) -> MergeResult:
    """One side has no record yet: it gets everything of the other side the direction allows.
    Salesforce is not sent empty values, so its own defaults apply to them. An agreement from
    before is meaningless for a new record: only the fields written are agreed."""
    to_cp: dict[str, str] = {}
    to_sf: dict[str, str] = {}
    result_agreed: dict[str, str] = {}
    for fm in mapping.fields:
        name = fm.sf_name
        if copernica is None and salesforce is not None and direction != "cp_to_sf":
            to_cp[name] = salesforce.get(name, "")
            result_agreed[name] = fingerprint(key, fm, to_cp[name])
        elif (
            salesforce is None
            and copernica is not None
            and direction != "sf_to_cp"
            and fm.to_salesforce
        ):
            value = copernica.get(name, "")
            if value != "":
                to_sf[name] = value
            result_agreed[name] = fingerprint(key, fm, value)
    return MergeResult(to_cp, to_sf, result_agreed, ())
