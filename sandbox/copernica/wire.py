"""Wire helpers of the Copernica sandbox: replies, request bodies (JSON or PHP-style forms), paging."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiMapping

from sandbox.copernica.state import SandboxError, truthy
from sandbox.copernica.values import php_int, php_string

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_BRACKETS = re.compile(r"\[([^\]]*)\]")


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Content-Type exactly ``application/json`` (clients compare it literally)."""
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def error_reply(
    message: str, status: int = 400, headers: dict[str, str] | None = None
) -> web.Response:
    return json_reply({"error": {"message": message}}, status, headers)


def created(
    request: web.Request, kind: str, new_id: int, version: str, headers: str = "both"
) -> web.Response:
    """201 naming the new id in ``X-Created`` and/or ``X-location`` (``headers``: ``both``,
    ``x-created``, ``x-location`` or ``none``)."""
    location = f"{request.scheme}://{request.host}/{version}/{kind}/{new_id}"
    named: dict[str, str] = {}
    if headers in ("both", "x-created"):
        named["X-Created"] = str(new_id)
    if headers in ("both", "x-location"):
        named["X-location"] = location
    return web.Response(status=201, headers=named)


def no_content(headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=headers)


def parse_php_form(text: str) -> dict[str, Any]:
    """``a[b]=1&c[]=x`` → ``{"a": {"b": "1"}, "c": ["x"]}``, the way PHP reads form bodies."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        base, _, rest = key.partition("[")
        path = [base] + (_BRACKETS.findall("[" + rest) if rest else [])
        node: Any = result
        for position, part in enumerate(path):
            last = position == len(path) - 1
            if isinstance(node, list):
                if last:
                    node.append(value)
                else:
                    node.append({} if path[position + 1] else [])
                    node = node[-1]
                continue
            if last:
                node[part] = value
            else:
                wants_list = path[position + 1] == ""
                existing = node.get(part)
                if not isinstance(existing, list | dict):
                    existing = [] if wants_list else {}
                    node[part] = existing
                node = existing
    return result


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request body as a mapping; the Content-Type decides between JSON and form encoding."""
    raw = await request.read()
    if not raw.strip():
        return {}
    if request.content_type == "application/json":
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise SandboxError("Invalid data provided") from exc
        if not isinstance(parsed, dict):
            raise SandboxError("Invalid data provided")
        return parsed
    try:
        return parse_php_form(raw.decode())
    except UnicodeDecodeError as exc:
        raise SandboxError("Invalid data provided") from exc


async def api_token(request: web.Request) -> str:
    """The API token ``/authenticate`` exchanges: a query parameter, or the form or JSON body's."""
    token = request.query.get("access_token", "")
    if token:
        return token
    try:
        return php_string((await read_body(request)).get("access_token"))
    except SandboxError:
        return ""


def condition_params(query: MultiMapping[str]) -> list[str] | None:
    """The ``fields[]`` (or ``fields[N]``) conditions of a query; None when none were given."""
    found = [
        value
        for key, value in query.items()
        if key == "fields[]" or re.fullmatch(r"fields\[\d+\]", key)
    ]
    return found if found or "fields[]" in query else None


def paged(query: MultiMapping[str], items: Sequence[Any]) -> dict[str, Any]:
    """The list wrapper: ``start``/``limit`` (max 1000)/``count``/``total``/``data``."""
    start = php_int(query.get("start", "0"))
    limit = php_int(query.get("limit", str(DEFAULT_LIMIT)))
    limit = min(limit, MAX_LIMIT)
    data = [] if start < 0 or limit < 0 else list(items[start : start + limit])
    wrapper: dict[str, Any] = {"start": start, "limit": limit, "count": len(data)}
    if truthy(query.get("total", "true")):
        wrapper["total"] = len(items)
    wrapper["data"] = data
    return wrapper


def wrapper_of(items: Sequence[Any]) -> dict[str, Any]:
    """An embedded list wrapper (fields/interests of a database item)."""
    return {
        "start": 0,
        "limit": MAX_LIMIT,
        "count": len(items),
        "total": len(items),
        "data": list(items),
    }


OVERLOAD_PAGE = """<!DOCTYPE html>
<html><head><title>Loadbalancer Error</title></head>
<body><h1>Loadbalancer Error</h1>
<p>There are too many requests being processed at the moment. Please try again later.</p>
</body></html>
"""


def overload_reply(status: int, retry_after: float) -> web.Response:
    headers = {"Content-Type": "text/html"}
    if status in (429, 503):
        headers["Retry-After"] = str(max(0, math.ceil(retry_after)))
    if status == 429:
        return error_reply("Too many requests", 429, {"Retry-After": headers["Retry-After"]})
    return web.Response(status=status, body=OVERLOAD_PAGE.encode(), headers=headers)
