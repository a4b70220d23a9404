"""The Copernica sandbox's in-memory account: databases, fields, profiles, views, content, hooks.

Plain Python objects; every profile change goes through ``Account`` so it can bump the
profile's ``modified`` time and change sequence and tell the webhook dispatcher about it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sandbox.copernica.values import (
    FIELD_TYPES,
    UNIQUE_TYPES,
    coerce,
    initial_value,
    php_string,
)

Caller = Literal["rest", "ms", "publisher", "import"]
ChangeType = Literal["create", "update", "delete"]
TIMESTAMP = "%Y-%m-%d %H:%M:%S"


class SandboxError(Exception):
    """Answered as 400 with Copernica's ``{"error": {"message": ...}}`` body."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Field:
    id: int
    name: str
    type: str = "text"
    value: str = ""
    displayed: bool = False
    ordered: bool = False
    length: int = 255
    textlines: int = 1
    hidden: bool = False
    index: bool = False
    lock: bool = False
    description: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "ID": str(self.id),
            "name": self.name,
            "type": self.type,
            "value": self.value,
            "displayed": self.displayed,
            "ordered": self.ordered,
            "length": str(self.length),
            "textlines": str(self.textlines),
            "hidden": self.hidden,
            "index": self.index,
        }


@dataclass
class Interest:
    id: int
    name: str
    group: str = ""


@dataclass
class Profile:
    id: int
    database_id: int
    values: dict[int, str]  # field id -> stored string
    interests: set[str]
    secret: str
    created: datetime  # aware, UTC
    modified: datetime  # aware, UTC
    seq: int  # bumped on every real change; orders "modified" exactly
    removed: datetime | None = None

    def modified_text(self, tz: ZoneInfo) -> str:
        return local_text(self.modified, tz)


@dataclass
class Database:
    id: int
    name: str
    description: str = ""
    archived: bool = False
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    fields: list[Field] = field(default_factory=list)
    interests: list[Interest] = field(default_factory=list)
    profiles: dict[int, Profile] = field(default_factory=dict)
    # field id -> casefolded value -> ids of the live profiles holding it. ``Account`` keeps it
    # in step with every profile write, so that an equality search (how the bridge finds a
    # contact's profile) need not scan every profile; ``search.candidates`` reads it.
    value_index: dict[int, dict[str, set[int]]] = field(default_factory=dict, repr=False)

    def index_profile(self, profile: Profile) -> None:
        if profile.removed is not None:
            return
        for f in self.fields:
            key = profile.values.get(f.id, "").casefold()
            self.value_index.setdefault(f.id, {}).setdefault(key, set()).add(profile.id)

    def unindex_profile(self, profile: Profile) -> None:
        """Forget ``profile``'s current values (call before they change)."""
        for f in self.fields:
            table = self.value_index.get(f.id, {})
            key = profile.values.get(f.id, "").casefold()
            ids = table.get(key)
            if ids is not None:
                ids.discard(profile.id)
                if not ids:
                    del table[key]

    def field_by_name(self, name: str) -> Field | None:
        lowered = name.lower()
        return next((f for f in self.fields if f.name.lower() == lowered), None)

    def field_by_id(self, text: str) -> Field | None:
        return next((f for f in self.fields if str(f.id) == text), None)

    def field_by_ref(self, ref: str) -> Field | None:
        return self.field_by_id(ref) if ref.isdigit() else self.field_by_name(ref)

    def live_profiles(self) -> list[Profile]:
        return [p for p in self.profiles.values() if p.removed is None]


@dataclass
class View:
    id: int
    database_id: int
    name: str
    description: str = ""
    rules: list[str] = field(default_factory=list)  # fields[] conditions, ANDed
    last_built: datetime = field(default_factory=lambda: datetime.now(UTC))
    parent_id: int | None = None  # the selection this one is nested in (it narrows its result)


@dataclass
class MsTemplate:
    id: int
    name: str
    subject: str = ""
    from_name: str = ""
    from_email: str = ""
    type: str = "json"
    archived: bool = False
    directory: str = ""


@dataclass
class PublisherTemplate:
    id: int
    name: str
    archived: bool = False


@dataclass
class PublisherDocument:
    id: int
    template_id: int
    name: str
    subject: str = ""
    from_address: str = ""
    archived: bool = False
    source: str = "<html><body>Hello</body></html>"


@dataclass
class Emailing:
    id: int
    product: Literal["ms", "publisher"]
    content_id: int  # template (ms) or document (publisher)
    subject: str
    from_name: str
    from_email: str
    target_type: str
    target_id: int
    destinations: list[int]  # profile ids that had an e-mail address
    timestamp: datetime
    description: str = ""


@dataclass
class Webhook:
    id: int
    handler: str
    trigger: str
    callers: list[str] | None  # None: every caller
    database_id: int | None = None
    collection_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ID": str(self.id),
            "handler": self.handler,
            "trigger": self.trigger,
            "callers": list(self.callers) if self.callers is not None else [],
        }
        if self.database_id is not None:
            body["database"] = str(self.database_id)
        return body

    def wants(self, change: ProfileChange) -> bool:
        if self.trigger != change.type:
            return False
        if self.database_id is not None and self.database_id != change.database_id:
            return False
        return self.callers is None or change.caller in self.callers


@dataclass(frozen=True)
class ProfileChange:
    """What happened to one profile, as the webhook payload will describe it."""

    type: ChangeType
    caller: Caller
    profile_id: int
    database_id: int
    fields: dict[str, str]
    parameters: dict[str, str]
    interests: tuple[str, ...]
    at: datetime
    created: datetime
    modified: datetime


def local_text(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).strftime(TIMESTAMP)


class Account:
    """One Copernica account: the whole state the sandbox serves."""

    def __init__(
        self, tz: ZoneInfo, clock: Callable[[], datetime] | None = None, id_offset: int = 0
    ) -> None:
        self.tz = tz
        self.id_offset = id_offset  # hosted accounts number their entities in their own range
        self.clock = clock or (lambda: datetime.now(UTC))
        self.databases: dict[int, Database] = {}
        self.views: dict[int, View] = {}
        self.ms_templates: dict[int, MsTemplate] = {}
        self.publisher_templates: dict[int, PublisherTemplate] = {}
        self.documents: dict[int, PublisherDocument] = {}
        self.emailings: dict[int, Emailing] = {}
        self.webhooks: dict[int, Webhook] = {}
        self.listeners: list[Callable[[ProfileChange], None]] = []
        self._next_id: dict[str, int] = {}
        self._seq = 0

    # ids -------------------------------------------------------------------------------------
    def new_id(self, kind: str) -> int:
        """Ids per entity kind, starting at kind-specific offsets so they are not confused."""
        start = {"database": 1, "field": 101, "profile": 1001, "view": 201, "interest": 301}
        value = self._next_id.get(kind, self.id_offset + start.get(kind, 1))
        self._next_id[kind] = value + 1
        return value

    def now(self) -> datetime:
        return self.clock()

    # databases -------------------------------------------------------------------------------
    def database(self, ref: str) -> Database:
        """By id or (case-insensitively) by name, as every database-scoped path allows."""
        if ref.isdigit():
            found = self.databases.get(int(ref))
        else:
            lowered = ref.lower()
            found = next((d for d in self.databases.values() if d.name.lower() == lowered), None)
        if found is None:
            raise SandboxError("No database with supplied ID")
        return found

    def create_database(self, name: str, description: str = "", archived: bool = False) -> Database:
        name = name.strip()
        if not name:
            raise SandboxError("Invalid data provided")
        if any(d.name.lower() == name.lower() for d in self.databases.values()):
            raise SandboxError("A database with this name already exists")
        database = Database(self.new_id("database"), name, description, archived, self.now())
        self.databases[database.id] = database
        return database

    def copy_database(self, source: Database, name: str, options: Mapping[str, Any]) -> Database:
        copy = self.create_database(name, source.description, source.archived)
        id_map: dict[int, int] = {}
        for original in source.fields:
            new = Field(**{**original.__dict__, "id": self.new_id("field")})
            id_map[original.id] = new.id
            copy.fields.append(new)
        copy.interests = [
            Interest(self.new_id("interest"), i.name, i.group) for i in source.interests
        ]
        if truthy(options.get("profiles")):
            for profile in source.live_profiles():
                values = {id_map[k]: v for k, v in profile.values.items() if k in id_map}
                self._insert_profile(copy, values, set(profile.interests))
        if truthy(options.get("views")):
            for view in [v for v in self.views.values() if v.database_id == source.id]:
                self.create_view(copy, view.name, view.description, list(view.rules))
        return copy

    # fields ----------------------------------------------------------------------------------
    def create_field(self, database: Database, spec: Mapping[str, Any]) -> Field:
        name = php_string(spec.get("name")).strip()
        if not name or not name.replace("_", "").isalnum():
            raise SandboxError("Invalid field name")
        if name.lower() in ("id", "code"):
            raise SandboxError("Field name is reserved")
        if database.field_by_name(name) is not None:
            raise SandboxError("A field with this name already exists")
        field_type = php_string(spec.get("type") or "text")
        if field_type not in FIELD_TYPES:
            raise SandboxError("Invalid field type")
        if field_type in UNIQUE_TYPES and any(f.type == field_type for f in database.fields):
            raise SandboxError(f"Database already has a field of type {field_type}")
        new = Field(self.new_id("field"), name, field_type)
        self._apply_field_spec(new, spec)
        database.fields.append(new)
        for profile in database.profiles.values():
            profile.values[new.id] = (
                initial_value(new.type, new.value, self.tz) if profile.removed is None else ""
            )
        table: dict[str, set[int]] = database.value_index.setdefault(new.id, {})
        for profile in database.live_profiles():
            table.setdefault(profile.values[new.id].casefold(), set()).add(profile.id)
        return new

    def edit_field(self, database: Database, target: Field, spec: Mapping[str, Any]) -> None:
        if "name" in spec:
            name = php_string(spec["name"]).strip()
            other = database.field_by_name(name)
            if not name or (other is not None and other is not target):
                raise SandboxError("Invalid field name")
            if name.lower() in ("id", "code"):
                raise SandboxError("Field name is reserved")
            target.name = name
        if "type" in spec:
            field_type = php_string(spec["type"])
            if field_type not in FIELD_TYPES:
                raise SandboxError("Invalid field type")
            target.type = field_type
        self._apply_field_spec(target, spec)

    @staticmethod
    def _apply_field_spec(target: Field, spec: Mapping[str, Any]) -> None:
        if "value" in spec:
            target.value = php_string(spec["value"])
        for flag in ("displayed", "ordered", "hidden", "index", "lock"):
            if flag in spec:
                setattr(target, flag, truthy(spec[flag]))
        for number in ("length", "textlines"):
            if number in spec:
                setattr(target, number, max(1, int(php_string(spec[number]) or 0) or 1))
        if "description" in spec:
            target.description = php_string(spec["description"])

    def delete_field(self, database: Database, target: Field) -> None:
        database.fields.remove(target)
        database.value_index.pop(target.id, None)
        for profile in database.profiles.values():
            profile.values.pop(target.id, None)

    # profiles --------------------------------------------------------------------------------
    def profile(self, ref: str) -> tuple[Database, Profile]:
        if ref.isdigit():
            for database in self.databases.values():
                found = database.profiles.get(int(ref))
                if found is not None:
                    return database, found
        raise SandboxError("No entity with supplied ID")

    def field_map(self, database: Database, profile: Profile) -> dict[str, str]:
        return {f.name: profile.values.get(f.id, "") for f in database.fields}

    def profile_json(
        self, database: Database, profile: Profile, *, dataonly: bool = False
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ID": str(profile.id),
            "fields": self.field_map(database, profile),
            "interests": sorted(profile.interests),
        }
        if dataonly:
            body["modified"] = profile.modified_text(self.tz)
            return body
        body.update(
            {
                "database": str(database.id),
                "secret": profile.secret,
                "created": local_text(profile.created, self.tz),
                "modified": profile.modified_text(self.tz),
                "removed": local_text(profile.removed, self.tz) if profile.removed else False,
            }
        )
        return body

    def _coerced(self, database: Database, given: Mapping[str, Any]) -> dict[int, str]:
        """Known fields only, matched case-insensitively; the last of case-duplicates wins."""
        result: dict[int, str] = {}
        for name, value in given.items():
            target = database.field_by_name(str(name))
            if target is not None:
                result[target.id] = coerce(target.type, value, default=target.value, tz=self.tz)
        return result

    def _interest_names(self, database: Database, given: Any, current: set[str]) -> set[str]:
        """A list replaces the set; a map toggles (``{"name": 0|1}``); unknown names are ignored."""
        known = {i.name.lower(): i.name for i in database.interests}
        if isinstance(given, list):
            return {known[str(n).lower()] for n in given if str(n).lower() in known}
        if isinstance(given, dict):
            result = set(current)
            for name, flag in given.items():
                canonical = known.get(str(name).lower())
                if canonical is None:
                    continue
                if truthy(flag):
                    result.add(canonical)
                else:
                    result.discard(canonical)
            return result
        return set(current)

    def _insert_profile(
        self, database: Database, values: dict[int, str], interests: set[str]
    ) -> Profile:
        now = self.now()
        stored = {f.id: initial_value(f.type, f.value, self.tz) for f in database.fields}
        stored.update(values)
        self._seq += 1
        profile = Profile(
            self.new_id("profile"),
            database.id,
            stored,
            interests,
            secrets.token_hex(14),
            now,
            now,
            self._seq,
        )
        database.profiles[profile.id] = profile
        database.index_profile(profile)
        return profile

    def create_profile(
        self, database: Database, fields: Any, interests: Any, caller: Caller
    ) -> Profile:
        if fields is not None and not isinstance(fields, dict):
            raise SandboxError("Invalid data provided")
        given = fields or {}
        profile = self._insert_profile(
            database,
            self._coerced(database, given),
            self._interest_names(database, interests, set()),
        )
        self._emit("create", caller, database, profile, given)
        return profile

    def update_profile(
        self,
        database: Database,
        profile: Profile,
        fields: Any,
        interests: Any,
        caller: Caller,
        secret: Any = None,
    ) -> bool:
        """Apply the change; True when a stored value really changed (and ``modified`` moved)."""
        given = fields if isinstance(fields, dict) else {}
        new_values = self._coerced(database, given)
        new_interests = self._interest_names(database, interests, profile.interests)
        changed = any(profile.values.get(k) != v for k, v in new_values.items())
        changed = changed or new_interests != profile.interests
        if secret is not None:
            profile.secret = "".join(c if c.isascii() else "?" for c in php_string(secret))
        if not changed:
            self._emit_noop(database, profile, given, caller)
            return False
        database.unindex_profile(profile)
        profile.values.update(new_values)
        database.index_profile(profile)
        profile.interests = new_interests
        self._touch(profile)
        if profile.removed is None:
            self._emit("update", caller, database, profile, given)
        return True

    def delete_profile(
        self, database: Database, profile: Profile, caller: Caller, *, completely: bool = False
    ) -> None:
        if profile.removed is not None:
            raise SandboxError("This profile has already been removed")
        before = self.field_map(database, profile)
        database.unindex_profile(profile)
        profile.removed = self.now()
        profile.values = {k: "" for k in profile.values}
        profile.interests = set()
        if completely:
            del database.profiles[profile.id]
        self._emit("delete", caller, database, profile, {}, fields=before)

    def _touch(self, profile: Profile) -> None:
        self._seq += 1
        profile.seq = self._seq
        profile.modified = self.now()

    # views -----------------------------------------------------------------------------------
    def create_view(
        self,
        database: Database,
        name: str,
        description: str = "",
        rules: Iterable[str] = (),
        parent: View | None = None,
    ) -> View:
        if parent is not None and parent.database_id != database.id:
            raise SandboxError("No view with supplied ID")
        view = View(
            self.new_id("view"), database.id, name, description, list(rules), self.now(),
            parent.id if parent is not None else None,
        )
        self.views[view.id] = view
        return view

    def view_chain(self, view: View) -> list[View]:
        """The view and the selections it is nested in, outermost first."""
        chain = [view]
        while chain[0].parent_id is not None and chain[0].parent_id in self.views:
            chain.insert(0, self.views[chain[0].parent_id])
        return chain

    def seed_profile(self, database: Database, fields: Any, removed: bool = False) -> Profile:
        """A profile as if it had always been there: no webhook, no REST call counted."""
        if not isinstance(fields, dict):
            raise SandboxError("Invalid data provided")
        profile = self._insert_profile(database, self._coerced(database, fields), set())
        if removed:
            database.unindex_profile(profile)
            profile.removed = self.now()
            profile.values = {k: "" for k in profile.values}
        return profile

    def view(self, ref: str) -> View:
        found = self.views.get(int(ref)) if ref.isdigit() else None
        if found is None:
            raise SandboxError("No view with supplied ID")
        return found

    # change notification ---------------------------------------------------------------------
    emit_noop_updates = False

    def _emit_noop(
        self, database: Database, profile: Profile, given: Mapping[str, Any], caller: Caller
    ) -> None:
        if self.emit_noop_updates and profile.removed is None:
            self._emit("update", caller, database, profile, given)

    def _emit(
        self,
        kind: ChangeType,
        caller: Caller,
        database: Database,
        profile: Profile,
        given: Mapping[str, Any],
        *,
        fields: dict[str, str] | None = None,
    ) -> None:
        change = ProfileChange(
            type=kind,
            caller=caller,
            profile_id=profile.id,
            database_id=database.id,
            fields=fields if fields is not None else self.field_map(database, profile),
            parameters={str(k): php_string(v) for k, v in given.items()},
            interests=tuple(sorted(profile.interests)),
            at=self.now(),
            created=profile.created,
            modified=profile.modified,
        )
        for listener in self.listeners:
            listener(change)


def truthy(value: Any) -> bool:
    """Copernica's boolean parameters: true/yes (any case) or a number >= 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value >= 1
    text = php_string(value).strip().lower()
    if text in ("true", "yes"):
        return True
    try:
        return float(text) >= 1
    except ValueError:
        return False
