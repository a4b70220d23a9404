"""Streaming API of the sandbox: Bayeux long-polling at ``/cometd/{version}``.

Handshake advertises only ``long-polling`` and sets the ``BAYEUX_BROWSER`` cookie (sessions
are keyed on ``clientId``; the cookie is not required back, so ``127.0.0.1`` URLs work too).
The first ``/meta/connect`` after a handshake is answered at once, later ones are held up to
``connect_timeout`` unless events are waiting or the connect is batched with other messages.
``advice.interval`` is always 0 (aiocometd reads it as seconds).

Choices where Salesforce's documentation is silent:
- A subscribe without ``ext.replay`` for its channel means -1 (new events only).
- A client that has not sent a connect for ``client_expiry`` seconds (and holds none) is
  forgotten and answered ``403::Unknown client`` with ``advice.reconnect: handshake``.
- Publishing to a data channel answers ``403::Publish not allowed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .auth import bearer
from .cdc import StoredEvent, change_channel
from .state import ORG, SandboxState

_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class BayeuxClient:
    client_id: str
    subscriptions: set[str] = field(default_factory=set)
    pending: list[dict[str, Any]] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    connected_once: bool = False
    holding: bool = False
    dropped: bool = False
    last_seen: float = field(default_factory=time.monotonic)


class Bayeux:
    """The CometD server: clients, their subscriptions, and fan-out of change events."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.clients: dict[str, BayeuxClient] = {}
        state.org.events.listeners.append(self.deliver)

    # --- channels -----------------------------------------------------------------------

    def channel_entities(self, channel: str) -> set[str] | None:
        """Entities a data channel carries; None when the channel does not exist."""
        selected = set(self.state.settings.cdc_entities)
        if channel == "/data/ChangeEvents":
            return selected
        for entity in selected:
            if change_channel(entity) == channel:
                return {entity}
        return None

    def deliver(self, event: StoredEvent) -> None:
        for client in self.clients.values():
            for channel in client.subscriptions:
                entities = self.channel_entities(channel)
                if entities and event.entity in entities:
                    client.pending.append(self.message(client, channel, event))
                    client.wakeup.set()

    @staticmethod
    def message(client: BayeuxClient, channel: str, event: StoredEvent) -> dict[str, Any]:
        return {"clientId": client.client_id, "channel": channel, "data": event.data}

    def drop(self, client_id: str | None = None) -> int:
        """Forget one client (or all): its next message answers ``403::Unknown client``."""
        victims = [c for c in self.clients.values() if client_id in (None, c.client_id)]
        for client in victims:
            client.dropped = True
            client.wakeup.set()
            self.clients.pop(client.client_id, None)
        return len(victims)

    def sweep(self) -> None:
        """Forget clients that stopped polling (a killed process never says goodbye)."""
        horizon = time.monotonic() - self.state.settings.client_expiry
        for client in list(self.clients.values()):
            if not client.holding and client.last_seen < horizon:
                self.drop(client.client_id)

    def lookup(self, client_id: object) -> BayeuxClient | None:
        client = self.clients.get(str(client_id))
        if client is None:
            return None
        expiry = self.state.settings.client_expiry
        if not client.holding and time.monotonic() - client.last_seen > expiry:
            self.drop(client.client_id)
            return None
        client.last_seen = time.monotonic()
        return client

    # --- the endpoint -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        version = request.match_info.get("version", "")
        try:
            valid_version = float(version) >= 37.0
        except ValueError:
            valid_version = False
        try:
            messages = json.loads(await request.read() or b"[]")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response([{"successful": False, "error": "400::Bad JSON"}], status=400)
        if isinstance(messages, dict):
            messages = [messages]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return web.json_response([{"successful": False, "error": "400::Bad JSON"}], status=400)
        if not valid_version:
            error = (
                "400::API version in the URI is mandatory. URI format: '/cometd/59.0'"
                if not version
                else "400::Unsupported API version. Only API versions '37.0' and later are "
                "supported."
            )
            return _json(
                [
                    {
                        "channel": m.get("channel"),
                        "id": m.get("id"),
                        "successful": False,
                        "error": error,
                    }
                    for m in messages
                ]
            )
        session = self.state.sessions.use(bearer(request))
        replies: list[dict[str, Any]] = []
        cookie: str | None = None
        connect: dict[str, Any] | None = None
        for message in messages:
            channel = message.get("channel")
            if channel == "/meta/handshake":
                answer, new_client = self.handshake(message, session is not None, request)
                replies.append(answer)
                if new_client:
                    cookie = secrets.token_hex(16)
                continue
            if session is None:
                replies.append(
                    self._error(message, "401::Authentication invalid", reconnect="none")
                )
                continue
            client = self.lookup(message.get("clientId"))
            if client is None:
                replies.append(self._error(message, "403::Unknown client", reconnect="handshake"))
                continue
            if channel == "/meta/connect":
                connect = message
            elif channel == "/meta/subscribe":
                replies.append(self.subscribe(client, message))
            elif channel == "/meta/unsubscribe":
                client.subscriptions.discard(str(message.get("subscription")))
                replies.append(self._ok(message, subscription=message.get("subscription")))
            elif channel == "/meta/disconnect":
                self.drop(client.client_id)
                replies.append(self._ok(message))
            else:
                replies.append(self._error(message, "403::Publish not allowed"))
        if connect is not None:
            replies = await self.connect(connect, batched=len(messages) > 1) + replies
        response = _json(replies)
        if cookie:
            response.set_cookie("BAYEUX_BROWSER", cookie, path="/", httponly=True)
        return response

    def handshake(
        self, message: dict[str, Any], authenticated: bool, request: web.Request
    ) -> tuple[dict[str, Any], bool]:
        ext = {"replay": True, "payload.format": True}
        base = {"channel": "/meta/handshake", "id": message.get("id")}
        if not authenticated:
            reason = (
                "401::Authentication invalid"
                if request.headers.get("Authorization")
                else "401::Request requires authentication"
            )
            return {
                **base,
                "ext": {"sfdc": {"failureReason": reason}, **ext},
                "advice": {"reconnect": "none"},
                "error": "403::Handshake denied",
                "successful": False,
            }, False
        offered = message.get("supportedConnectionTypes") or []
        if "long-polling" not in offered:
            return {**base, "error": "400::Invalid connection type", "successful": False}, False
        self.sweep()
        client_id = "".join(secrets.choice(_ALPHABET) for _ in range(28))
        self.clients[client_id] = BayeuxClient(client_id)
        return {
            **base,
            "ext": ext,
            "minimumVersion": "1.0",
            "clientId": client_id,
            "supportedConnectionTypes": ["long-polling"],
            "advice": self.advice(),
            "version": "1.0",
            "successful": True,
        }, True

    def advice(self, reconnect: str = "retry") -> dict[str, Any]:
        return {
            "interval": 0,
            "timeout": int(self.state.settings.connect_timeout * 1000),
            "reconnect": reconnect,
        }

    def subscribe(self, client: BayeuxClient, message: dict[str, Any]) -> dict[str, Any]:
        channel = message.get("subscription")
        if not isinstance(channel, str) or not channel.startswith("/"):
            return self._error(
                message,
                "400::Channel subscriptions must start with a leading '/'",
                subscription=channel,
            )
        entities = self.channel_entities(channel)
        if entities is None:
            return self._error(
                message,
                f"400::The channel you requested to subscribe to does not exist {{{channel}}}",
                subscription=channel,
            )
        replay = ((message.get("ext") or {}).get("replay") or {}).get(channel, -1)
        log = self.state.org.events
        if not isinstance(replay, int) or (
            replay not in (-1, -2) and not log.valid_replay_id(replay)
        ):
            return self._error(
                message,
                f"400::The replayId {{{replay}}} you provided was invalid. Please provide a valid "
                "ID, -2 to replay all events, or -1 to replay only new events.",
                subscription=channel,
            )
        client.subscriptions.add(channel)
        if replay != -1:
            for event in log.after(replay, entities):
                client.pending.append(self.message(client, channel, event))
            if client.pending:
                client.wakeup.set()
        return self._ok(message, subscription=channel)

    async def connect(self, message: dict[str, Any], *, batched: bool) -> list[dict[str, Any]]:
        client = self.lookup(message.get("clientId"))
        if client is None:
            return [self._error(message, "403::Unknown client", reconnect="handshake")]
        if message.get("connectionType", "long-polling") != "long-polling":
            return [self._error(message, "400::Invalid connection type")]
        may_hold = client.connected_once and not batched and not client.pending
        client.connected_once = True
        if may_hold:
            client.wakeup.clear()
            client.holding = True
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        client.wakeup.wait(), self.state.settings.connect_timeout
                    )
            finally:
                client.holding = False
                client.last_seen = time.monotonic()
        if client.dropped:
            return [self._error(message, "403::Unknown client", reconnect="handshake")]
        delivered, client.pending = client.pending, []
        return [*delivered, {**self._ok(message), "advice": self.advice()}]

    # --- replies ------------------------------------------------------------------------

    @staticmethod
    def _ok(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
        reply = {"channel": message.get("channel"), "id": message.get("id"), "successful": True}
        if message.get("clientId"):
            reply["clientId"] = message["clientId"]
        reply.update(extra)
        return reply

    def _error(
        self,
        message: dict[str, Any],
        error: str,
        *,
        reconnect: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        reply: dict[str, Any] = {
            "channel": message.get("channel"),
            "id": message.get("id"),
            "successful": False,
            "error": error,
        }
        if message.get("clientId"):
            reply["clientId"] = message["clientId"]
        if reconnect:
            reply["advice"] = {"reconnect": reconnect, "interval": 0}
        if message.get("channel") in ("/meta/subscribe", "/meta/unsubscribe"):
            reply["subscription"] = message.get("subscription")
        reply.update(extra)
        return reply


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json", charset="UTF-8")


async def cometd(request: web.Request) -> web.Response:
    return await request[ORG].streaming.handle(request)
