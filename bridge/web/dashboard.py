"""The dashboard (``/dashboard``): changes per hour over 48 h by direction, API usage against
the limits of both platforms, held jobs and the stream's state."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from bridge.db import QUERIES
from bridge.sync import runs
from bridge.web import chart
from bridge.web.guard import current, login_required
from bridge.web.keys import POOL, QUEUE
from bridge.web.render import render

routes = web.RouteTableDef()

# Copernica publishes no daily call limit; its throttling shows as 429 Too Many Requests.
PLATFORMS = (("salesforce", "Salesforce"), ("copernica", "Copernica"))


@routes.get("/dashboard")
@login_required
async def dashboard(request: web.Request) -> web.Response:
    tenant_id = current(request).tenant_id
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(QUERIES["changes_per_hour"], tenant_id, 48)
        usage = {r["platform"]: r for r in await conn.fetch(QUERIES["api_usage_today"], tenant_id)}
        status = await runs.status(conn, tenant_id)
    held = await request.app[QUEUE].held(tenant_id, 50)
    figure = chart.build(
        [(r["hour"], r["direction"], r["changes"]) for r in rows], datetime.now(UTC)
    )
    api = []
    for platform, label in PLATFORMS:
        row = usage.get(platform)
        used = row["used"] if row is not None and row["used"] is not None else None
        limit = row["max"] if row is not None else None
        api.append({
            "label": label,
            "calls": row["calls"] if row is not None else 0,
            "used": used,
            "max": limit,
            "percent": round(100 * used / limit) if used is not None and limit else None,
        })
    return render(request, "dashboard.html", {
        "chart": figure, "directions": chart.DIRECTIONS, "api": api, "held": held,
        "status": status,
    })
