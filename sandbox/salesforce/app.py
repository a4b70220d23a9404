"""The sandbox application factory: routes, middlewares and state wired together."""

from __future__ import annotations

from aiohttp import web

from . import admin, bulk, cometd, login, orgs, rest
from .settings import SandboxSettings
from .state import STATE


def create_app(settings: SandboxSettings | None = None) -> web.Application:
    """An aiohttp app that behaves like Salesforce orgs on any host and port: the default org of
    ``settings`` and those made through ``POST /_sandbox/orgs``."""
    hosted = orgs.Orgs(settings or SandboxSettings())
    app = web.Application(middlewares=[admin.admin_errors, orgs.resolve_org, admin.inject_faults])
    app[orgs.ORGS] = hosted
    app[STATE] = hosted.default
    app.router.add_post("/services/Soap/u/{version}", login.soap)
    app.router.add_post("/services/Soap/u/{version}/", login.soap)
    app.router.add_post("/services/oauth2/token", login.token)
    app.router.add_post("/services/oauth2/token/", login.token)
    app.router.add_get("/services/data", rest.versions)
    bulk.routes(app)  # before the REST catch-all below
    app.router.add_route("*", "/services/data/{tail:.*}", rest.data_api)
    app.router.add_post("/cometd", cometd.cometd)
    app.router.add_post("/cometd/", cometd.cometd)
    app.router.add_post("/cometd/{version}", cometd.cometd)
    app.router.add_post("/cometd/{version}/", cometd.cometd)
    admin.routes(app)
    app.router.add_post("/_sandbox/orgs", orgs.create)
    app.on_shutdown.append(_release_held_connects)
    return app


async def _release_held_connects(app: web.Application) -> None:
    """Answer held long-polls at once so that shutdown does not wait for their timeout."""
    for state in app[orgs.ORGS].all():
        state.streaming.drop()
