"""The sandbox's sObjects: Contact (standard fields plus Level__c, Languages__c) and the bridge's
own objects from ``bridge.salesforce.objects``; record ids; value parsing and rendering.

Values are kept typed in memory (``datetime`` in UTC, ``date``, ``bool``, ``float``, ``str``)
and rendered per channel: REST uses ``2024-05-14T09:21:37.000+0000``, CDC over CometD uses
``2024-05-14T09:21:37.000Z``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bridge.salesforce.objects import BRIDGE_OBJECTS, FieldSpec, ObjectSpec, system_fields

_S = "string"


def _text(name: str, length: int, label: str = "", **kw: Any) -> FieldSpec:
    return FieldSpec(name, _S, label, length=length, **kw)


def _address(prefix: str) -> tuple[FieldSpec, ...]:
    compound = f"{prefix}Address"
    return (
        FieldSpec(f"{prefix}Street", "textarea", length=255, compound=compound),
        _text(f"{prefix}City", 40, compound=compound),
        _text(f"{prefix}State", 80, compound=compound),
        _text(f"{prefix}PostalCode", 20, compound=compound),
        _text(f"{prefix}Country", 80, compound=compound),
        FieldSpec(f"{prefix}Latitude", "double", precision=18, scale=15, compound=compound),
        FieldSpec(f"{prefix}Longitude", "double", precision=18, scale=15, compound=compound),
        FieldSpec(
            f"{prefix}GeocodeAccuracy",
            "picklist",
            length=40,
            compound=compound,
            picklist=("Address", "NearAddress", "Block", "Street", "ExtendedZip", "Zip", "City"),
        ),
        FieldSpec(compound, "address", createable=False, updateable=False),
    )


_RO = {"createable": False, "updateable": False}

CONTACT = ObjectSpec(
    name="Contact",
    label="Contact",
    label_plural="Contacts",
    key_prefix="003",
    fields=system_fields()
    + (
        FieldSpec(
            "MasterRecordId",
            "reference",
            "Master Record ID",
            length=18,
            reference_to=("Contact",),
            relationship_name="MasterRecord",
            **_RO,
        ),
        FieldSpec(
            "AccountId",
            "reference",
            "Account ID",
            length=18,
            reference_to=("Account",),
            relationship_name="Account",
        ),
        _text("LastName", 80, "Last Name", required=True, compound="Name"),
        _text("FirstName", 40, "First Name", compound="Name"),
        FieldSpec(
            "Salutation",
            "picklist",
            length=40,
            compound="Name",
            picklist=("Mr.", "Ms.", "Mrs.", "Dr.", "Prof."),
        ),
        _text("Name", 121, "Full Name", name_field=True, **_RO),
        *_address("Other"),
        *_address("Mailing"),
        FieldSpec("Phone", "phone", "Business Phone", length=40),
        FieldSpec("Fax", "phone", "Business Fax", length=40),
        FieldSpec("MobilePhone", "phone", "Mobile Phone", length=40),
        FieldSpec("HomePhone", "phone", "Home Phone", length=40),
        FieldSpec("OtherPhone", "phone", "Other Phone", length=40),
        FieldSpec("AssistantPhone", "phone", "Asst. Phone", length=40),
        FieldSpec(
            "ReportsToId",
            "reference",
            "Reports To ID",
            length=18,
            reference_to=("Contact",),
            relationship_name="ReportsTo",
        ),
        FieldSpec("Email", "email", "Email", length=80),
        _text("Title", 128),
        _text("Department", 80),
        _text("AssistantName", 40, "Assistant's Name"),
        FieldSpec(
            "LeadSource",
            "picklist",
            "Lead Source",
            length=255,
            picklist=("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
        ),
        FieldSpec("Birthdate", "date"),
        FieldSpec("Description", "textarea", "Contact Description", length=32000),
        FieldSpec("HasOptedOutOfEmail", "boolean", "Email Opt Out", default=False),
        FieldSpec("DoNotCall", "boolean", "Do Not Call", default=False),
        FieldSpec("LastActivityDate", "date", "Last Activity", **_RO),
        FieldSpec("LastCURequestDate", "datetime", "Last Stay-in-Touch Request Date", **_RO),
        FieldSpec("LastCUUpdateDate", "datetime", "Last Stay-in-Touch Save Date", **_RO),
        _text("EmailBouncedReason", 255, "Email Bounced Reason"),
        FieldSpec("EmailBouncedDate", "datetime", "Email Bounced Date"),
        FieldSpec("IsEmailBounced", "boolean", "Is Email Bounced", default=False, **_RO),
        FieldSpec(
            "Level__c",
            "picklist",
            "Level",
            length=255,
            picklist=("Primary", "Secondary", "Tertiary"),
        ),
        _text("Languages__c", 100, "Languages"),
    ),
)

# CDC renders compound fields nested, with component names of their own.
CDC_COMPONENTS: dict[str, str] = {
    "Street": "Street",
    "City": "City",
    "State": "State",
    "PostalCode": "PostalCode",
    "Country": "Country",
    "Latitude": "Latitude",
    "Longitude": "Longitude",
    "GeocodeAccuracy": "GeocodeAccuracy",
}


def objects(with_bridge_objects: bool) -> dict[str, ObjectSpec]:
    """The org's sObjects by API name; the bridge's own only when the package is 'installed'."""
    found = {CONTACT.name: CONTACT}
    if with_bridge_objects:
        found.update({spec.name: spec for spec in BRIDGE_OBJECTS})
    return found


# --- record ids -------------------------------------------------------------------------

_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def id18(id15: str) -> str:
    """The case-safe 18-character form: three checksum characters over the case of the 15."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if char.isupper():
                bits |= 1 << position
        suffix += _SUFFIX[bits]
    return id15 + suffix


def make_id(key_prefix: str, pod: str, number: int) -> str:
    """Id number ``number`` for an object: prefix (3) + pod (2) + base-62 counter (10) + check."""
    digits = ""
    for _ in range(10):
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return id18(key_prefix + pod + digits)


def normalise_id(value: str) -> str | None:
    """The 18-character id for a 15- or 18-character id, or None when it is malformed."""
    if not isinstance(value, str) or not _ID.match(value):
        return None
    if len(value) == 15:
        return id18(value)
    return value if id18(value[:15]) == value else None


def id_in_any_case(text: str) -> str | None:
    """The one 18-character id that ``text`` can be when letter case is ignored (its last three
    characters say which of the first fifteen are upper case, see ``id18``), or None."""
    suffix = text[15:].upper()
    if len(text) != 18 or any(c not in _SUFFIX for c in suffix):
        return None
    bits = [_SUFFIX.index(c) for c in suffix]
    head = (c.upper() if bits[i // 5] >> i % 5 & 1 else c for i, c in enumerate(text[:15].lower()))
    found = "".join(head) + suffix
    return found if normalise_id(found) == found else None


# --- values -----------------------------------------------------------------------------

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def email_ok(value: str) -> bool:
    return bool(_EMAIL.match(value))


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 as Salesforce accepts it (``Z``, ``+hh:mm``, ``+hhmm``, or no zone = UTC)."""
    match = _DATETIME.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        moment -= timedelta(minutes=offset)
    return moment


def parse_date(text: str) -> date | None:
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def rest_datetime(moment: datetime) -> str:
    """``2024-05-14T09:21:37.000+0000``: milliseconds, UTC, no colon in the offset."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def cdc_datetime(moment: datetime) -> str:
    """``2024-05-14T09:21:37.000Z`` as CDC payloads over CometD carry it."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def render(value: object, *, cdc: bool = False) -> object:
    """A typed value as JSON for REST (default) or for a CDC payload."""
    if isinstance(value, datetime):
        return cdc_datetime(value) if cdc else rest_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def full_name(record: dict[str, object]) -> str:
    """Contact ``Name``: first and last name (the salutation is not part of it)."""
    parts = [record.get("FirstName"), record.get("LastName")]
    return " ".join(str(part) for part in parts if part)
