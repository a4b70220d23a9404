"""The ``fields[]`` condition language of profile searches, as Copernica documents it.

``<field><op><value>`` with ops ``== != <> < > <= >= =~ !~``; pseudo-fields ``id``, ``code`` and
``modified``; unknown field names drop the condition instead of failing; conditions are ANDed.
Text comparisons are case-insensitive, as MySQL's default collation makes them on the real API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sandbox.copernica.state import Database, Field, Profile
from sandbox.copernica.values import NUMERIC_TYPES, php_float, php_int

OPERATORS = ("==", "!=", "<>", "<=", ">=", "=~", "!~", "<", ">")
_EXPRESSION = re.compile(r"^([^=!<>~]+?)(==|!=|<>|<=|>=|=~|!~|<|>)(.*)$", re.DOTALL)

Getter = Callable[[Profile], object]


@dataclass(frozen=True)
class Condition:
    """One parsed condition, bound to a field (or pseudo-field) of one database."""

    name: str
    operator: str
    value: str
    getter: Getter
    numeric: bool
    field_id: int | None = None  # None: a pseudo-field

    def matches(self, profile: Profile) -> bool:
        actual = self.getter(profile)
        if self.operator in ("=~", "!~"):
            found = _like(self.value).fullmatch(str(actual)) is not None
            return found if self.operator == "=~" else not found
        if self.numeric:
            left: object = php_float(actual)
            right: object = php_float(self.value)
        else:
            left, right = str(actual).casefold(), self.value.casefold()
        return _compare(left, self.operator, right)


def _compare(left: object, operator: str, right: object) -> bool:
    if operator == "==":
        return left == right
    if operator in ("!=", "<>"):
        return left != right
    if operator == "<":
        return left < right  # type: ignore[operator]
    if operator == ">":
        return left > right  # type: ignore[operator]
    if operator == "<=":
        return left <= right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def parse_condition(expression: str, database: Database, tz: ZoneInfo) -> Condition | None:
    """The condition, or None when Copernica would silently ignore it (unknown field, no op)."""
    match = _EXPRESSION.match(expression.strip())
    if match is None:
        return None
    name, operator, value = match.groups()
    field = database.field_by_name(name)
    if field is not None:
        return Condition(
            name, operator, value, _field_getter(field), field.type in NUMERIC_TYPES, field.id
        )
    lowered = name.lower()
    if lowered == "id":
        return Condition(name, operator, value, lambda p: p.id, True)
    if lowered == "code":
        return Condition(name, operator, value, lambda p: p.secret, False)
    if lowered == "modified":
        instant = _local_to_utc(value, tz)
        if instant is None:
            return Condition(name, operator, value, lambda p: p.modified_text(tz), False)
        return _ModifiedCondition(
            name, operator, value, lambda p: p.modified, False, instant=instant
        )
    return None


@dataclass(frozen=True)
class _ModifiedCondition(Condition):
    """``modified`` compared as instants (second resolution), so DST folds cannot misorder."""

    instant: datetime = datetime.min

    def matches(self, profile: Profile) -> bool:
        if self.operator in ("=~", "!~"):
            return super().matches(profile)
        own = profile.modified.replace(microsecond=0)
        return _compare(own, self.operator, self.instant)


def _local_to_utc(text: str, tz: ZoneInfo) -> datetime | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            local = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return local.replace(tzinfo=tz).astimezone(UTC)
    return None


def _field_getter(field: Field) -> Getter:
    return lambda profile: profile.values.get(field.id, "")


def parse_conditions(
    expressions: Iterable[str], database: Database, tz: ZoneInfo
) -> list[Condition]:
    conditions = (parse_condition(text, database, tz) for text in expressions)
    return [c for c in conditions if c is not None]


def matches_all(profile: Profile, conditions: Iterable[Condition]) -> bool:
    return all(condition.matches(profile) for condition in conditions)


def candidates(database: Database, conditions: Iterable[Condition]) -> list[Profile]:
    """The profiles that may match all ``conditions``, in id (= storage) order.

    When one condition is ``==`` on a text field or on ``id``, that is a look-up in the database's
    value index or profile dict; otherwise every profile. Callers still test each candidate
    against every condition: the index only narrows the scan, it cannot change the answer.
    Numeric fields compare as PHP floats (``1`` == ``1.0``), which no string key captures, so they
    are scanned.
    """
    for condition in conditions:
        if condition.operator != "==":
            continue
        if condition.field_id is not None and not condition.numeric:
            table = database.value_index.get(condition.field_id, {})
            return [database.profiles[i] for i in sorted(table.get(condition.value.casefold(), ()))]
        if condition.field_id is None and condition.name.lower() == "id":
            wanted = php_float(condition.value)
            found = database.profiles.get(int(wanted)) if wanted.is_integer() else None
            return [found] if found is not None else []
    return list(database.profiles.values())


def sort_key(orderby: str, database: Database) -> Callable[[Profile], object] | None:
    """Key for ``orderby``; None means random order. ``modified`` sorts by the change sequence."""
    lowered = orderby.strip().lower()
    if lowered in ("", "id"):
        return lambda p: p.id
    if lowered == "random":
        return None
    field = database.field_by_name(orderby) or database.field_by_id(orderby)
    if field is not None:
        if field.type in NUMERIC_TYPES:
            return lambda p: (php_float(p.values.get(field.id, "")), p.id)
        return lambda p: (p.values.get(field.id, "").casefold(), p.id)
    if lowered == "modified":
        return lambda p: p.seq
    if lowered == "code":
        return lambda p: p.secret
    return lambda p: p.id


def numeric_id(text: str) -> int | None:
    """A path id: positive integers only, anything else is 'no such entity'."""
    return php_int(text) if text.isdigit() and int(text) > 0 else None
