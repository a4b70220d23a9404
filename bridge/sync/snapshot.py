"""What a ``sync`` job carries of each side while it waits: the payload keys, written here and
read back here, so the engine plans from them instead of reading the record again.

The job queue coalesces a waiting job with a newer one by ``payload = old || new`` (a top-level
jsonb merge, newer keys win): a change event's fields each have a top-level key of their own,
whole records replace whole records, and every "read anyway" is a key no later payload removes.
The keys:

- ``sf_id``, ``cp_id``: which record (always there, written by the caller).
- ``sf_at``, ``cp_at``: when the change was committed at its source (Unix seconds; the lag metric).
- ``sf.<Field>``: ``[value, at]``: a field a CDC update changed (API name, e.g. ``sf.FirstName``,
  ``sf.LastModifiedDate``) and the event's commit time (Unix seconds). Events come in commit
  order, so the last one wins; the fields no event carried are as both sides last agreed.
- ``sf_record``: ``{"record": {...}, "at": t}``: a whole Salesforce record as a query read it
  (every field of ``Mapping.salesforce_select()``) and when the query started. A change event's
  field wins over it (it is as new, or a newer event is on its way).
- ``sf_read``: read the record from Salesforce anyway (a create, delete, undelete or gap event).
- ``cp``: ``{"fields": {...}, "modified": "...", "at": t, "hook": token}``: the whole profile as
  the last delivered webhook carried it, with the change's time (Unix seconds).
- ``cp_hook.<token>``: ``t``: the time of every webhook delivered: a webhook delivered late
  (older than another one) must not stand for the profile.
- ``cp_record``: ``{"fields": {...}, "modified": "...", "at": t}``: the whole profile as a read
  gave it, and when. The newer of it and ``cp`` stands for the profile.
- ``cp_read``: read the profile from Copernica anyway (a delete webhook).
- ``cp_absent``: a full sync's scan found no Copernica profile for this contact (none holds its
  id in the link field, none has its e-mail address): create one without searching. ``true``, or
  when the scan's pass over Copernica began: then only for a contact last changed before that.

The engine uses a side's values only when they were known after the link last recorded an
agreement: a value from before may predate the bridge's own write to that side.
Payloads hold customer values only while the job waits: completed jobs are deleted.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Iterable
from collections.abc import Mapping as ReadMapping
from dataclasses import dataclass, field
from typing import Any

from bridge.copernica.models import Profile
from bridge.salesforce.client import parse_datetime
from bridge.salesforce.stream import ChangeEvent
from bridge.sync.mapping import Mapping, fingerprint, from_copernica, from_salesforce
from bridge.sync.plan import CopernicaSide, LinkState, SalesforceSide

SF_FIELD = "sf."
SF_RECORD = "sf_record"
SF_READ = "sf_read"
CP_HOOK = "cp"
CP_HOOK_AT = "cp_hook."
CP_RECORD = "cp_record"
CP_READ = "cp_read"
CP_ABSENT = "cp_absent"


def salesforce_record_payload(
    record: ReadMapping[str, Any], known_at: float | None = None
) -> dict[str, Any]:
    """A whole Salesforce record as a query read it (``known_at``: when it started; default now)."""
    at = time.time() if known_at is None else known_at
    whole = {name: value for name, value in record.items() if name != "attributes"}
    return {SF_RECORD: {"record": whole, "at": at}}


def salesforce_change_payload(
    event: ChangeEvent, relevant: Collection[str] | None = None
) -> dict[str, Any]:
    """What a CDC event says of its record(s): for an update the values of the changed fields
    (only those in ``relevant`` when given: other fields are not synced), for anything else
    (a create, delete or undelete) "read it"."""
    if event.change_type != "UPDATE":
        return {SF_READ: True}
    at = event.commit_timestamp.timestamp()
    payload: dict[str, Any] = {}
    for name in event.changed_fields:
        if relevant is not None and name not in relevant:
            continue
        if name not in event.values:
            return {SF_READ: True}  # a change it does not describe
        payload[SF_FIELD + name] = [event.values[name], at]
    return payload


def salesforce_read_payload() -> dict[str, Any]:
    """The record must be read (a gap event: Salesforce could not describe the change)."""
    return {SF_READ: True}


def copernica_profile_payload(
    profile: Profile, known_at: float | None = None
) -> dict[str, Any]:
    """A whole Copernica profile as a read gave it (``known_at``: when; default now)."""
    at = time.time() if known_at is None else known_at
    return {CP_RECORD: {"fields": dict(profile.fields), "modified": profile.modified, "at": at}}


def copernica_webhook_payload(
    fields: ReadMapping[str, str], modified: str, changed_at: float
) -> dict[str, Any]:
    """A profile as a create or update webhook carried it; ``changed_at``: the change's time."""
    token = secrets.token_hex(6)
    return {
        CP_HOOK: {"fields": dict(fields), "modified": modified, "at": changed_at, "hook": token},
        CP_HOOK_AT + token: changed_at,
    }


def copernica_read_payload() -> dict[str, Any]:
    """The profile must be read (a delete: whether it is still there decides)."""
    return {CP_READ: True}


def copernica_absent_payload(indexed_from: float | None = None) -> dict[str, Any]:
    """A full sync's scan found no profile for this contact: create one, do not search.
    ``indexed_from``: when the scan's pass over Copernica began (Unix seconds); a contact
    changed since is searched for after all (see ``_settled_before_scan``)."""
    return {CP_ABSENT: True if indexed_from is None else indexed_from}


def without_values(payload: ReadMapping[str, Any]) -> dict[str, Any]:
    """The payload with no customer value left (for a job that stops waiting, e.g. held): what
    it carried of the sides becomes "read them"."""
    kept = {
        key: value for key, value in payload.items()
        if not key.startswith((SF_FIELD, CP_HOOK_AT))
        and key not in (SF_RECORD, CP_HOOK, CP_RECORD)
    }
    if len(kept) < len(payload):
        kept |= {SF_READ: True, CP_READ: True}
    return kept


@dataclass(frozen=True)
class Evidence:
    """What the payloads of one record's jobs say of both sides (``read_payloads``)."""

    sf_values: dict[str, Any] = field(default_factory=dict)  # raw, by Salesforce field name
    sf_full: bool = False  # sf_values are a whole record
    sf_read: bool = False
    sf_known_at: float | None = None  # the oldest time of the values used
    cp_fields: dict[str, str] | None = None  # None: no profile carried (or none to trust)
    cp_modified: str = ""
    cp_known_at: float | None = None
    cp_read: bool = False  # a delete, or webhooks delivered out of order
    cp_absent: bool = False
    cp_absent_since: float | None = None  # when the scan that found no profile began to look
    cp_scanned: bool = False  # cp_fields are a read's (a scan's), not a webhook's

    @property
    def salesforce_news(self) -> bool:
        return bool(self.sf_values) or self.sf_read

    @property
    def copernica_news(self) -> bool:
        return self.cp_fields is not None or self.cp_read


def read_payloads(payloads: Iterable[ReadMapping[str, Any]]) -> Evidence:
    """The evidence of several jobs of one record (in the order they were queued: as
    coalescing would have merged them)."""
    merged: dict[str, Any] = {}
    for payload in payloads:
        merged.update(payload)
    sf_values: dict[str, Any] = {}
    sf_times: list[float] = []
    scanned = merged.get(SF_RECORD)
    if isinstance(scanned, dict) and isinstance(scanned.get("record"), dict):
        sf_values.update(scanned["record"])
        sf_times.append(float(scanned["at"]))
    for key, entry in merged.items():
        if key.startswith(SF_FIELD) and _pair(entry):
            sf_values[key[len(SF_FIELD):]] = entry[0]
            sf_times.append(float(entry[1]))
    profile, overtaken = _newest_profile(merged)
    cp_read = bool(merged.get(CP_READ)) or overtaken
    return Evidence(
        sf_values=sf_values,
        sf_full=isinstance(scanned, dict),
        sf_read=bool(merged.get(SF_READ)),
        sf_known_at=min(sf_times) if sf_times else None,
        cp_fields=dict(profile["fields"]) if profile is not None else None,
        cp_modified=str(profile.get("modified") or "") if profile is not None else "",
        cp_known_at=float(profile["at"]) if profile is not None else None,
        cp_read=cp_read,
        cp_absent=bool(merged.get(CP_ABSENT)),
        cp_absent_since=_number(merged.get(CP_ABSENT)),
        cp_scanned=profile is not None and "hook" not in profile,
    )


def _newest_profile(merged: ReadMapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The profile that stands (the newer of the last webhook's and a read's), and whether the
    last webhook delivered was overtaken: another one was of its time or later (then only a
    read newer than every webhook stands)."""
    hook = merged.get(CP_HOOK) if isinstance(merged.get(CP_HOOK), dict) else None
    record = merged.get(CP_RECORD) if isinstance(merged.get(CP_RECORD), dict) else None
    if hook is not None:
        own = CP_HOOK_AT + str(hook.get("hook"))
        others = [float(at) for key, at in merged.items() if key.startswith(CP_HOOK_AT) and key != own]
        if any(at >= float(hook["at"]) for at in others):
            newest = max(others)
            fresh = record is not None and float(record["at"]) > newest
            return (record if fresh else None), not fresh
    found = [p for p in (hook, record) if p is not None]
    return (max(found, key=lambda p: float(p["at"])) if found else None), False


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pair(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int | float)


# Seconds a platform's clock may run ahead of the database's: news of a linked record known no
# later than this after its last agreement may predate the bridge's own write, and are re-read.
FRESHNESS = 1.0


@dataclass(frozen=True)
class Known:
    """What the payloads make certain of one record, and what is left to read."""

    sf: SalesforceSide | None = None
    cp: CopernicaSide | None = None
    read_sf: bool = True
    read_cp: bool = True
    search_cp: bool = True  # look for a profile to link an unlinked contact to


def what_is_known(
    evidence: Evidence, mapping: Mapping, key: bytes, link: LinkState | None, *,
    sf_id: str | None, cp_id: str | None,
) -> Known:
    """Know a side from what the jobs carried instead of reading it, where that is certain:

    - an unlinked record: a whole record or profile a scan or webhook carried stands for a read,
      and a scan that found no profile for a contact spares the search;
    - a linked record (no tombstone, every mapped field agreed): a side whose news were known
      after the link's agreement was recorded (or which are only the agreement again). When a
      change event or webhook brought them and the other side has no news, that other side is
      as agreed and is not read; a scan's record is no news of a change, so the other side is
      read (a conflict needs both) unless its own news are there. News of both sides are
      planned without a read only when both are whole; otherwise both sides are read.
    """
    profile = evidence.cp_fields
    whole_profile = profile is not None and _whole_profile(mapping, profile)
    if link is None:
        whole_record = evidence.sf_full and not evidence.sf_read and bool(sf_id)
        whole_carried = whole_profile and not evidence.cp_read and bool(cp_id)
        absent = evidence.cp_absent and cp_id is None and _settled_before_scan(evidence)
        return Known(
            sf=SalesforceSide(evidence.sf_values) if whole_record else None,
            cp=CopernicaSide(profile, evidence.cp_modified) if whole_carried and profile else None,
            read_sf=not whole_record,
            read_cp=not (whole_carried or absent),
            search_cp=not absent,
        )
    agreed = link.agreed
    if link.sf_deleted or any(fm.sf_name not in agreed for fm in mapping.fields):
        return Known()
    since = link.agreed_at + FRESHNESS
    contact = link.salesforce_id
    sf: SalesforceSide | None = None
    sf_changed = False
    if evidence.sf_values and not evidence.sf_read:
        candidate = SalesforceSide({**evidence.sf_values, "Id": contact}, complete=evidence.sf_full)
        carried = from_salesforce(mapping, candidate.record)
        if not candidate.complete:
            carried = {name: v for name, v in carried.items() if name in candidate.record}
        sf_changed = not _as_agreed(key, mapping, agreed, carried)
        if (not sf_changed and not candidate.deleted) or (evidence.sf_known_at or 0.0) > since:
            sf = candidate
    cp: CopernicaSide | None = None
    cp_changed = False
    if profile is not None and whole_profile and not evidence.cp_read:
        cp_changed = _field(profile, mapping.link_field) != contact or not _as_agreed(
            key, mapping, agreed, from_copernica(mapping, profile)
        )
        if not cp_changed or (evidence.cp_known_at or 0.0) > since:
            cp = CopernicaSide(profile, evidence.cp_modified)
    sf_quiet = not evidence.salesforce_news or (sf is not None and not sf_changed)
    cp_quiet = not evidence.copernica_news or (cp is not None and not cp_changed)
    if sf is not None and cp is not None and (sf.complete or not (sf_changed and cp_changed)):
        return Known(sf, cp, read_sf=False, read_cp=False)
    if sf is not None and cp_quiet and (cp is not None or not evidence.sf_full):
        return Known(sf, cp or CopernicaSide(complete=False), read_sf=False, read_cp=False)
    if cp is not None and sf_quiet and (sf is not None or not evidence.cp_scanned):
        return Known(
            sf or SalesforceSide({"Id": contact}, complete=False), cp, read_sf=False, read_cp=False
        )
    if sf is not None and sf.complete and cp_quiet:
        return Known(sf=sf, read_sf=False)  # a scan's record: only the profile is read
    if cp is not None and sf_quiet:
        return Known(cp=cp, read_cp=False)  # a scan's profile: only the contact is read
    return Known()


def _settled_before_scan(evidence: Evidence) -> bool:
    """Whether the scan's "no profile" holds for the contact: given when the scan's pass over
    Copernica began, only for a contact last changed before then. One changed since may have
    been created by the bridge for a profile that pass missed (made meanwhile), its link not
    recorded yet: that one is searched for after all."""
    if evidence.cp_absent_since is None:
        return True
    modified = evidence.sf_values.get("LastModifiedDate")
    try:
        changed = parse_datetime(str(modified)).timestamp() if modified else None
    except ValueError:
        changed = None
    return changed is not None and changed < evidence.cp_absent_since - FRESHNESS


def _whole_profile(mapping: Mapping, fields: ReadMapping[str, str]) -> bool:
    """Whether ``fields`` hold every mapped field and the link field."""
    names = {name.lower() for name in fields}
    return mapping.link_field.lower() in names and all(
        fm.cp_name.lower() in names for fm in mapping.fields
    )


def _as_agreed(
    key: bytes, mapping: Mapping, agreed: ReadMapping[str, str], values: ReadMapping[str, str]
) -> bool:
    """Whether every value fingerprints to what both sides agreed on."""
    return all(
        agreed.get(name) == fingerprint(key, mapping.by_sf_name(name), value)
        for name, value in values.items()
    )


def _field(fields: ReadMapping[str, str], name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in fields.items() if k.lower() == lowered), "")
