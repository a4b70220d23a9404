"""Operational endpoints: liveness, readiness, Prometheus metrics.

``/healthz`` is the liveness probe: the event loop answers, whatever else is down (a process
waiting for its database answers it too). ``/readyz`` is honest: 503 with the reason while the
database does not answer, its schema is behind, or a supervised task has been failing for longer
than ``READY_FAILING`` seconds.
"""

from __future__ import annotations

import asyncio
import hmac
from ipaddress import ip_address

from aiohttp import web

from bridge.db import pending_migrations
from bridge.web.keys import METRICS, POOL, QUEUE, SETTINGS, SUPERVISOR

READY_FAILING = 30.0  # seconds a long-lived task may fail (and restart) before readiness goes

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """The database answers and its schema is current: this process can take traffic."""
    try:
        async with asyncio.timeout(2):
            async with request.app[POOL].acquire() as conn:
                pending = await pending_migrations(conn)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return web.json_response(
            {"status": "unavailable", "database": f"unreachable ({type(exc).__name__})"}, status=503
        )
    if pending:
        return web.json_response(
            {"status": "unavailable", "database": "ok", "pending_migrations": pending}, status=503
        )
    failing = request.app[SUPERVISOR].failing(longer_than=READY_FAILING)
    if failing:
        return web.json_response(
            {"status": "unavailable", "database": "ok", "migrations": "current",
             "failing_tasks": [state.as_json() for state in failing]},
            status=503,
        )
    return web.json_response({"status": "ok", "database": "ok", "migrations": "current"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text. With ``METRICS_TOKEN`` set it needs that bearer token; without, only
    this machine may read it, and not through a proxy (which would make the world local)."""
    token = request.app[SETTINGS].metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise web.HTTPUnauthorized(
                text="metrics need Authorization: Bearer <METRICS_TOKEN>\n",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    elif not _local(request):
        raise web.HTTPForbidden(text="metrics are for this machine only unless METRICS_TOKEN is set\n")
    metrics_ = request.app[METRICS]
    try:
        async with asyncio.timeout(2):
            metrics_.set_jobs(await request.app[QUEUE].counts())
    except Exception:  # noqa: BLE001 - no database: the rest is still worth reading
        metrics_.jobs.clear()
    return web.Response(
        body=metrics_.render(), content_type="text/plain", charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def _local(request: web.Request) -> bool:
    try:
        loopback = ip_address(request.remote or "").is_loopback
    except ValueError:
        return False
    return loopback and "X-Forwarded-For" not in request.headers and "Forwarded" not in request.headers
