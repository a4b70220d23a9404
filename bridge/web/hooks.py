"""The Copernica webhook endpoint: ``/hooks/copernica/<tenant hook token>``.

A delivery is verified (digest, date, HTTP signature), stored as a job, and only then answered
2xx, so a 2xx means the change is in PostgreSQL. ``GET`` on the same URL answers whether the
endpoint is there, for ``bridge doctor`` and for administrators.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from bridge.copernica.webhooks import WebhookRejected, receive_webhook
from bridge.db import QUERIES
from bridge.sync.ingest import ingest_copernica
from bridge.tenants import Tenant
from bridge.vocabulary import WEBHOOK_PATH
from bridge.web.keys import METRICS, POOL, QUEUE, WEBHOOK_KEYS

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


async def _tenant(request: web.Request) -> Tenant:
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(QUERIES["tenant_by_hook_token"], request.match_info["token"])
    if row is None:
        raise web.HTTPNotFound(text="unknown webhook address")
    return Tenant.from_row(row)


@routes.get(WEBHOOK_PATH + "{token}")
async def ready(request: web.Request) -> web.Response:
    await _tenant(request)
    return web.json_response({"status": "ready"})


@routes.post(WEBHOOK_PATH + "{token}")
async def receive(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    deliveries = request.app[METRICS].counter(
        "bridge_webhooks_total", "Copernica webhook deliveries, by outcome"
    )
    body = await request.read()
    try:
        event = await receive_webhook(
            request.method, request.path_qs, request.headers, body,
            request.app[WEBHOOK_KEYS], time.time(),
        )
    except WebhookRejected as rejected:
        deliveries.inc(outcome="rejected")
        return web.json_response({"error": rejected.reason}, status=rejected.status)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        stored = await ingest_copernica(conn, request.app[QUEUE], tenant, event)
    deliveries.inc(outcome="stored" if stored else "ignored")
    return web.json_response({"status": "stored" if stored else "ignored"})
