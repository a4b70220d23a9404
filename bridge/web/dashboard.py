"""The dashboard (``/dashboard``): the status bar, changes per hour over 48 h by direction, API
usage against the limits of both platforms, the stream's state, the latest error reports (with
the contacts they name, read from Salesforce) and the held jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from bridge.db import QUERIES
from bridge.sync import reports, runs
from bridge.vocabulary import ADVICE
from bridge.web import chart, platforms
from bridge.web.guard import current, login_required
from bridge.web.keys import POOL, QUEUE
from bridge.web.render import render

routes = web.RouteTableDef()

# Copernica publishes no daily call limit; its throttling shows as 429 Too Many Requests.
PLATFORMS = (("salesforce", "Salesforce"), ("copernica", "Copernica"))
REPORTS_SHOWN = 20


@routes.get("/dashboard")
@login_required
async def dashboard(request: web.Request) -> web.Response:
    tenant_id = current(request).tenant_id
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(QUERIES["changes_per_hour"], tenant_id, 48)
        usage = {r["platform"]: r for r in await conn.fetch(QUERIES["api_usage_today"], tenant_id)}
        status = await runs.status(conn, tenant_id)
        errors = await reports.error_reports(conn, tenant_id, REPORTS_SHOWN)
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
        "status": status, "errors": errors, "advice": ADVICE,
        "contacts": await platforms.contacts_named(request, tenant_id, errors), "record_name": reports.record_name,
    })

