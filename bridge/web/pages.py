"""The pages: accounts, config UI, the Salesforce web tab and the dashboard.

Server-rendered with aiohttp-jinja2 (autoescape on) from ``templates/``; CSS and the status-bar
script are served from ``static/``. Everything is scoped to the tenant of the logged-in session.
"""

from __future__ import annotations

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.resources import folder
from bridge.web import accounts, config_page, dashboard, database, edit_database, history, tab
from bridge.web.guard import SESSION, security_headers, sessions_and_csrf
from bridge.web.middlewares import error_pages
from bridge.web.render import when

TEMPLATES = folder("templates")
STATIC = folder("static")


def setup_templates(app: web.Application) -> None:
    """Templates and the static files they link to (versioned URLs, so caches see changes)."""
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    environment.filters["when"] = when
    app.router.add_static("/static", STATIC, name="static", append_version=True)


def setup(app: web.Application) -> None:
    """Register templates, middlewares and routes of the pages on ``app``."""
    setup_templates(app)
    app.middlewares.append(security_headers)
    app.middlewares.append(error_pages)  # outside the session check: its 403 gets a page too
    app.middlewares.append(sessions_and_csrf)
    app[accounts.BACKGROUND] = set()
    app.cleanup_ctx.append(accounts.background_tasks)
    app.router.add_get("/", home)
    for table in (accounts.routes, config_page.routes, database.routes, tab.routes, dashboard.routes,
                  history.routes, edit_database.routes):
        app.router.add_routes(table)


async def home(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is None:
        raise web.HTTPSeeOther("/login")
    raise web.HTTPSeeOther("/config" if session.role == "admin" else "/sfcp")
