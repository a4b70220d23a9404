"""The sandbox's admin API under ``/_sandbox/`` (documented in the package docstring)."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from typing import Any

from aiohttp import web

from . import schema
from .cdc import EventLog, StoredEvent, Transaction
from .org import Org, Record, SalesforceFault
from .state import ORG, Fault, SandboxState

_SYSTEM = ("CreatedDate", "LastModifiedDate", "SystemModstamp")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw else {}


def _user_txn(state: SandboxState) -> Transaction:
    """A change made in the Salesforce UI: no API origin, no client id."""
    return Transaction(origin="", user_id=state.settings.user_id)


def raw_record(org: Org, record: Record) -> dict[str, Any]:
    out = org.rest_record(record, "59.0")
    out.pop("attributes")
    return out


async def overview(request: web.Request) -> web.Response:
    state = request[ORG]
    s = state.settings
    return _json(
        {
            "username": s.username,
            "password": s.password,
            "security_token": s.security_token,
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "refresh_token": s.refresh_token,
            "records": {name: len(rows) for name, rows in state.org.records.items()},
            "api_usage": {"used": state.api_used, "max": s.daily_api_max},
            "streaming_clients": len(state.streaming.clients),
            "latest_replay_id": state.org.events.latest,
        }
    )


async def reset(request: web.Request) -> web.Response:
    """Empty the org (records, events, clients, faults, usage); sessions stay valid."""
    state = request[ORG]
    state.streaming.drop()
    state.org.events.listeners.clear()
    state.org = Org(state.settings)
    state.org.events.listeners.append(state.streaming.deliver)
    state.faults.clear()
    state.cursors.clear()
    state.api_used = 0
    return _json({"reset": True})


async def seed(request: web.Request) -> web.Response:
    """Insert records as if they had always been there: no change events, no write counts.

    System dates (CreatedDate, LastModifiedDate, SystemModstamp) may be given; ``IsDeleted:
    true`` puts the record in the recycle bin.
    """
    state = request[ORG]
    org = state.org
    body = await _body(request)
    rows = body.get("records", []) if isinstance(body, dict) else body
    spec = org.spec(request.match_info["sobject"])
    ids = []
    for row in rows:
        fields = {k: v for k, v in row.items() if k not in (*_SYSTEM, "IsDeleted", "attributes")}
        typed = org.check(spec, fields, existing=None)
        record = org.create(
            spec.name, {}, Transaction("", state.settings.user_id), typed=typed, silent=True
        )
        for name in _SYSTEM:
            if name in row:
                moment = schema.parse_datetime(row[name])
                if moment is None:
                    raise SalesforceFault("JSON_PARSER_ERROR", f"bad datetime for {name}")
                record.values[name] = moment
        if row.get("IsDeleted"):
            record.values["IsDeleted"] = True
            record.deleted_at = record.values["SystemModstamp"]  # type: ignore[assignment]
        ids.append(record.id)
    return _json({"ids": ids}, 201)


async def contacts(request: web.Request) -> web.Response:
    """All contacts as stored (``?include_deleted=true`` adds the recycle bin)."""
    state = request[ORG]
    with_deleted = request.query.get("include_deleted", "").lower() in ("1", "true", "yes")
    rows = [
        raw_record(state.org, record)
        for record in state.org.records["Contact"].values()
        if with_deleted or not record.deleted
    ]
    return _json({"records": rows})


async def contact(request: web.Request) -> web.Response:
    state = request[ORG]
    record = state.org.get("Contact", request.match_info["id"], deleted_ok=True)
    return _json(raw_record(state.org, record))


async def user_create(request: web.Request) -> web.Response:
    state = request[ORG]
    record = state.org.create("Contact", await _body(request), _user_txn(state))
    return _json({"id": record.id}, 201)


async def user_edit(request: web.Request) -> web.Response:
    """Edit a contact as a Salesforce user would: CDC event without a client in changeOrigin."""
    state = request[ORG]
    record = state.org.update(
        "Contact", request.match_info["id"], await _body(request), _user_txn(state)
    )
    return _json(raw_record(state.org, record))


async def user_delete(request: web.Request) -> web.Response:
    state = request[ORG]
    state.org.delete("Contact", request.match_info["id"], _user_txn(state))
    return web.Response(status=204)


async def user_undelete(request: web.Request) -> web.Response:
    state = request[ORG]
    record = state.org.undelete("Contact", request.match_info["id"], _user_txn(state))
    return _json(raw_record(state.org, record))


async def merge(request: web.Request) -> web.Response:
    """``{"master": id, "losers": [id, …], "fields": {…}}``: losers deleted with MasterRecordId."""
    state = request[ORG]
    body = await _body(request)
    master = state.org.merge(
        body["master"], list(body.get("losers", [])), body.get("fields", {}), _user_txn(state)
    )
    return _json(raw_record(state.org, master))


async def writes(request: web.Request) -> web.Response:
    state = request[ORG]
    return _json({"by_client": dict(state.org.writes_by_client)})


async def expire_sessions(request: web.Request) -> web.Response:
    state = request[ORG]
    return _json({"expired": state.sessions.expire_all()})


async def add_fault(request: web.Request) -> web.Response:
    state = request[ORG]
    body = await _body(request)
    fault = Fault(
        path=body.get("path", "*"),
        method=body.get("method"),
        status=body.get("status", 500),
        latency=float(body.get("latency", 0.0)),
        times=body.get("times", 1),
        error_code=body.get("error_code"),
    )
    state.faults.append(fault)
    return _json({"faults": len(state.faults)}, 201)


async def clear_faults(request: web.Request) -> web.Response:
    request[ORG].faults.clear()
    return web.Response(status=204)


async def streaming(request: web.Request) -> web.Response:
    bayeux = request[ORG].streaming
    return _json(
        {
            "clients": [
                {
                    "client_id": c.client_id,
                    "subscriptions": sorted(c.subscriptions),
                    "pending": len(c.pending),
                    "holding": c.holding,
                }
                for c in bayeux.clients.values()
            ]
        }
    )


async def drop_clients(request: web.Request) -> web.Response:
    body = await _body(request)
    return _json({"dropped": request[ORG].streaming.drop(body.get("client_id"))})


async def gap(request: web.Request) -> web.Response:
    """``{"record_ids": […], "change_type": "GAP_UPDATE", "entity": "Contact"}``."""
    state = request[ORG]
    body = await _body(request)
    change_type = body.get("change_type", "GAP_UPDATE")
    if change_type not in ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"):
        raise web.HTTPBadRequest(text="change_type must be a GAP_* type")
    spec = state.org.spec(body.get("entity", "Contact"))
    event = state.org.events.emit(spec, change_type, list(body["record_ids"]), _user_txn(state))
    return _json({"replay_id": event.replay_id}, 201)


async def overflow(request: web.Request) -> web.Response:
    state = request[ORG]
    body = await _body(request)
    spec = state.org.spec(body.get("entity", "Contact"))
    event = state.org.events.emit(spec, "GAP_OVERFLOW", ["000000000000000AAA"], _user_txn(state))
    return _json({"replay_id": event.replay_id}, 201)


async def purge(request: web.Request) -> web.Response:
    state = request[ORG]
    body = await _body(request)
    return _json({"purged": state.org.events.purge(body.get("up_to"))})


async def events(request: web.Request) -> web.Response:
    log = request[ORG].org.events
    return _json(
        {
            "latest": log.latest,
            "events": [
                {
                    "replay_id": e.replay_id,
                    "entity": e.entity,
                    "change_type": e.data["payload"]["ChangeEventHeader"]["changeType"],
                }
                for e in log.events
            ],
        }
    )


VARIANTS = ("soap_login", "collections_call_options", "jwt_certificate_pem")


async def variants(request: web.Request) -> web.Response:
    """``GET``: the variants in force; ``POST {"soap_login": true, …}``: switch some."""
    settings = request[ORG].settings
    if request.method == "POST":
        body = await _body(request)
        unknown = set(body) - set(VARIANTS)
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown variants: {sorted(unknown)}")
        for name, value in body.items():
            if name == "jwt_certificate_pem":
                settings.jwt_certificate_pem = str(value) if value else None
            else:
                setattr(settings, name, bool(value))
    return _json({name: getattr(settings, name) for name in VARIANTS})


class Landings:
    """When each change event carrying a value of one field (starting with a prefix) was stored.

    For benchmarks in another process: ``at`` is ``time.monotonic()``, the system-wide
    CLOCK_MONOTONIC on Linux, so it compares with the Copernica sandbox's times on one machine.
    """

    def __init__(self, field: str, prefix: str) -> None:
        self.field, self.prefix = field, prefix
        self.entries: list[dict[str, Any]] = []

    def __call__(self, event: StoredEvent) -> None:
        payload = event.data["payload"]
        value = payload.get(self.field)
        if isinstance(value, str) and value.startswith(self.prefix):
            header = payload["ChangeEventHeader"]
            self.entries.append({
                "at": time.monotonic(), "value": value, "records": header["recordIds"],
                "caller": event.caller, "origin": header["changeOrigin"],
            })


# One recorder per event log: a reset makes a new log, which records nothing until asked again.
_landings: weakref.WeakKeyDictionary[EventLog, Landings] = weakref.WeakKeyDictionary()


async def start_landings(request: web.Request) -> web.Response:
    """``{"field": "Title", "prefix": ""}``: record from now on the change events carrying it."""
    log = request[ORG].org.events
    body = await _body(request)
    old = _landings.pop(log, None)
    if old is not None:
        log.listeners.remove(old)
    landings = _landings[log] = Landings(str(body.get("field", "Title")), str(body.get("prefix", "")))
    log.listeners.append(landings)
    return _json({"field": landings.field, "prefix": landings.prefix}, 201)


async def landings(request: web.Request) -> web.Response:
    """``?after=n``: the recorded entries from the n-th on (``next`` is the n to ask next), with
    the API calls counted so far, so that one cheap poll serves both."""
    state = request[ORG]
    recorded = _landings.get(state.org.events)
    entries = recorded.entries if recorded is not None else []
    after = int(request.query.get("after", "0") or 0)
    return _json({"entries": entries[after:], "next": len(entries), "api_calls": state.api_used})


async def set_limits(request: web.Request) -> web.Response:
    state = request[ORG]
    body = await _body(request)
    if "used" in body:
        state.api_used = int(body["used"])
    if "max" in body:
        state.settings.daily_api_max = int(body["max"])
    return _json({"used": state.api_used, "max": state.settings.daily_api_max})


@web.middleware
async def admin_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Admin calls answer Salesforce faults as JSON too, with the same status."""
    try:
        return await handler(request)
    except SalesforceFault as fault:
        return _json(fault.rest_body(), fault.status)
    except (KeyError, json.JSONDecodeError) as error:
        return _json([{"message": f"bad admin request: {error}", "errorCode": "BAD_REQUEST"}], 400)


@web.middleware
async def inject_faults(request: web.Request, handler: Any) -> web.StreamResponse:
    """Apply the configured faults to every non-admin route."""
    if request.path.startswith("/_sandbox"):
        return await handler(request)
    state = request[ORG]
    for fault in list(state.faults):
        if not fault.matches(request.method, request.path):
            continue
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.status is None:
            break
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                state.faults.remove(fault)
        code = fault.error_code or (
            "SERVER_UNAVAILABLE" if fault.status == 503 else "UNKNOWN_EXCEPTION"
        )
        response = web.Response(
            status=fault.status,
            text=json.dumps([{"message": "injected by the sandbox", "errorCode": code}]),
            content_type="application/json",
        )
        if request.path.startswith("/services/data"):
            response.headers["Sforce-Limit-Info"] = state.limit_info()
        return response
    return await handler(request)


def routes(app: web.Application) -> None:
    add = app.router.add_route
    add("GET", "/_sandbox", overview)
    add("GET", "/_sandbox/", overview)
    add("POST", "/_sandbox/reset", reset)
    add("POST", "/_sandbox/records/{sobject}", seed)
    add("GET", "/_sandbox/contacts", contacts)
    add("POST", "/_sandbox/contacts", user_create)
    add("GET", "/_sandbox/contacts/{id}", contact)
    add("PATCH", "/_sandbox/contacts/{id}", user_edit)
    add("DELETE", "/_sandbox/contacts/{id}", user_delete)
    add("POST", "/_sandbox/contacts/{id}/undelete", user_undelete)
    add("POST", "/_sandbox/merge", merge)
    add("GET", "/_sandbox/writes", writes)
    add("POST", "/_sandbox/sessions/expire", expire_sessions)
    add("POST", "/_sandbox/faults", add_fault)
    add("DELETE", "/_sandbox/faults", clear_faults)
    add("GET", "/_sandbox/streaming", streaming)
    add("POST", "/_sandbox/streaming/drop", drop_clients)
    add("POST", "/_sandbox/cdc/gap", gap)
    add("POST", "/_sandbox/cdc/overflow", overflow)
    add("POST", "/_sandbox/cdc/purge", purge)
    add("GET", "/_sandbox/cdc/events", events)
    add("PATCH", "/_sandbox/limits", set_limits)
    add("POST", "/_sandbox/landings", start_landings)
    add("GET", "/_sandbox/landings", landings)
    add("GET", "/_sandbox/variants", variants)
    add("POST", "/_sandbox/variants", variants)
