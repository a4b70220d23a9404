"""Typed views of what Copernica returns (ids parsed to ints, values kept as Copernica's strings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Product = Literal["ms", "publisher"]


def _id(value: Any) -> int:
    return int(str(value))


def _flag(value: Any) -> bool:
    return value not in (None, False, 0, "0", "", "false")


@dataclass(frozen=True)
class Field:
    id: int
    name: str
    type: str
    value: str = ""
    length: int | None = None
    index: bool = False
    displayed: bool = False
    hidden: bool = False

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Field:
        length = item.get("length")
        return cls(
            id=_id(item["ID"]),
            name=str(item["name"]),
            type=str(item.get("type", "text")),
            value=str(item.get("value") or ""),
            length=int(str(length)) if str(length or "").isdigit() else None,
            index=_flag(item.get("index")),
            displayed=_flag(item.get("displayed")),
            hidden=_flag(item.get("hidden")),
        )


@dataclass(frozen=True)
class Database:
    id: int
    name: str
    description: str = ""
    archived: bool = False
    created: str = ""
    fields: tuple[Field, ...] = ()

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Database:
        fields = item.get("fields")
        data = fields.get("data", []) if isinstance(fields, dict) else []
        return cls(
            id=_id(item["ID"]),
            name=str(item["name"]),
            description=str(item.get("description") or ""),
            archived=_flag(item.get("archived")),
            created=str(item.get("created") or ""),
            fields=tuple(Field.from_json(f) for f in data),
        )


@dataclass(frozen=True)
class Profile:
    id: int
    fields: dict[str, str]
    interests: tuple[str, ...] = ()
    database: int | None = None
    secret: str = ""
    created: str = ""
    modified: str = ""  # "YYYY-MM-DD HH:MM:SS" in the account's timezone
    removed: str | None = None  # when the profile was removed, None while it lives

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Profile:
        fields = item.get("fields")
        interests = item.get("interests") or []
        if isinstance(interests, dict):
            interests = [name for name, on in interests.items() if _flag(on)]
        removed = item.get("removed")
        return cls(
            id=_id(item["ID"]),
            fields={str(k): "" if v is None else str(v) for k, v in (fields or {}).items()},
            interests=tuple(str(i) for i in interests),
            database=_id(item["database"]) if item.get("database") else None,
            secret=str(item.get("secret") or ""),
            created=str(item.get("created") or ""),
            modified=str(item.get("modified") or ""),
            removed=str(removed) if removed else None,
        )


@dataclass(frozen=True)
class View:
    """A selection; nested ones (``parent-type`` view) sit under another selection."""

    id: int
    name: str
    database: int | None
    description: str = ""
    parent: int | None = None  # the selection it is nested in
    has_children: bool = False
    path: tuple[str, ...] = ()  # names from the top-level selection down to this one

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> View:
        nested = str(item.get("parent-type") or "") == "view"
        database = item.get("database") or (None if nested else item.get("parent-id"))
        return cls(
            id=_id(item["ID"]),
            name=str(item["name"]),
            database=_id(database) if database else None,
            description=str(item.get("description") or ""),
            parent=_id(item["parent-id"]) if nested and item.get("parent-id") else None,
            has_children=_flag(item.get("has-children")),
            path=(str(item["name"]),),
        )

    @property
    def label(self) -> str:
        return " › ".join(self.path or (self.name,))


@dataclass(frozen=True)
class Template:
    """A drag-and-drop (``ms``) template or a Publisher document: what an emailing sends."""

    id: int
    name: str
    product: Product
    subject: str = ""
    from_address: str = ""
    archived: bool = False
    template: int | None = None  # the Publisher template a document belongs to

    @classmethod
    def from_json(cls, item: dict[str, Any], product: Product) -> Template:
        sender = item.get("from_address")
        if isinstance(sender, dict):
            name, email = sender.get("name") or "", sender.get("email") or ""
            sender = f'"{name}" <{email}>' if name else str(email)
        return cls(
            id=_id(item["id"]),
            name=str(item.get("name") or ""),
            product=product,
            subject=str(item.get("subject") or ""),
            from_address=str(sender or ""),
            archived=_flag(item.get("archived")),
            template=_id(item["template"]) if item.get("template") else None,
        )


@dataclass(frozen=True)
class Emailing:
    id: int
    product: Product
    timestamp: str
    subject: str
    destinations: int
    target_type: str = ""
    target: int | None = None
    content: int | None = None  # template (ms) or document (publisher)

    @classmethod
    def from_json(cls, item: dict[str, Any], product: Product) -> Emailing:
        target: dict[str, Any] = item["target"] if isinstance(item.get("target"), dict) else {}
        sources = target.get("sources") or [{}]
        content = item.get("template") if product == "ms" else item.get("document")
        return cls(
            id=_id(item["id"]),
            product=product,
            timestamp=str(item.get("timestamp") or ""),
            subject=str(item.get("subject") or ""),
            destinations=int(item.get("destinations") or 0),
            target_type=str(target.get("type") or ""),
            target=_id(sources[0]["id"]) if sources and sources[0].get("id") else None,
            content=_id(content) if content else None,
        )


@dataclass(frozen=True)
class EmailingStatistics:
    destinations: int
    deliveries: int
    errors: int
    impressions: int
    unique_impressions: int
    clicks: int
    unique_clicks: int
    unsubscribes: int
    abuses: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> EmailingStatistics:
        def count(key: str, part: str = "total") -> int:
            value = item.get(key)
            if isinstance(value, dict):
                value = value.get(part)
            return int(value or 0)

        return cls(
            destinations=count("destinations"),
            deliveries=count("deliveries"),
            errors=count("errors"),
            impressions=count("impressions"),
            unique_impressions=count("impressions", "unique"),
            clicks=count("clicks"),
            unique_clicks=count("clicks", "unique"),
            unsubscribes=count("unsubscribes"),
            abuses=count("abuses"),
            raw=item,
        )


@dataclass(frozen=True)
class Webhook:
    id: int
    handler: str
    trigger: str
    callers: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Webhook:
        callers = item.get("callers") or []
        return cls(
            id=_id(item["ID"]),
            handler=str(item.get("handler") or ""),
            trigger=str(item.get("trigger") or ""),
            callers=tuple(str(c) for c in callers) if isinstance(callers, list) else (),
        )
