"""Middlewares: a request id on every request (and every log line it causes), request metrics."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from bridge import logs
from bridge.web.keys import METRICS

log = logging.getLogger(__name__)


@web.middleware
async def request_context(request: web.Request, handler):  # type: ignore[no-untyped-def]
    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = secrets.token_hex(8)
    token = logs.request_id.set(rid)
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = rid
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        request.app[METRICS].http_requests.labels(route=route_name, status=str(status)).inc()
        logs.request_id.reset(token)
