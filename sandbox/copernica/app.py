"""The aiohttp application of the Copernica sandbox: REST, the authenticate endpoint, control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from aiohttp import web

from sandbox.copernica import admin, rest
from sandbox.copernica.hooks import Signer
from sandbox.copernica.runtime import SANDBOX, Sandbox, SandboxSettings
from sandbox.copernica.tokens import TokenIssuer


def create_app(settings: SandboxSettings | None = None) -> web.Application:
    """A sandbox that works on any host and port (URLs come from the request or the settings)."""
    settings = settings or SandboxSettings()
    app = web.Application(middlewares=[admin.sandbox_errors])
    app[SANDBOX] = Sandbox(
        settings=settings,
        tz=ZoneInfo(settings.timezone),
        signer=Signer(settings.key_id, settings.signing_key_pem),
        issuer=TokenIssuer(settings.api_token, settings.jwt_lifetime),
    )
    app.router.add_post("/", rest.authenticate)
    app.router.add_post("/authenticate", rest.authenticate)
    app.router.add_routes(admin.routes)
    app.router.add_route("*", r"/{version:v[34]}/{tail:.*}", rest.dispatch)
    app.cleanup_ctx.append(_webhook_delivery)
    return app


async def _webhook_delivery(app: web.Application) -> AsyncIterator[None]:
    """Start the webhook dispatcher with the app and stop its queues (and session) with it."""
    sandbox = app[SANDBOX]
    await sandbox.dispatcher.start()
    yield
    await sandbox.dispatcher.stop()
