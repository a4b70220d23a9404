"""Field mapping between a Salesforce Contact and a Copernica profile, and value conversion.

Pure: no I/O. Both sides are converted to *canonical* values (strings keyed by Salesforce field
name) so that the merge can compare them; a canonical value survives SF → canonical → CP →
canonical unchanged (and the reverse) for every plausible pair of field types.

Some pairs cannot hold everything the other side can (the *lossy pairs*). For those the
*comparable* value — what fingerprints hash and what the merge compares — is reduced to the
precision the pair can hold, so a value never looks changed merely because one side stored it
with less detail:

- SF datetime ↔ CP ``date``/``empty_date``: only the date in the Copernica timezone survives.
- SF datetime ↔ CP ``datetime``/text: Copernica keeps wall-clock time in its timezone; in the
  autumn DST overlap two UTC instants share one wall-clock time, so both compare as the first.
- SF date ↔ CP ``datetime``: the time of day Copernica shows is ignored.
- numbers ↔ CP ``integer``: rounded half away from zero; SF ``int`` too. All numbers compare at
  the precision of a double (what Salesforce JSON and Copernica ``float`` fields hold).
- numbers ↔ CP ``integer``/``float``: Copernica cannot hold "empty" there (it shows ``0``), so
  empty and zero compare equal.
- text ↔ CP ``select``: a value that is not one of the field's choices is stored as "".
- text ↔ CP ``integer``/``float``/date types: compared as Copernica would store the text.
- e-mail compares case-insensitively.

Values longer than a Salesforce field's length are not truncated here: Salesforce rejects the
write and the engine reports it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from collections.abc import Mapping as ReadMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from bridge.copernica.models import Field
from bridge.vocabulary import COPERNICA_TIMEZONE as DEFAULT_TIMEZONE

NUMBER_TYPES = frozenset({"double", "int", "long", "currency", "percent"})
SKIPPED_SF_TYPES = frozenset({"address", "location", "base64"})
# Salesforce fields every sync reads whether or not they are mapped.
SYSTEM_SELECT = ("Id", "LastModifiedDate", "IsDeleted", "MasterRecordId")

CP_DATE_TYPES = frozenset({"date", "empty_date"})
CP_DATETIME_TYPES = frozenset({"datetime", "empty_datetime"})
CP_NUMERIC_TYPES = frozenset({"integer", "float", "foreign_key"})
CP_INTEGER_TYPES = frozenset({"integer", "foreign_key"})
_ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00"})

_TRUE = frozenset({"1", "true", "yes", "on", "ja", "y", "j"})
_FALSE = frozenset({"0", "false", "no", "off", "nee", "n", ""})

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INT_PREFIX = re.compile(r"^\s*([+-]?\d+)")
_FLOAT_PREFIX = re.compile(r"^\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)")
_SF_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOOSE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y",
)
_CANONICAL_DATETIME = "%Y-%m-%dT%H:%M:%SZ"
_CP_DATETIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class FieldMap:
    """One mapped field: a Salesforce Contact field and the Copernica field of the same name."""

    sf_name: str
    cp_name: str
    sf_type: str
    cp_type: str
    to_salesforce: bool
    # Choices of a Copernica ``select`` field (empty: unknown, values are not reduced to them).
    cp_choices: tuple[str, ...] = ()
    # Copernica's timezone; a Mapping sets it to its own so a lone FieldMap can fingerprint.
    timezone: str = DEFAULT_TIMEZONE

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Mapping:
    """Every mapped field of a tenant, the Copernica link field and Copernica's timezone."""

    fields: tuple[FieldMap, ...]
    link_field: str
    timezone: str = DEFAULT_TIMEZONE
    _by_name: dict[str, FieldMap] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # fail early on a misspelt zone
        fields = tuple(
            fm if fm.timezone == self.timezone else replace(fm, timezone=self.timezone)
            for fm in self.fields
        )
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "_by_name", {fm.sf_name: fm for fm in fields})

    def salesforce_select(self) -> list[str]:
        """Salesforce fields to SELECT: the system fields the engine needs plus every mapped one."""
        names = [*SYSTEM_SELECT, *(fm.sf_name for fm in self.fields)]
        return list(dict.fromkeys(names))

    def by_sf_name(self, name: str) -> FieldMap:
        return self._by_name[name]


def build_mapping(
    cp_fields: Iterable[Field],
    sf_fields: ReadMapping[str, dict[str, Any]],
    *,
    link_field: str,
    timezone: str,
) -> Mapping:
    """The default mapping: each Copernica field maps to the Salesforce field with the same name
    (case-insensitively), except the link field, ``Id`` and types that cannot be synced."""
    by_lower = {name.lower(): describe for name, describe in sf_fields.items()}
    chosen: dict[str, FieldMap] = {}
    exact: set[str] = set()
    for cp in cp_fields:
        lower = cp.name.lower()
        describe = by_lower.get(lower)
        if describe is None or lower == link_field.lower() or lower == "id":
            continue
        sf_type = str(describe.get("type", "string"))
        if sf_type in SKIPPED_SF_TYPES:
            continue
        sf_name = str(describe.get("name", cp.name))
        is_exact = cp.name == sf_name
        if sf_name in chosen and (sf_name in exact or not is_exact):
            continue  # two Copernica fields differing only in case: keep the exact spelling
        chosen[sf_name] = FieldMap(
            sf_name=sf_name,
            cp_name=cp.name,
            sf_type=sf_type,
            cp_type=cp.type,
            to_salesforce=bool(describe.get("updateable")) and bool(describe.get("createable")),
            cp_choices=tuple(_select_choices(cp.value)) if cp.type == "select" else (),
            timezone=timezone,
        )
        if is_exact:
            exact.add(sf_name)
    return Mapping(fields=tuple(chosen.values()), link_field=link_field, timezone=timezone)


def _select_choices(default: str) -> list[str]:
    """Copernica keeps a select field's choices one per line; ``*`` marks the default."""
    return [line.rstrip().removesuffix("*") for line in default.splitlines() if line.strip()]


# --- parsing helpers ----------------------------------------------------------------------


def parse_salesforce_datetime(text: str) -> datetime | None:
    """An aware UTC datetime from Salesforce's ISO 8601 forms (``.000+0000``, ``Z``, ``+hh:mm``)."""
    match = _SF_DATETIME.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = moment - offset if zone[0] == "+" else moment + offset
    return moment


def parse_copernica_datetime(text: str, timezone: str = DEFAULT_TIMEZONE) -> datetime | None:
    """An aware UTC datetime from a Copernica timestamp (``YYYY-MM-DD HH:MM:SS``, local time),
    e.g. a profile's ``modified`` for the ``newest`` conflict rule."""
    parsed = _parse_loose(text)
    if parsed is None:
        return None
    return _to_utc(parsed, ZoneInfo(timezone))


def _parse_loose(text: str) -> datetime | None:
    """A forgiving parse of what people and Copernica put in date fields; naive unless the text
    carried a zone."""
    text = text.strip()
    if not text or text in _ZERO_DATES:
        return None
    for fmt in _LOOSE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _to_utc(moment: datetime, tz: ZoneInfo) -> datetime:
    """Naive values are wall-clock time in ``tz`` (the first one when the clock went back)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz, fold=0)
    return moment.astimezone(UTC).replace(microsecond=0)


def _to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _parse_canonical_datetime(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, _CANONICAL_DATETIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def _parse_decimal(text: str) -> Decimal | None:
    text = text.strip()
    if not _NUMBER.match(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _number_text(number: Decimal) -> str:
    """Plain decimal text: no exponent, no trailing zeros, no ``-0``."""
    if number == 0:
        return "0"
    text = format(number.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _round(number: Decimal) -> Decimal:
    return number.quantize(Decimal(1), rounding=ROUND_HALF_UP)


def _double(number: Decimal) -> Decimal:
    """The number as a double holds it (Salesforce JSON numbers, Copernica ``float`` fields)."""
    as_float = float(number)
    if as_float in (float("inf"), float("-inf")):
        return number
    return Decimal(repr(as_float))


def _boolean(value: str) -> str | None:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    number = _parse_decimal(lowered)
    if number is not None:
        return "true" if number != 0 else "false"
    return None


# --- Salesforce → canonical -----------------------------------------------------------------


def from_salesforce(mapping: Mapping, record: ReadMapping[str, Any]) -> dict[str, str]:
    """Canonical values by sf_name from a Salesforce REST record (a field it lacks is "")."""
    lowered = {str(k).lower(): v for k, v in record.items()}
    canonical: dict[str, str] = {}
    for fm in mapping.fields:
        raw = record[fm.sf_name] if fm.sf_name in record else lowered.get(fm.sf_name.lower())
        canonical[fm.sf_name] = _from_salesforce_value(fm, raw)
    return canonical


def _from_salesforce_value(fm: FieldMap, raw: Any) -> str:
    kind = fm.sf_type
    if kind == "boolean":
        if isinstance(raw, str):
            return _boolean(raw) or "false"
        return "true" if raw else "false"
    if raw is None or raw == "":
        return ""
    if kind == "datetime":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            stamp = datetime.fromtimestamp(raw / 1000, UTC).replace(microsecond=0)
            return stamp.strftime(_CANONICAL_DATETIME)  # Pub/Sub CDC: epoch milliseconds
        moment = parse_salesforce_datetime(str(raw))
        return moment.strftime(_CANONICAL_DATETIME) if moment else str(raw)
    if kind == "date":
        text = str(raw)
        return text[:10] if _ISO_DATE.match(text[:10]) else text
    if kind in NUMBER_TYPES:
        if isinstance(raw, bool):
            return "1" if raw else "0"
        if isinstance(raw, int):
            return str(raw)
        if isinstance(raw, float):
            return _number_text(Decimal(repr(raw)))
        number = _parse_decimal(str(raw))
        return _number_text(number) if number is not None else str(raw)
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float):
        return _number_text(Decimal(repr(raw)))
    return str(raw)


# --- Copernica → canonical ------------------------------------------------------------------


def from_copernica(mapping: Mapping, fields: ReadMapping[str, str]) -> dict[str, str]:
    """Canonical values by sf_name from a Copernica profile's fields (names case-insensitive,
    a missing field is "")."""
    lowered: dict[str, str] = {}
    for name, value in fields.items():
        lowered[name.lower()] = value  # Copernica: with names differing in case the last wins
    return {
        fm.sf_name: _from_copernica_value(fm, lowered.get(fm.cp_name.lower(), ""))
        for fm in mapping.fields
    }


def _from_copernica_value(fm: FieldMap, raw: str | None) -> str:
    value = "" if raw is None else str(raw)
    kind = fm.sf_type
    dated = fm.cp_type in CP_DATE_TYPES or fm.cp_type in CP_DATETIME_TYPES
    if value in _ZERO_DATES and (dated or kind in ("date", "datetime")):
        return ""
    if kind == "boolean":
        return _boolean(value) or "false"
    if value == "":
        return ""
    if kind == "datetime":
        parsed = _parse_loose(value)
        return _to_utc(parsed, fm.tz).strftime(_CANONICAL_DATETIME) if parsed else value
    if kind == "date":
        parsed = _parse_loose(value)
        if parsed is None:
            return value
        if parsed.tzinfo is not None:
            parsed = _to_local(parsed, fm.tz)
        return parsed.date().isoformat()
    if kind in NUMBER_TYPES:
        number = _parse_decimal(value)
        return _number_text(number) if number is not None else value
    return value


# --- canonical → each side ------------------------------------------------------------------


def to_salesforce(mapping: Mapping, canonical: ReadMapping[str, str]) -> dict[str, Any]:
    """JSON values for a Salesforce write by sf_name, for the writable fields given; "" → null."""
    out: dict[str, Any] = {}
    for fm in mapping.fields:
        if fm.to_salesforce and fm.sf_name in canonical:
            out[fm.sf_name] = _to_salesforce_value(fm, canonical[fm.sf_name])
    return out


def _to_salesforce_value(fm: FieldMap, value: str) -> Any:
    kind = fm.sf_type
    if kind == "boolean":
        return _boolean(value) == "true"  # Salesforce has no null checkbox
    if value == "":
        return None
    if kind in NUMBER_TYPES:
        number = _parse_decimal(value)
        if number is None:
            return value  # Salesforce rejects it; the engine reports the error
        if kind in ("int", "long"):
            return int(_round(number))
        return int(number) if number == number.to_integral_value() else float(number)
    return value


def to_copernica(mapping: Mapping, canonical: ReadMapping[str, str]) -> dict[str, str]:
    """String values for a Copernica write by cp_name, for the fields given."""
    return {
        fm.cp_name: _to_copernica_value(fm, canonical[fm.sf_name])
        for fm in mapping.fields
        if fm.sf_name in canonical
    }


def _to_copernica_value(fm: FieldMap, value: str) -> str:
    kind, cp_type = fm.sf_type, fm.cp_type
    if kind == "boolean":
        true = _boolean(value) == "true"
        if cp_type in CP_NUMERIC_TYPES:
            return "1" if true else "0"
        return "true" if true else "false"
    if value == "":
        return ""
    if kind == "datetime":
        moment = _parse_canonical_datetime(value)
        if moment is None:
            return value
        local = _to_local(moment, fm.tz)
        if cp_type in CP_DATE_TYPES:
            return local.date().isoformat()
        return local.strftime(_CP_DATETIME)
    if kind == "date":
        if cp_type in CP_DATETIME_TYPES and _ISO_DATE.match(value):
            return f"{value} 00:00:00"
        return value
    if kind in NUMBER_TYPES and cp_type in CP_INTEGER_TYPES:
        number = _parse_decimal(value)
        return _number_text(_round(number)) if number is not None else value
    return value


# --- comparable values and fingerprints ------------------------------------------------------


def comparable(fm: FieldMap, canonical: str) -> str:
    """The canonical value reduced to what the pair of fields can hold (see the module doc);
    equal comparable values mean "in sync". Idempotent, and itself a canonical value."""
    kind, cp_type = fm.sf_type, fm.cp_type
    if kind == "boolean":
        return _boolean(canonical) or "false"
    if kind in NUMBER_TYPES:
        return _comparable_number(fm, canonical)
    if kind == "datetime":
        return _comparable_datetime(fm, canonical)
    if kind == "date":
        return canonical
    value = canonical
    if cp_type in CP_NUMERIC_TYPES:
        return _php_number(value, integer=cp_type in CP_INTEGER_TYPES)
    if cp_type in CP_DATE_TYPES or cp_type in CP_DATETIME_TYPES:
        parsed = _parse_loose(value)
        if parsed is None:
            return ""
        if parsed.tzinfo is not None:
            parsed = _to_local(parsed, fm.tz)
        return parsed.strftime("%Y-%m-%d" if cp_type in CP_DATE_TYPES else _CP_DATETIME)
    if cp_type == "select" and fm.cp_choices and value not in fm.cp_choices:
        return ""
    if kind == "email" or cp_type == "email":
        return value.lower()
    return value


def _comparable_number(fm: FieldMap, canonical: str) -> str:
    if canonical == "" and fm.cp_type in CP_NUMERIC_TYPES:
        return "0"  # Copernica shows an empty number field as 0
    number = _parse_decimal(canonical)
    if number is None:
        return canonical
    if fm.sf_type in ("int", "long") or fm.cp_type in CP_INTEGER_TYPES:
        number = _round(number)
    return _number_text(_double(number))


def _comparable_datetime(fm: FieldMap, canonical: str) -> str:
    moment = _parse_canonical_datetime(canonical)
    if moment is None:
        return canonical
    local = _to_local(moment, fm.tz)
    if fm.cp_type in CP_DATE_TYPES:
        local = local.replace(hour=0, minute=0, second=0)
    return _to_utc(local, fm.tz).strftime(_CANONICAL_DATETIME)


def _php_number(text: str, *, integer: bool) -> str:
    """What a Copernica number field makes of text: its numeric prefix, else 0."""
    match = (_INT_PREFIX if integer else _FLOAT_PREFIX).match(text)
    if not match:
        return "0"
    return _number_text(_double(Decimal(match.group(1))))


def fingerprint(key: bytes, fm: FieldMap, canonical: str) -> str:
    """A keyed hash of the comparable value, so stored agreement reveals no customer data."""
    message = f"{fm.sf_name}\x1f{comparable(fm, canonical)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


def fingerprints(key: bytes, mapping: Mapping, canonical: ReadMapping[str, str]) -> dict[str, str]:
    """Fingerprints by sf_name of the mapped fields present in ``canonical``."""
    return {
        fm.sf_name: fingerprint(key, fm, canonical[fm.sf_name])
        for fm in mapping.fields
        if fm.sf_name in canonical
    }
