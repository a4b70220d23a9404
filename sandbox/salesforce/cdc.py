"""Change Data Capture in the sandbox: building change events and keeping them replayable.

Events are built as Salesforce sends them over CometD: CREATE and UNDELETE carry
every non-null field, UPDATE only changed fields plus ``LastModifiedDate``, DELETE only the
header; ``Name`` and the addresses are nested compounds. Replay ids increase by one per event
(an implementation detail: clients must treat them as opaque).

Replay validity (Salesforce does not document the exact rule): a stored id is accepted when no
retained event after it has been purged, i.e. ``oldest_retained - 1 <= id <= latest``. An id
older than that, or newer than any issued id, answers the documented ``400::The replayId …``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.salesforce.objects import ObjectSpec

from .schema import render

SCHEMA_IDS = {"Contact": "R5zq92JfedyvzEcBx9bE6g"}
# Fields never carried in a CometD change event body.
_NOT_IN_EVENTS = {"Id", "IsDeleted", "SystemModstamp", "LastActivityDate", "Name"}


@dataclass
class Transaction:
    """One commit: its events share a transactionKey and number their sequence from 1."""

    origin: str
    user_id: str
    key: str = field(default_factory=lambda: f"{uuid.uuid4()}")
    caller: str = ""  # the client= of Sforce-Call-Options, even where changeOrigin omits it
    sequence: int = 0
    commit_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass
class StoredEvent:
    replay_id: int
    entity: str
    stored_at: float  # monotonic seconds, for retention
    data: dict[str, Any]  # the Bayeux ``data`` member: schema, payload, event
    caller: str = ""  # the writer's Sforce-Call-Options client, whether changeOrigin shows it


def change_channel(entity: str) -> str:
    """``/data/ContactChangeEvent`` for Contact, ``/data/Foo__ChangeEvent`` for ``Foo__c``."""
    base = entity[:-3] + "__" if entity.endswith("__c") else entity
    return f"/data/{base}ChangeEvent"


def body_fields(
    spec: ObjectSpec,
    values: dict[str, object],
    names: list[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The event body for ``names`` (None: every non-null field) and its changedFields entries."""
    body: dict[str, Any] = {}
    changed: list[str] = []
    pick = names if names is not None else [n for n, v in values.items() if v is not None]
    for name in pick:
        if name in _NOT_IN_EVENTS:
            continue
        fspec = spec.field(name)
        if fspec is None or fspec.type == "address":
            continue
        value = render(values.get(name), cdc=True)
        if fspec.compound:
            part = name if fspec.compound == "Name" else name[len(fspec.compound) - 7 :]
            body.setdefault(fspec.compound, {})[part] = value
            changed.append(f"{fspec.compound}.{part}")
        else:
            body[name] = value
            changed.append(name)
    return body, changed


class EventLog:
    """Retained change events with increasing replay ids, and the listeners that fan them out."""

    def __init__(self, retention: float, first_replay_id: int = 1000) -> None:
        self.retention = retention
        self.events: deque[StoredEvent] = deque()
        self._ids = itertools.count(first_replay_id)
        self.latest = first_replay_id - 1
        self._commit_numbers = itertools.count(11_682_390_000_000)
        self.listeners: list[Callable[[StoredEvent], None]] = []

    def emit(
        self,
        spec: ObjectSpec,
        change_type: str,
        record_ids: list[str],
        txn: Transaction,
        body: dict[str, Any] | None = None,
        changed_fields: list[str] | None = None,
        commit_time: datetime | None = None,
    ) -> StoredEvent:
        header = {
            "commitNumber": next(self._commit_numbers),
            "commitUser": txn.user_id,
            "sequenceNumber": txn.next_sequence(),
            "entityName": spec.name,
            "changeType": change_type,
            "changedFields": changed_fields or [],
            "changeOrigin": txn.origin,
            "transactionKey": txn.key,
            "commitTimestamp": (
                int(commit_time.timestamp() * 1000) if commit_time else txn.commit_ms
            ),
            "recordIds": list(record_ids),
        }
        payload: dict[str, Any] = dict(body or {})
        payload["ChangeEventHeader"] = header
        replay_id = next(self._ids)
        self.latest = replay_id
        event = StoredEvent(
            replay_id=replay_id,
            entity=spec.name,
            stored_at=time.monotonic(),
            data={
                "schema": SCHEMA_IDS.get(spec.name, "Xq3bUi6vVbO8WbQ1s5qZ9A"),
                "payload": payload,
                "event": {"replayId": replay_id},
            },
            caller=txn.caller,
        )
        self.events.append(event)
        self.expire()
        for listener in list(self.listeners):
            listener(event)
        return event

    def expire(self) -> None:
        horizon = time.monotonic() - self.retention
        while self.events and self.events[0].stored_at < horizon:
            self.events.popleft()

    def purge(self, up_to: int | None = None) -> int:
        """Drop retained events (all, or those with replay id <= ``up_to``); returns how many."""
        dropped = 0
        while self.events and (up_to is None or self.events[0].replay_id <= up_to):
            self.events.popleft()
            dropped += 1
        return dropped

    def valid_replay_id(self, replay_id: int) -> bool:
        self.expire()
        oldest = self.events[0].replay_id if self.events else self.latest + 1
        return oldest - 1 <= replay_id <= self.latest

    def after(self, replay_id: int, entities: set[str] | None) -> list[StoredEvent]:
        """Retained events after ``replay_id`` (-2: all retained) for the given entities."""
        self.expire()
        return [
            event
            for event in self.events
            if (replay_id == -2 or event.replay_id > replay_id)
            and (entities is None or event.entity in entities)
        ]
