"""The Copernica webhook endpoint: ``/hooks/copernica/<tenant hook token>``.

A delivery is verified (digest, date, HTTP signature, ``Host`` = the bridge's public host,
``X-Copernica-ID`` = the tenant's Copernica account), stored as a job, and only then answered
2xx, so a 2xx means the change is in PostgreSQL. An echo of the bridge's own write (its fields
are what the link agreed on, or what the workers are writing, by their cached mapping) is
answered without a job. A delivery accepted before and sent again while its ``Date`` is still
acceptable is a replay: refused (409) with nothing stored. The delivery's key is remembered in
the statement that stores its job, so a delivery whose job could not be stored may come again.

The first refusal of a tenant (per process) is logged with the *shape* of the delivery's headers
(which ones, how the signature is written — never a value), so an operator can see why
Copernica's calls do not get through. ``GET`` on the same URL answers whether the endpoint is
there, for ``bridge doctor`` and for administrators.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web

from bridge.copernica.webhooks import (
    WebhookRejected,
    delivery_key,
    header_shape,
    receive_webhook,
)
from bridge.db import QUERIES
from bridge.metrics import LabelledCounter
from bridge.sync.ingest import JUDGEMENTS, Taken, copernica_verdict, store_copernica
from bridge.tenants import Tenant
from bridge.vocabulary import WEBHOOK_PATH
from bridge.web.keys import INTAKE, METRICS, POOL, QUEUE, SETTINGS, SYNC, WEBHOOK_KEYS

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_AGE = 60.0  # seconds a delivery's Date may be off (Copernica's own library allows 60)
REPLAY_WINDOW = 2 * MAX_AGE  # a Date accepted now could still be accepted this much later
CLEANUP_SHARE = 0.01  # share of deliveries that also delete the expired delivery keys
_reported: set[str] = set()  # hook tokens whose first refusal was logged by this process


@routes.get(WEBHOOK_PATH + "{token}")
async def ready(request: web.Request) -> web.Response:
    if await request.app[INTAKE].tenant(request.match_info["token"]) is None:
        raise web.HTTPNotFound(text="unknown webhook address")
    return web.json_response({"status": "ready"})


@routes.post(WEBHOOK_PATH + "{token}")
async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    intake, token = request.app[INTAKE], request.match_info["token"]
    deliveries = request.app[METRICS].counter(
        "bridge_webhooks_total", "Copernica webhook deliveries, by outcome"
    )
    sync = request.app.get(SYNC)  # a web-only process has no workers, hence no mapping
    # Judged first by the tenant as this process last read it; read anew when the delivery fails
    # a check by it, or when the statement that stores the delivery finds its settings changed.
    tenant = intake.kept(token)
    read_now = tenant is None
    for _ in range(JUDGEMENTS):
        if tenant is None:
            tenant = await intake.tenant(token)
            if tenant is None:
                raise web.HTTPNotFound(text="unknown webhook address")
        try:
            event = await receive_webhook(
                request.method, request.path_qs, request.headers, body,
                request.app[WEBHOOK_KEYS], time.time(),
                max_age=MAX_AGE,
                expected_host=urlsplit(request.app[SETTINGS].public_url).netloc,
                expected_account=tenant.copernica_account,
            )
        except WebhookRejected as rejected:
            if not read_now:
                tenant, read_now = None, True
                continue
            deliveries.inc(outcome="rejected")
            log.info("copernica webhook of tenant %s refused (%s): %s", tenant.slug,
                     rejected.status, rejected.reason)
            _report_first(tenant, rejected, request.headers)
            return web.json_response({"error": rejected.reason}, status=rejected.status)
        context = sync.contexts.cached(tenant.id) if sync is not None else None
        taken = await store_copernica(
            intake, request.app[QUEUE], tenant, event, copernica_verdict(tenant, event, context),
            delivery_key(request.headers), REPLAY_WINDOW,
        )
        if taken != "stale":
            return await _answer(request, tenant, taken, deliveries)
        tenant, read_now = None, True
    raise web.HTTPServiceUnavailable(text="the tenant's settings keep changing: send it again")


async def _answer(
    request: web.Request, tenant: Tenant, taken: Taken, deliveries: LabelledCounter
) -> web.Response:
    if random.random() < CLEANUP_SHARE:
        async with request.app[POOL].acquire() as conn:
            await conn.execute(QUERIES["forget_expired_webhook_deliveries"])
    if taken == "replay":
        deliveries.inc(outcome="rejected")
        replayed = WebhookRejected(409, "this delivery was received before (a replay)")
        _report_first(tenant, replayed, request.headers)
        return web.json_response({"error": replayed.reason}, status=replayed.status)
    if taken == "echo":  # the bridge's own write coming back: no job, no API call
        request.app[METRICS].echoes.labels(platform="copernica").inc()
    deliveries.inc(outcome=taken)
    return web.json_response({"status": taken})


def _report_first(tenant: Tenant, rejected: WebhookRejected, headers: Mapping[str, str]) -> None:
    if tenant.hook_token in _reported:
        return
    _reported.add(tenant.hook_token)
    log.warning(
        "first refused Copernica webhook of tenant %s (%s, %s); header shape: %s",
        tenant.slug, rejected.status, rejected.reason, header_shape(headers),
    )
