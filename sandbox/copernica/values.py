"""How the Copernica sandbox coerces input values, PHP-style: every value is stored as a string.

Copernica's REST API (almost) never rejects a field value; it converts it according to the field
type. This module is that conversion, kept pure so it is easy to test.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

FIELD_TYPES = frozenset(
    {
        "integer",
        "float",
        "date",
        "empty_date",
        "datetime",
        "empty_datetime",
        "text",
        "email",
        "phone_fax",
        "phone_gsm",
        "select",
        "big",
        "foreign_key",
    }
)
UNIQUE_TYPES = frozenset({"email", "phone_fax", "phone_gsm"})
NUMERIC_TYPES = frozenset({"integer", "float", "foreign_key"})

_INT_PREFIX = re.compile(r"^\s*([+-]?\d+)")
_FLOAT_PREFIX = re.compile(r"^\s*([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?)")
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y",
)


def php_string(value: Any) -> str:
    """PHP's (string) cast for scalars; arrays and objects become ""."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    return ""


def format_float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def php_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e18 else 0
    match = _INT_PREFIX.match(php_string(value))
    return int(match.group(1)) if match else 0


def php_float(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    match = _FLOAT_PREFIX.match(php_string(value))
    try:
        return float(match.group(1)) if match else 0.0
    except (OverflowError, ValueError):
        return 0.0


def parse_loose_datetime(text: str, tz: ZoneInfo) -> datetime | None:
    """A forgiving date parser (Copernica uses PHP's strtotime); aware values move to ``tz``."""
    text = text.strip()
    if not text:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed


def select_choices(default: str) -> list[str]:
    """Choices of a select field: one per line of its ``value``; a trailing ``*`` marks the default."""
    return [line.rstrip().removesuffix("*") for line in default.splitlines() if line.strip()]


def select_default(default: str) -> str:
    for line in default.splitlines():
        if line.rstrip().endswith("*"):
            return line.rstrip().removesuffix("*")
    return ""


def coerce(field_type: str, value: Any, *, default: str, tz: ZoneInfo) -> str:
    """The stored string for ``value`` in a field of ``field_type`` (whose default is ``default``)."""
    if field_type == "integer" or field_type == "foreign_key":
        return str(php_int(value))
    if field_type == "float":
        return format_float(php_float(value))
    if field_type == "select":
        text = php_string(value)
        return text if text in select_choices(default) else ""
    if field_type in ("date", "empty_date", "datetime", "empty_datetime"):
        parsed = parse_loose_datetime(php_string(value), tz)
        with_time = field_type.endswith("datetime")
        if parsed is None:
            if field_type.startswith("empty_"):
                return ""
            return "0000-00-00 00:00:00" if with_time else "0000-00-00"
        return parsed.strftime("%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d")
    return php_string(value)


def initial_value(field_type: str, default: str, tz: ZoneInfo) -> str:
    """What a profile holds in a field nobody gave a value: the field's default, coerced."""
    if field_type == "select":
        return select_default(default)
    return coerce(field_type, default, default=default, tz=tz)
