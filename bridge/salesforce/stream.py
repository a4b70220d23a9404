"""Change Data Capture for the sync engine: typed events over aiosfstream-ng, resumed from the
replay markers the caller stores.

Usage::

    async with SalesforceStream(client, CDC_CHANNEL, store) as stream:
        async for item in stream:
            ...  # write the job(s) for ``item`` and its replay marker in one transaction

Items are ``ChangeEvent`` or a signal: ``GapEvent`` (re-read those records), ``OverflowEvent``
(re-sync the whole entity), ``ReplayIdInvalid`` (the stored marker is too old: events were lost,
reconcile; the stream continues from ``replay_fallback``, by default every retained event).

Delivery guarantees: an event whose marker was not stored is delivered again after a restart (the
subscription resumes from the stored marker; the stream itself never writes one). Within one stream, a re-handshake (e.g. after
``403::Unknown client``) resumes from the last event handed out, and replayed duplicates are
dropped, so the caller sees each event once. When the connection cannot be re-established
within ``connection_timeout``, iteration raises a transient ``SalesforceError``: open a new
stream, it resumes from the stored marker.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosfstream_ng import Client as StreamingClient
from aiosfstream_ng import ReplayMarkerStoragePolicy
from aiosfstream_ng.auth import AuthenticatorBase
from aiosfstream_ng.exceptions import (
    AiosfstreamException,
    AuthenticationError,
    ServerError,
    TransportTimeoutError,
)
from aiosfstream_ng.replay import ReplayMarker as LibraryMarker
from aiosfstream_ng.replay import ReplayMarkerStorage

from bridge.vocabulary import CDC_CHANNEL, SALESFORCE_API_VERSION

from . import shim
from .client import SalesforceClient
from .errors import SalesforceError, categorise

shim.apply()

NEW_EVENTS = -1
ALL_EVENTS = -2


@dataclass(frozen=True)
class ReplayMarker:
    """Where a subscription stands: the last stored replay id and its commit time (epoch ms
    as a string, or an ISO date, as aiosfstream keeps it)."""

    replay_id: int
    date: str


class ReplayStore(Protocol):
    """Durable replay markers per channel (the PostgreSQL one lives on table stream_state)."""

    async def get(self, channel: str) -> ReplayMarker | None: ...

    async def set(self, channel: str, marker: ReplayMarker) -> None: ...


@dataclass
class MemoryReplayStore:
    """A ReplayStore in a dict, for tests and the demo."""

    markers: dict[str, ReplayMarker] = field(default_factory=dict)

    async def get(self, channel: str) -> ReplayMarker | None:
        return self.markers.get(channel)

    async def set(self, channel: str, marker: ReplayMarker) -> None:
        self.markers[channel] = marker


# --- what the stream yields -------------------------------------------------------------


@dataclass(frozen=True)
class ChangeEvent:
    """One CREATE / UPDATE / DELETE / UNDELETE with compound fields flattened
    (``Name.LastName`` → ``LastName``, ``MailingAddress.City`` → ``MailingCity``)."""

    channel: str
    entity: str
    change_type: str
    record_ids: list[str]
    changed_fields: list[str]
    values: dict[str, Any]
    change_origin: str
    commit_timestamp: datetime
    commit_user: str
    transaction_key: str
    sequence_number: int
    replay_id: int

    @property
    def origin_client(self) -> str | None:
        """The ``client=`` of ``changeOrigin``: who wrote it through the API (None: nobody)."""
        _, found, client = self.change_origin.partition(";client=")
        return client or None if found else None


@dataclass(frozen=True)
class GapEvent:
    """Salesforce could not describe the change: re-read these records."""

    channel: str
    entity: str
    change_type: str  # GAP_CREATE, GAP_UPDATE, GAP_DELETE, GAP_UNDELETE
    record_ids: list[str]
    commit_timestamp: datetime
    replay_id: int


@dataclass(frozen=True)
class OverflowEvent:
    """More than 100 000 changes in one transaction: re-sync the whole entity."""

    channel: str
    entity: str
    commit_timestamp: datetime
    replay_id: int


@dataclass(frozen=True)
class ReplayIdInvalid:
    """The stored replay id is no longer retained: changes were missed, reconcile."""

    channel: str
    replay_id: int | None
    message: str


StreamItem = ChangeEvent | GapEvent | OverflowEvent | ReplayIdInvalid


def flatten(payload: dict[str, Any]) -> dict[str, Any]:
    """Event body fields with compounds spread into the object's own field names."""
    values: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "ChangeEventHeader":
            continue
        if key == "Name" and isinstance(value, dict):
            values.update(value)
        elif key.endswith("Address") and isinstance(value, dict):
            prefix = key[: -len("Address")]
            values.update({prefix + part: part_value for part, part_value in value.items()})
        else:
            values[key] = value
    return values


def flatten_field_name(name: str) -> str:
    compound, dot, part = name.partition(".")
    if not dot:
        return name
    if compound == "Name":
        return part
    return compound[: -len("Address")] + part if compound.endswith("Address") else part


def parse_message(message: dict[str, Any]) -> StreamItem:
    """A CometD CDC message as the typed item the sync engine acts on."""
    data = message["data"]
    payload = data.get("payload", {})
    header = payload.get("ChangeEventHeader", {})
    channel = message.get("channel", "")
    replay_id = int(data["event"]["replayId"])
    committed = datetime.fromtimestamp(int(header.get("commitTimestamp", 0)) / 1000, UTC)
    change_type = str(header.get("changeType", ""))
    entity = str(header.get("entityName", ""))
    if change_type == "GAP_OVERFLOW":
        return OverflowEvent(channel, entity, committed, replay_id)
    if change_type.startswith("GAP_"):
        return GapEvent(
            channel, entity, change_type, list(header.get("recordIds", [])), committed, replay_id
        )
    return ChangeEvent(
        channel=channel,
        entity=entity,
        change_type=change_type,
        record_ids=list(header.get("recordIds", [])),
        changed_fields=[flatten_field_name(n) for n in header.get("changedFields", [])],
        values=flatten(payload),
        change_origin=str(header.get("changeOrigin", "")),
        commit_timestamp=committed,
        commit_user=str(header.get("commitUser", "")),
        transaction_key=str(header.get("transactionKey", "")),
        sequence_number=int(header.get("sequenceNumber", 0)),
        replay_id=replay_id,
    )


# --- aiosfstream plumbing ---------------------------------------------------------------


class _SessionAuthenticator(AuthenticatorBase):
    """Hands the client's session to aiosfstream; logs in again when CometD refuses it."""

    def __init__(self, client: SalesforceClient) -> None:
        super().__init__()
        self._client = client
        self._calls = 0

    async def _authenticate(self) -> tuple[int, dict[str, Any]]:
        try:
            if self._calls == 0:
                session = await self._client.session()
            else:
                session = await self._client.relogin(await self._client.session())
        except SalesforceError as error:
            return 401, {"error": error.code, "error_description": error.message}
        self._calls += 1
        return 200, {
            "access_token": session.access_token,
            "token_type": "Bearer",
            "instance_url": session.instance_url,
        }


class _Markers(ReplayMarkerStorage):
    """What aiosfstream puts in ``ext.replay`` on (re)subscribe: within this stream the last
    event handed out, otherwise the stored marker, otherwise the default option."""

    def __init__(self, stream: SalesforceStream) -> None:
        super().__init__()
        self._stream = stream
        self.fallback: int | None = None  # set once the stored marker was refused

    async def get_replay_id(self, subscription: str) -> int | None:
        seen = self._stream.last_seen.get(subscription)
        if seen is not None:
            return seen
        if self.fallback is not None:
            return self.fallback
        stored = await self._stream.replay_store.get(subscription)
        return stored.replay_id if stored else self._stream.default_replay

    async def get_replay_marker(self, subscription: str) -> LibraryMarker | None:
        return None

    async def set_replay_marker(self, subscription: str, replay_marker: LibraryMarker) -> None:
        """Markers are stored by the caller, with the work they stand for."""


class _StreamingClient(StreamingClient):
    api_version = SALESFORCE_API_VERSION

    def get_cometd_url(self, instance_url: str) -> str:  # type: ignore[override]
        return f"{instance_url}/cometd/{self.api_version}"


def _stream_error(error: Exception) -> SalesforceError:
    if isinstance(error, ServerError):
        status = error.error_code if isinstance(error.error_code, int) else None
        text = str(error.response.get("error") if error.response else error)
        return SalesforceError(
            f"streaming: {text}", category=categorise(status, None), status=status
        )
    if isinstance(error, AuthenticationError):
        return SalesforceError(f"streaming: {error}", category="auth")
    if isinstance(error, TransportTimeoutError):
        return SalesforceError(f"streaming: {error}", category="transient")
    return SalesforceError(f"streaming: {error!r}", category="transient")


class SalesforceStream:
    """One CDC subscription as an async iterator of typed items (see the module docstring)."""

    def __init__(
        self,
        client: SalesforceClient,
        channel: str = CDC_CHANNEL,
        replay_store: ReplayStore | None = None,
        *,
        default_replay: int = NEW_EVENTS,
        replay_fallback: int = ALL_EVENTS,
        connection_timeout: float = 30.0,
        api_version: str | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.replay_store: ReplayStore = replay_store or MemoryReplayStore()
        self.default_replay = default_replay
        self.replay_fallback = replay_fallback
        self.connection_timeout = connection_timeout
        self.api_version = api_version or client.api_version
        self.last_seen: dict[str, int] = {}
        self._signals: list[StreamItem] = []
        self._markers = _Markers(self)
        self._streaming: _StreamingClient | None = None

    async def __aenter__(self) -> SalesforceStream:
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Authenticate, handshake and subscribe (falling back when the marker is invalid)."""
        streaming = _StreamingClient(
            _SessionAuthenticator(self.client),
            replay=self._markers,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            connection_timeout=self.connection_timeout,
        )
        streaming.api_version = self.api_version
        self._streaming = streaming
        try:
            await streaming.open()
            await self._subscribe(streaming)
        except AiosfstreamException as error:
            await self.close()
            raise _stream_error(error) from error

    async def _subscribe(self, streaming: _StreamingClient) -> None:
        try:
            await streaming.subscribe(self.channel)
        except ServerError as error:
            text = str(error.response.get("error", "")) if error.response else str(error)
            if error.error_code != 400 or "replayId" not in text:
                raise
            stored = await self.replay_store.get(self.channel)
            self._signals.append(
                ReplayIdInvalid(self.channel, stored.replay_id if stored else None, text)
            )
            self._markers.fallback = self.replay_fallback
            await streaming.subscribe(self.channel)

    async def close(self) -> None:
        if self._streaming is not None:
            streaming, self._streaming = self._streaming, None
            with contextlib.suppress(AiosfstreamException):
                await streaming.close()

    def __aiter__(self) -> SalesforceStream:
        return self

    async def __anext__(self) -> StreamItem:
        if self._signals:
            return self._signals.pop(0)
        if self._streaming is None:
            raise StopAsyncIteration
        while True:
            item = self._item(await self._receive())
            if item is not None:
                return item

    async def deliveries(self, most: int = 200) -> AsyncIterator[list[StreamItem]]:
        """The items in lists: the first that comes, with those that had arrived beside it (at
        most ``most``), so that the caller stores a delivery of many events in one go."""
        while True:
            try:
                items = [await self.__anext__()]
            except StopAsyncIteration:
                return
            while len(items) < most and self._streaming is not None and (
                self._signals or self._streaming.has_pending_messages
            ):
                if self._signals:
                    items.append(self._signals.pop(0))
                elif (item := self._item(await self._receive())) is not None:
                    items.append(item)
            yield items

    async def _receive(self) -> dict[str, Any]:
        assert self._streaming is not None  # open
        try:
            return await self._streaming.receive()
        except AiosfstreamException as error:
            raise _stream_error(error) from error

    def _item(self, message: dict[str, Any]) -> StreamItem | None:
        """The item of a message; None for one that is none (a meta message, a replayed
        duplicate after a re-handshake: already handed out)."""
        if "data" not in message or "event" not in message.get("data", {}):
            return None
        item = parse_message(message)
        channel = message.get("channel", self.channel)
        replay_id = item.replay_id if not isinstance(item, ReplayIdInvalid) else None
        if replay_id is None:
            return item
        if replay_id <= self.last_seen.get(channel, -1):
            return None
        self.last_seen[channel] = replay_id
        return item
