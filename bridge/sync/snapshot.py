"""What a ``sync`` job carries of each side while it waits: the payload keys, written here and
read back here, so the engine plans from them instead of reading the record again.

The job queue coalesces a waiting job with a newer one by ``payload = old || new`` (a top-level
jsonb merge, newer keys win). Every value therefore has a top-level key of its own, and every
"read anyway" is a key that no later payload removes. The keys:

- ``sf_id``, ``cp_id``: which record (always there, written by the caller).
- ``sf_at``, ``cp_at``: when the change was committed at its source (Unix seconds; the lag metric).
- ``sf.<Field>``: ``[value, known_at]``: a Salesforce field (API name, e.g. ``sf.FirstName``,
  ``sf.LastModifiedDate``) as the CDC event or a query gave it, and when it was known to hold
  that value (the event's commit time, the time of the query) in Unix seconds.
- ``sf_full``: the ``sf.*`` keys are a whole record as a query reads it (every field of
  ``Mapping.salesforce_select()``); without it they are only the fields a change event changed,
  and the other fields are as both sides last agreed.
- ``sf_read``: read the record from Salesforce anyway (a create, delete, undelete or gap event).
- ``cp.<field>``: ``[value, known_at]``: a field of the Copernica profile (its own spelling) as a
  webhook or a read gave it (webhooks carry the whole profile).
- ``cp_modified``: ``[modified, known_at]``: the profile's ``modified`` (account timezone).
- ``cp_read``: read the profile from Copernica anyway (a delete webhook).
- ``cp_absent``: a full sync's scan found no Copernica profile for this contact (none holds its
  id in the link field, none has its e-mail address): create one without searching.

The engine uses a side's values only when they were known after the link last recorded an
agreement: a value from before may predate the bridge's own write to that side.
Payloads hold customer values only while the job waits: completed jobs are deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.copernica.models import Profile
from bridge.salesforce.stream import ChangeEvent

SF_PREFIX = "sf."
CP_PREFIX = "cp."
SF_FULL = "sf_full"
SF_READ = "sf_read"
CP_MODIFIED = "cp_modified"
CP_READ = "cp_read"
CP_ABSENT = "cp_absent"


def salesforce_record_payload(
    record: Mapping[str, Any], known_at: float | None = None
) -> dict[str, Any]:
    """A whole Salesforce record as a query read it (``known_at``: when; default now)."""
    at = time.time() if known_at is None else known_at
    payload: dict[str, Any] = {
        SF_PREFIX + name: [value, at] for name, value in record.items() if name != "attributes"
    }
    payload[SF_FULL] = True
    return payload


def salesforce_change_payload(event: ChangeEvent) -> dict[str, Any]:
    """What a CDC event says of its record(s): the changed fields' values for an update,
    "read it" for anything else (a create, delete or undelete)."""
    if event.change_type != "UPDATE":
        return {SF_READ: True}
    at = event.commit_timestamp.timestamp()
    payload: dict[str, Any] = {}
    for name in event.changed_fields:
        if name not in event.values:
            return {SF_READ: True}  # a change it does not describe
        payload[SF_PREFIX + name] = [event.values[name], at]
    return payload


def salesforce_read_payload() -> dict[str, Any]:
    """The record must be read (a gap event: Salesforce could not describe the change)."""
    return {SF_READ: True}


def copernica_profile_payload(
    profile: Profile, known_at: float | None = None
) -> dict[str, Any]:
    """A whole Copernica profile as a read gave it (``known_at``: when; default now)."""
    return copernica_fields_payload(
        profile.fields, profile.modified, time.time() if known_at is None else known_at
    )


def copernica_fields_payload(
    fields: Mapping[str, str], modified: str, known_at: float
) -> dict[str, Any]:
    """A profile's fields and ``modified`` as a webhook carried them, known at ``known_at``."""
    payload: dict[str, Any] = {CP_PREFIX + name: [value, known_at] for name, value in fields.items()}
    payload[CP_MODIFIED] = [modified, known_at]
    return payload


def copernica_read_payload() -> dict[str, Any]:
    """The profile must be read (a delete: whether it is still there decides)."""
    return {CP_READ: True}


def copernica_absent_payload() -> dict[str, Any]:
    """A full sync's scan found no profile for this contact: create one, do not search."""
    return {CP_ABSENT: True}


@dataclass(frozen=True)
class Evidence:
    """What the payloads of one record's jobs say of both sides (``read_payloads``)."""

    sf_values: dict[str, Any] = field(default_factory=dict)  # raw, by Salesforce field name
    sf_full: bool = False
    sf_read: bool = False
    cp_fields: dict[str, str] = field(default_factory=dict)
    cp_modified: str = ""
    cp_read: bool = False
    cp_absent: bool = False
    sf_known_at: float | None = None  # the oldest of the sf.* values' times
    cp_known_at: float | None = None  # the oldest of the cp.* values' times

    @property
    def salesforce_news(self) -> bool:
        return bool(self.sf_values) or self.sf_read

    @property
    def copernica_news(self) -> bool:
        return bool(self.cp_fields) or self.cp_read


def read_payloads(payloads: Iterable[Mapping[str, Any]]) -> Evidence:
    """The evidence of several jobs of one record, the later payloads winning (as coalescing)."""
    merged: dict[str, Any] = {}
    for payload in payloads:
        merged.update(payload)
    sf_values: dict[str, Any] = {}
    cp_fields: dict[str, str] = {}
    sf_times: list[float] = []
    cp_times: list[float] = []
    cp_modified = ""
    for key, entry in merged.items():
        if key.startswith(SF_PREFIX) and _pair(entry):
            sf_values[key[len(SF_PREFIX):]] = entry[0]
            sf_times.append(float(entry[1]))
        elif key.startswith(CP_PREFIX) and _pair(entry):
            cp_fields[key[len(CP_PREFIX):]] = "" if entry[0] is None else str(entry[0])
            cp_times.append(float(entry[1]))
        elif key == CP_MODIFIED and _pair(entry):
            cp_modified = str(entry[0] or "")
            cp_times.append(float(entry[1]))
    return Evidence(
        sf_values=sf_values,
        sf_full=bool(merged.get(SF_FULL)) and bool(sf_values),
        sf_read=bool(merged.get(SF_READ)),
        cp_fields=cp_fields,
        cp_modified=cp_modified,
        cp_read=bool(merged.get(CP_READ)),
        cp_absent=bool(merged.get(CP_ABSENT)),
        sf_known_at=min(sf_times) if sf_times else None,
        cp_known_at=min(cp_times) if cp_times else None,
    )


def _pair(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int | float)
