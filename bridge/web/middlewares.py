"""Middlewares: a request id on every request (and every log line it causes), request metrics;
error pages in the site's layout for people."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from bridge import logs
from bridge.web.keys import METRICS
from bridge.web.render import render

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


ERROR_PAGES = {
    403: ("Not allowed", "You may not open this page or do this with your account."),
    404: ("Page not found", "There is no page at this address (any more)."),
}


@web.middleware
async def error_pages(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """A 403 or 404 for a browser is a page in the site's layout, with a way on; machines
    (JSON endpoints, webhooks, anything not asking for HTML) keep the plain answer."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status not in ERROR_PAGES or not _wants_html(request, exc):
            raise
        title, default = ERROR_PAGES[exc.status]
        said = exc.text or ""
        reason = said if said and not said.startswith(f"{exc.status}:") else default
        return render(request, "error.html", {"title": title, "reason": reason,
                                              "status": exc.status}, status=exc.status)


def _wants_html(request: web.Request, exc: web.HTTPException) -> bool:
    if exc.content_type == "application/json" or request.path.endswith(".json"):
        return False
    return "text/html" in request.headers.get("Accept", "")
