"""The control API of the Copernica sandbox under ``/_sandbox/`` (documented in the package docstring).

Everything a test, the demo or a benchmark needs that the real REST API cannot do: act as a
Copernica user, inject faults, inspect what the sandbox received and what it delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import weakref
from typing import Any

from aiohttp import web

from sandbox.copernica.accounts import ACCOUNT
from sandbox.copernica.runtime import RestFaults, Sandbox
from sandbox.copernica.state import (
    Account,
    MsTemplate,
    ProfileChange,
    PublisherDocument,
    PublisherTemplate,
    SandboxError,
    local_text,
)
from sandbox.copernica.variants import switched
from sandbox.copernica.wire import error_reply, json_reply

routes = web.RouteTableDef()
USER_CALLERS = ("ms", "publisher", "import", "rest")


def _sandbox(request: web.Request) -> Sandbox:
    return request[ACCOUNT]


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(text="body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _caller(body: dict[str, Any]) -> Any:
    caller = str(body.get("caller", "ms"))
    if caller not in USER_CALLERS:
        raise SandboxError(f"caller must be one of {', '.join(USER_CALLERS)}")
    return caller


@web.middleware
async def sandbox_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except SandboxError as exc:
        return error_reply(exc.message)


@routes.get("/_sandbox")
@routes.get("/_sandbox/")
async def index(request: web.Request) -> web.Response:
    from sandbox import copernica

    return web.Response(text=copernica.__doc__ or "", content_type="text/plain")


@routes.post("/_sandbox/reset")
async def reset(request: web.Request) -> web.Response:
    await _sandbox(request).reset()
    return json_reply({"reset": True})


@routes.get("/_sandbox/stats")
async def stats(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    dispatcher = sandbox.dispatcher
    return json_reply(
        {
            "api_calls": sum(sandbox.api_calls.values()),
            "api_calls_per_day": dict(sandbox.api_calls),
            "rest_writes": sandbox.rest_writes,
            "webhooks_pending": dispatcher.pending(),
            "webhook_attempts": len(dispatcher.log),
            "webhook_failures": len(dispatcher.feedback_loop_errors),
        }
    )


@routes.get("/_sandbox/rest-writes")
async def rest_writes(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    return json_reply({"count": sandbox.rest_writes, "recent": list(sandbox.write_log)})


@routes.get("/_sandbox/databases/{db}/profiles")
async def raw_profiles(request: web.Request) -> web.Response:
    """Every profile of a database, removed ones included, with its change sequence."""
    sandbox = _sandbox(request)
    account = sandbox.account
    database = account.database(request.match_info["db"])
    since = int(request.query.get("since_seq", "0") or 0)
    items = [
        {
            **account.profile_json(database, profile),
            "seq": profile.seq,
            "modified_utc": profile.modified.isoformat(),
        }
        for profile in sorted(database.profiles.values(), key=lambda p: p.id)
        if profile.seq > since
    ]
    return json_reply({"database": str(database.id), "count": len(items), "data": items})


@routes.post("/_sandbox/databases/{db}/profiles")
async def user_create(request: web.Request) -> web.Response:
    account = _sandbox(request).account
    body = await _json(request)
    database = account.database(request.match_info["db"])
    profile = account.create_profile(
        database, body.get("fields", {}), body.get("interests"), _caller(body)
    )
    return json_reply(account.profile_json(database, profile), 201)


@routes.post("/_sandbox/databases/{db}/profiles/seed")
async def seed_profiles(request: web.Request) -> web.Response:
    """``{"profiles": [{"fields": {...}, "removed"?: true}, ...]}``: profiles as if they had
    always been there (no webhook, no REST call counted); answers their ids in order."""
    account = _sandbox(request).account
    body = await _json(request)
    database = account.database(request.match_info["db"])
    rows = body.get("profiles")
    if not isinstance(rows, list):
        raise web.HTTPBadRequest(text="profiles must be a list")
    ids = [
        str(account.seed_profile(database, row.get("fields", {}), bool(row.get("removed"))).id)
        for row in rows
        if isinstance(row, dict)
    ]
    return json_reply({"ids": ids}, 201)


@routes.put("/_sandbox/profiles/{id}")
async def user_update(request: web.Request) -> web.Response:
    account = _sandbox(request).account
    body = await _json(request)
    database, profile = account.profile(request.match_info["id"])
    changed = account.update_profile(
        database, profile, body.get("fields", {}), body.get("interests"), _caller(body)
    )
    return json_reply({"changed": changed, **account.profile_json(database, profile)})


@routes.delete("/_sandbox/profiles/{id}")
async def user_delete(request: web.Request) -> web.Response:
    account = _sandbox(request).account
    body = await _json(request)
    database, profile = account.profile(request.match_info["id"])
    account.delete_profile(database, profile, _caller(body))
    return json_reply({"deleted": str(profile.id)})


@routes.post("/_sandbox/databases/{db}/views")
async def admin_view(request: web.Request) -> web.Response:
    account = _sandbox(request).account
    body = await _json(request)
    database = account.database(request.match_info["db"])
    rules = [str(r) for r in body.get("rules", [])]
    parent = account.view(str(body["parent"])) if body.get("parent") else None
    view = account.create_view(database, str(body.get("name", "View")), "", rules, parent)
    return json_reply({"ID": str(view.id), "rules": rules}, 201)


@routes.post("/_sandbox/ms/templates")
async def admin_ms_template(request: web.Request) -> web.Response:
    account = _sandbox(request).account
    body = await _json(request)
    template_id = max(account.ms_templates, default=0) + 1
    account.ms_templates[template_id] = MsTemplate(
        template_id,
        str(body.get("name", "Template")),
        str(body.get("subject", "")),
        str(body.get("from_name", "")),
        str(body.get("from_email", "")),
    )
    return json_reply({"id": str(template_id)}, 201)


@routes.post("/_sandbox/publisher/documents")
async def admin_document(request: web.Request) -> web.Response:
    account = _sandbox(request).account
    body = await _json(request)
    template_id = int(body.get("template", 0) or 0)
    if template_id not in account.publisher_templates:
        template_id = max(account.publisher_templates, default=0) + 1
        account.publisher_templates[template_id] = PublisherTemplate(template_id, "Template")
    document_id = max(account.documents, default=0) + 1
    account.documents[document_id] = PublisherDocument(
        document_id,
        template_id,
        str(body.get("name", "Document")),
        str(body.get("subject", "")),
        str(body.get("from_address", "")),
    )
    return json_reply({"id": str(document_id), "template": str(template_id)}, 201)


@routes.post("/_sandbox/faults")
async def set_faults(request: web.Request) -> web.Response:
    """``{"status": 503, "count": 3, "retry_after": 1, "latency": 0.05, "method": "POST"}`` —
    all optional."""
    sandbox = _sandbox(request)
    body = await _json(request)
    faults = sandbox.faults
    status = int(body.get("status", faults.status) or 0)
    if status not in (0, 429, 500, 502, 503, 504):
        raise web.HTTPBadRequest(text="status must be 429, 500, 502, 503 or 504")
    faults.status = status
    faults.count = int(body.get("count", 1 if status else 0))
    faults.retry_after = float(body.get("retry_after", faults.retry_after))
    faults.latency = float(body.get("latency", faults.latency))
    faults.method = str(body.get("method") or "").upper()
    return json_reply(faults.__dict__)


@routes.delete("/_sandbox/faults")
async def clear_faults(request: web.Request) -> web.Response:
    _sandbox(request).faults = RestFaults()
    return json_reply({"cleared": True})


@routes.get("/_sandbox/variants")
async def get_variants(request: web.Request) -> web.Response:
    return json_reply(dataclasses.asdict(_sandbox(request).variants))


@routes.post("/_sandbox/variants")
async def set_variants(request: web.Request) -> web.Response:
    """Switch some variants (``{"created_id": "none", ...}``); the others stay as they are."""
    sandbox = _sandbox(request)
    try:
        sandbox.variants = switched(sandbox.variants, await _json(request))
    except (ValueError, TypeError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return json_reply(dataclasses.asdict(sandbox.variants))


@routes.post("/_sandbox/tokens/expire")
async def expire_tokens(request: web.Request) -> web.Response:
    _sandbox(request).issuer.expire_all()
    return json_reply({"expired": True})


@routes.get("/_sandbox/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    hooks = [h.as_json() for h in _sandbox(request).account.webhooks.values()]
    return json_reply({"count": len(hooks), "data": hooks})


@routes.post("/_sandbox/webhooks/faults")
async def webhook_faults(request: web.Request) -> web.Response:
    """``{"fail": n, "duplicate": n, "reorder": n}`` for the next deliveries."""
    faults = _sandbox(request).dispatcher.faults
    body = await _json(request)
    for name in ("fail", "duplicate", "reorder"):
        if name in body:
            setattr(faults, name, max(0, int(body[name])))
    return json_reply(faults.__dict__)


@routes.get("/_sandbox/webhooks/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    dispatcher = _sandbox(request).dispatcher
    return json_reply({"pending": dispatcher.pending(), "attempts": list(dispatcher.log)})


@routes.get("/_sandbox/webhooks/feedback-loop-errors")
async def feedback_loop_errors(request: web.Request) -> web.Response:
    return json_reply(list(_sandbox(request).dispatcher.feedback_loop_errors))


@routes.post("/_sandbox/webhooks/drain")
async def drain(request: web.Request) -> web.Response:
    dispatcher = _sandbox(request).dispatcher
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(float(request.query.get("timeout", "10"))):
            await dispatcher.drain()
    return json_reply({"pending": dispatcher.pending()})


@routes.get("/_sandbox/webhook-key")
async def public_key(request: web.Request) -> web.Response:
    signer = _sandbox(request).signer
    return web.Response(
        body=signer.public_pem(),
        headers={"Content-Type": "application/x-pem-file", "X-Key-Id": signer.key_id},
    )


@routes.get("/_sandbox/webhook-key/dkim")
async def dkim_record(request: web.Request) -> web.Response:
    signer = _sandbox(request).signer
    return web.Response(
        text=signer.dkim_record(), content_type="text/plain", headers={"X-Key-Id": signer.key_id}
    )


@routes.get("/_sandbox/clock")
async def clock(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    return json_reply(
        {"now": local_text(sandbox.account.now(), sandbox.tz), "timezone": str(sandbox.tz)}
    )


class Landings:
    """When each profile change whose field holds a value starting with a prefix was stored.

    For benchmarks in another process: ``at`` is ``time.monotonic()``, the system-wide
    CLOCK_MONOTONIC on Linux, so it compares with the Salesforce sandbox's times on one machine.
    """

    def __init__(self, field: str, prefix: str) -> None:
        self.field, self.prefix = field, prefix
        self.entries: list[dict[str, Any]] = []

    def __call__(self, change: ProfileChange) -> None:
        value = change.fields.get(self.field, "")
        if value and value.startswith(self.prefix):
            self.entries.append({
                "at": time.monotonic(), "value": value, "profile": str(change.profile_id),
                "type": change.type, "caller": change.caller,
            })


# One recorder per account state: a reset makes a new one, which records nothing until asked.
_landings: weakref.WeakKeyDictionary[Account, Landings] = weakref.WeakKeyDictionary()


@routes.post("/_sandbox/landings")
async def start_landings(request: web.Request) -> web.Response:
    """``{"field": "Title", "prefix": ""}``: record from now on the changes carrying it."""
    account = _sandbox(request).account
    body = await _json(request)
    old = _landings.pop(account, None)
    if old is not None:
        account.listeners.remove(old)
    landings = _landings[account] = Landings(
        str(body.get("field", "Title")), str(body.get("prefix", ""))
    )
    account.listeners.append(landings)
    return json_reply({"field": landings.field, "prefix": landings.prefix}, 201)


@routes.get("/_sandbox/landings")
async def landings(request: web.Request) -> web.Response:
    """``?after=n``: the recorded entries from the n-th on (``next`` is the n to ask next), with
    the REST calls counted so far, so that one cheap poll serves both."""
    sandbox = _sandbox(request)
    recorded = _landings.get(sandbox.account)
    entries = recorded.entries if recorded is not None else []
    after = int(request.query.get("after", "0") or 0)
    return json_reply(
        {"entries": entries[after:], "next": len(entries), "api_calls": sum(sandbox.api_calls.values())}
    )
