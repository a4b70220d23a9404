"""The pages: accounts, config UI, the Salesforce web tab and the dashboard.

Server-rendered with aiohttp-jinja2 (autoescape on) from ``templates/``; CSS and the status-bar
script are served from ``static/``. Everything is scoped to the tenant of the logged-in session.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.web import accounts, config_page, dashboard, tab
from bridge.web.guard import SESSION, security_headers, sessions_and_csrf
from bridge.web.mailsink import demo_mail
from bridge.web.render import when

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"


def setup(app: web.Application) -> None:
    """Register templates, middlewares and routes of the pages on ``app``."""
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    environment.filters["when"] = when
    app.middlewares.append(security_headers)
    app.middlewares.append(sessions_and_csrf)
    app[accounts.BACKGROUND] = set()
    app.cleanup_ctx.append(accounts.background_tasks)
    app.router.add_get("/", home)
    for table in (accounts.routes, config_page.routes, tab.routes, dashboard.routes):
        app.router.add_routes(table)
    app.router.add_get("/demo/mail", demo_mail)
    app.router.add_static("/static", STATIC, append_version=True)


async def home(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is None:
        raise web.HTTPSeeOther("/login")
    raise web.HTTPSeeOther("/config" if session.role == "admin" else "/sfcp")
