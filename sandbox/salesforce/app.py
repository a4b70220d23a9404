"""The sandbox application factory: routes, middlewares and state wired together."""

from __future__ import annotations

from aiohttp import web

from . import admin, cometd, login, rest
from .settings import SandboxSettings
from .state import STATE, SandboxState


def create_app(settings: SandboxSettings | None = None) -> web.Application:
    """An aiohttp app that behaves like a Salesforce org on any host and port."""
    state = SandboxState.create(settings or SandboxSettings())
    app = web.Application(middlewares=[admin.admin_errors, admin.inject_faults])
    app[STATE] = state
    state.streaming = cometd.Bayeux(state)
    app.router.add_post("/services/Soap/u/{version}", login.soap)
    app.router.add_post("/services/Soap/u/{version}/", login.soap)
    app.router.add_post("/services/oauth2/token", login.token)
    app.router.add_post("/services/oauth2/token/", login.token)
    app.router.add_get("/services/data", rest.versions)
    app.router.add_route("*", "/services/data/{tail:.*}", rest.data_api)
    app.router.add_post("/cometd", cometd.cometd)
    app.router.add_post("/cometd/", cometd.cometd)
    app.router.add_post("/cometd/{version}", cometd.cometd)
    app.router.add_post("/cometd/{version}/", cometd.cometd)
    admin.routes(app)
    app.on_shutdown.append(_release_held_connects)
    return app


async def _release_held_connects(app: web.Application) -> None:
    """Answer held long-polls at once so that shutdown does not wait for their timeout."""
    app[STATE].streaming.drop()
