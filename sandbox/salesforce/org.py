"""The emulated org's data: records of every sObject, validation as Salesforce does it, and the
change events every write emits. Plain in-memory Python objects, no I/O.

Choices where Salesforce's documentation is silent:
- Retrieving a deleted record answers 404 ``NOT_FOUND``; updating or deleting it answers 404
  ``ENTITY_IS_DELETED``.
- An empty string is stored as null (as Salesforce does for text fields).
- A write with no ``Sforce-Call-Options`` client has ``changeOrigin``
  ``com/salesforce/api/rest/<ver>``; an edit "as a Salesforce user" (admin API) has ``""``.
- An update that changes nothing still emits an UPDATE with ``LastModifiedDate`` only.
- Writes are counted per ``Sforce-Call-Options`` client id (``""`` when there was none) for
  echo tests, whether or not ``changeOrigin`` shows it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.salesforce.objects import FieldSpec, ObjectSpec

from . import schema
from .cdc import EventLog, Transaction, body_fields
from .settings import SandboxSettings

_TEXT_TYPES = {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist"}


class SalesforceFault(Exception):
    """One error as Salesforce reports it: ``errorCode`` (``statusCode`` in Collections)."""

    def __init__(
        self, code: str, message: str, fields: list[str] | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields
        self.status = status

    def rest_body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]

    def collection_error(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


def not_found() -> SalesforceFault:
    return SalesforceFault("NOT_FOUND", "The requested resource does not exist", status=404)


@dataclass
class Record:
    sobject: str
    values: dict[str, object]
    deleted_at: datetime | None = None

    @property
    def id(self) -> str:
        return str(self.values["Id"])

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


def now() -> datetime:
    """The org's clock, truncated to milliseconds as Salesforce stores datetimes."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Org:
    """Records by sObject and id, plus the event log their changes feed."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.objects = schema.objects(settings.bridge_objects)
        self.records: dict[str, dict[str, Record]] = {name: {} for name in self.objects}
        self.events = EventLog(settings.event_retention)
        self.writes_by_client: Counter[str] = Counter()
        self._numbers = itertools.count(settings.first_record_number)
        self._auto_numbers = itertools.count(1)
        self.delete_log_since = now()

    # --- lookup ---------------------------------------------------------------------

    def spec(self, sobject: str) -> ObjectSpec:
        for name, spec in self.objects.items():
            if name.lower() == sobject.lower():
                return spec
        raise SalesforceFault("NOT_FOUND", "The requested resource does not exist", status=404)

    def find(self, sobject: str, record_id: str) -> Record | None:
        normal = schema.normalise_id(record_id)
        return self.records[self.spec(sobject).name].get(normal) if normal else None

    def with_ids(self, sobject: str, keys: Iterable[object]) -> list[Record]:
        """The records (deleted ones too) whose Id equals one of ``keys`` ignoring case, by
        dict look-ups, in the order a scan of ``records`` meets them: ids are the org's counter
        in fixed-width, ASCII-ordered base 62 (``schema.make_id``), so they sort by creation."""
        table = self.records[sobject]
        ids = {schema.id_in_any_case(key) for key in keys if isinstance(key, str)}
        return sorted((table[i] for i in ids if i in table), key=lambda record: record.id)

    def get(self, sobject: str, record_id: str, *, deleted_ok: bool = False) -> Record:
        """The record, or the fault Salesforce answers for a malformed, unknown or deleted id."""
        spec = self.spec(sobject)
        normal = schema.normalise_id(record_id)
        if normal is None or not normal.startswith(spec.key_prefix):
            raise SalesforceFault(
                "MALFORMED_ID",
                f"{spec.label} ID: id value of incorrect type: {record_id}",
                ["Id"],
            )
        record = self.records[spec.name].get(normal)
        if record is None:
            raise not_found()
        if record.deleted and not deleted_ok:
            raise not_found()
        return record

    def live(self, sobject: str, record_id: str) -> Record:
        """A record that may be written: deleted ones answer ENTITY_IS_DELETED."""
        record = self.get(sobject, record_id, deleted_ok=True)
        if record.deleted:
            raise SalesforceFault("ENTITY_IS_DELETED", "entity is deleted", [], status=404)
        return record

    def by_external_id(self, sobject: str, field_name: str, value: object) -> list[Record]:
        spec = self.spec(sobject)
        fspec = spec.field(field_name)
        if fspec is None or not (fspec.external_id or fspec.name == "Id"):
            raise SalesforceFault(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
                status=404,
            )
        if fspec.name == "Id":
            found = self.find(spec.name, str(value))
            return [found] if found and not found.deleted else []
        wanted = str(value).lower()
        return [
            record
            for record in self.records[spec.name].values()
            if not record.deleted and str(record.values.get(fspec.name) or "").lower() == wanted
        ]

    # --- validation -----------------------------------------------------------------

    def check(
        self, spec: ObjectSpec, body: dict[str, Any], *, existing: Record | None
    ) -> dict[str, object]:
        """Typed values for ``body``, or the first SalesforceFault Salesforce would answer."""
        creating = existing is None
        typed: dict[str, object] = {}
        refused: list[str] = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            fspec = spec.field(key)
            if fspec is None:
                raise SalesforceFault(
                    "INVALID_FIELD", f"No such column '{key}' on sobject of type {spec.name}"
                )
            if fspec.name == "Id":
                if creating:
                    raise SalesforceFault(
                        "INVALID_FIELD", "Id: cannot specify Id in an insert call", ["Id"]
                    )
                continue
            if not (fspec.createable if creating else fspec.updateable):
                refused.append(fspec.name)
                continue
            typed[fspec.name] = self._convert(spec, fspec, raw)
        if refused:
            verb = "create" if creating else "update"
            raise SalesforceFault(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {verb} fields: {', '.join(refused)}. Please check the security "
                "settings of this field and verify that it is read/write for your profile or "
                "permission set.",
                refused,
            )
        missing = [
            f.name
            for f in spec.fields
            if f.required
            and (
                (creating and typed.get(f.name) is None)
                or (not creating and f.name in typed and typed[f.name] is None)
            )
        ]
        if missing:
            raise SalesforceFault(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        for name, value in typed.items():
            fspec = spec.field(name)
            if fspec is not None and fspec.unique and value is not None:
                for other in self.records[spec.name].values():
                    if (
                        other is not existing
                        and not other.deleted
                        and str(other.values.get(name) or "").lower() == str(value).lower()
                    ):
                        raise SalesforceFault(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {name} duplicates value on record with id: "
                            f"{other.id}",
                            [],
                        )
        return typed

    def _convert(self, spec: ObjectSpec, fspec: FieldSpec, raw: object) -> object:
        label = fspec.display_label

        def parse_error(kind: str) -> SalesforceFault:
            token = "VALUE_STRING" if isinstance(raw, str) else "VALUE_" + type(raw).__name__
            return SalesforceFault(
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of {kind} from {token.upper()} value {raw} or "
                "request may be missing a required field",
            )

        if raw is None or raw == "":
            return False if fspec.type == "boolean" else None
        kind = fspec.type
        if kind in _TEXT_TYPES:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise parse_error("string")
            text = str(raw)
            if fspec.length and len(text) > fspec.length:
                raise SalesforceFault(
                    "STRING_TOO_LONG",
                    f"{label}: data value too large: {text[:100]} (max length={fspec.length})",
                    [fspec.name],
                )
            if kind == "email" and not schema.email_ok(text):
                raise SalesforceFault(
                    "INVALID_EMAIL_ADDRESS",
                    f"{label}: invalid email address: {text}",
                    [fspec.name],
                )
            return text
        if kind == "boolean":
            if not isinstance(raw, bool):
                raise parse_error("boolean")
            return raw
        if kind in ("double", "int"):
            if isinstance(raw, bool):
                raise parse_error("double")
            try:
                number = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise parse_error("double") from None
            return int(number) if kind == "int" else number
        if kind == "date":
            parsed = schema.parse_date(raw) if isinstance(raw, str) else None
            if parsed is None:
                raise parse_error("date")
            return parsed
        if kind == "datetime":
            moment = schema.parse_datetime(raw) if isinstance(raw, str) else None
            if moment is None:
                raise parse_error("datetime")
            return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if kind == "reference":
            normal = schema.normalise_id(raw) if isinstance(raw, str) else None
            if normal is None:
                raise SalesforceFault(
                    "MALFORMED_ID", f"{label}: id value of incorrect type: {raw}", [fspec.name]
                )
            target = fspec.reference_to[0] if fspec.reference_to else ""
            if target == "User":
                if normal != schema.normalise_id(self.settings.user_id):
                    raise SalesforceFault(
                        "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [fspec.name]
                    )
            elif target in self.records:
                found = self.records[target].get(normal)
                if found is None or found.deleted:
                    raise SalesforceFault(
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"{label}: id value of incorrect type: {raw}"
                        if not normal.startswith(self.objects[target].key_prefix)
                        else "invalid cross reference id",
                        [fspec.name],
                    )
            return normal
        raise parse_error(kind)

    # --- writes ---------------------------------------------------------------------

    def new_id(self, spec: ObjectSpec) -> str:
        return schema.make_id(spec.key_prefix, "5g", next(self._numbers))

    def _derive(self, spec: ObjectSpec, values: dict[str, object]) -> None:
        if spec.name == "Contact":
            values["Name"] = schema.full_name(values)

    def _count(self, txn: Transaction) -> None:
        self.writes_by_client[txn.caller or txn.origin.partition(";client=")[2]] += 1

    def create(
        self,
        sobject: str,
        body: dict[str, Any],
        txn: Transaction,
        *,
        typed: dict | None = None,
        silent: bool = False,
    ) -> Record:
        """Insert a record; ``silent`` (seeding) emits no change event and counts no write."""
        spec = self.spec(sobject)
        typed = typed if typed is not None else self.check(spec, body, existing=None)
        stamp = now()
        values: dict[str, object] = {f.name: f.default for f in spec.fields}
        values.update(typed)
        values.update(
            Id=self.new_id(spec),
            IsDeleted=False,
            CreatedDate=stamp,
            CreatedById=txn.user_id,
            LastModifiedDate=stamp,
            LastModifiedById=txn.user_id,
            SystemModstamp=stamp,
        )
        if "OwnerId" in values and values["OwnerId"] is None:
            values["OwnerId"] = txn.user_id
        name_field = spec.field("Name")
        if name_field is not None and name_field.auto_number:
            values["Name"] = f"ERR-{next(self._auto_numbers):06d}"
        self._derive(spec, values)
        record = Record(spec.name, values)
        self.records[spec.name][record.id] = record
        if not silent:
            self._count(txn)
            self._emit(spec, "CREATE", record, txn, body_fields(spec, values))
        return record

    def update(
        self,
        sobject: str,
        record_id: str,
        body: dict[str, Any],
        txn: Transaction,
        *,
        typed: dict | None = None,
    ) -> Record:
        spec = self.spec(sobject)
        record = self.live(spec.name, record_id)
        typed = typed if typed is not None else self.check(spec, body, existing=record)
        before = dict(record.values)
        record.values.update(typed)
        stamp = now()
        record.values.update(
            LastModifiedDate=stamp, LastModifiedById=txn.user_id, SystemModstamp=stamp
        )
        self._derive(spec, record.values)
        changed = [
            name
            for name, value in typed.items()
            if before.get(name) != value and name not in ("LastModifiedDate",)
        ]
        if before.get("LastModifiedById") != txn.user_id:
            changed.append("LastModifiedById")
        body, names = body_fields(spec, record.values, changed)
        body["LastModifiedDate"] = schema.render(stamp, cdc=True)
        self._count(txn)
        self._emit(spec, "UPDATE", record, txn, (body, [*names, "LastModifiedDate"]))
        return record

    def delete(self, sobject: str, record_id: str, txn: Transaction) -> Record:
        spec = self.spec(sobject)
        record = self.live(spec.name, record_id)
        stamp = now()
        record.deleted_at = stamp
        record.values.update(IsDeleted=True, SystemModstamp=stamp, LastModifiedDate=stamp)
        self._count(txn)
        self._emit(spec, "DELETE", record, txn, ({}, []))
        return record

    def undelete(self, sobject: str, record_id: str, txn: Transaction) -> Record:
        spec = self.spec(sobject)
        record = self.get(spec.name, record_id, deleted_ok=True)
        if not record.deleted:
            raise SalesforceFault("UNDELETE_FAILED", "Entity is not in the recycle bin", [])
        stamp = now()
        record.deleted_at = None
        record.values.update(
            IsDeleted=False,
            MasterRecordId=None,
            SystemModstamp=stamp,
            LastModifiedDate=stamp,
            LastModifiedById=txn.user_id,
        )
        self._count(txn)
        self._emit(spec, "UNDELETE", record, txn, body_fields(spec, record.values))
        return record

    def merge(
        self, master_id: str, loser_ids: list[str], body: dict[str, Any], txn: Transaction
    ) -> Record:
        """Contact merge: the master takes ``body``, each loser is deleted with MasterRecordId."""
        if not 1 <= len(loser_ids) <= 2:
            raise SalesforceFault("INVALID_OPERATION", "A merge takes one or two records to merge")
        master = self.live("Contact", master_id)
        losers = [self.live("Contact", loser) for loser in loser_ids]
        if any(loser is master for loser in losers):
            raise SalesforceFault("INVALID_OPERATION", "Cannot merge a record with itself")
        self.update("Contact", master.id, body, txn)
        for loser in losers:
            loser.values["MasterRecordId"] = master.id
            self.delete("Contact", loser.id, txn)
        return master

    def _emit(
        self,
        spec: ObjectSpec,
        change_type: str,
        record: Record,
        txn: Transaction,
        body_and_changed: tuple[dict[str, Any], list[str]],
    ) -> None:
        if spec.name not in self.settings.cdc_entities:
            return
        body, changed = body_and_changed
        self.events.emit(
            spec,
            change_type,
            [record.id],
            txn,
            body=body,
            changed_fields=changed if change_type == "UPDATE" else [],
        )

    # --- rendering ------------------------------------------------------------------

    def rest_record(
        self, record: Record, version: str, fields: list[str] | None = None
    ) -> dict[str, Any]:
        """The record as REST returns it: ``attributes`` first, then the fields."""
        spec = self.objects[record.sobject]
        out: dict[str, Any] = {
            "attributes": {
                "type": spec.name,
                "url": f"/services/data/v{version}/sobjects/{spec.name}/{record.id}",
            }
        }
        wanted = fields or [f.name for f in spec.fields]
        for name in wanted:
            fspec = spec.field(name)
            if fspec is None:
                continue
            out[fspec.name] = self.value(record, fspec)
        return out

    def value(self, record: Record, fspec: FieldSpec) -> object:
        if fspec.type == "address":
            prefix = fspec.name[:-7]
            parts = {
                key[0].lower() + key[1:]: schema.render(record.values.get(prefix + key))
                for key in (
                    "City",
                    "Country",
                    "GeocodeAccuracy",
                    "Latitude",
                    "Longitude",
                    "PostalCode",
                    "State",
                    "Street",
                )
            }
            return parts if any(v is not None for v in parts.values()) else None
        return schema.render(record.values.get(fspec.name))
