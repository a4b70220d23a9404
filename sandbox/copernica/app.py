"""The aiohttp application of the Copernica sandbox: REST, the authenticate endpoint, control API."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from sandbox.copernica import admin, rest
from sandbox.copernica.accounts import ACCOUNTS, Accounts, resolve_account
from sandbox.copernica.accounts import create as create_account
from sandbox.copernica.runtime import SANDBOX, SandboxSettings


def create_app(settings: SandboxSettings | None = None) -> web.Application:
    """A sandbox that works on any host and port (URLs come from the request or the settings):
    the default account of ``settings`` and those made through ``POST /_sandbox/accounts``."""
    accounts = Accounts(settings or SandboxSettings())
    app = web.Application(middlewares=[admin.sandbox_errors, resolve_account])
    app[ACCOUNTS] = accounts
    app[SANDBOX] = accounts.default
    app.router.add_post("/", rest.authenticate)
    app.router.add_post("/authenticate", rest.authenticate)
    app.router.add_post("/_sandbox/accounts", create_account)
    app.router.add_routes(admin.routes)
    app.router.add_route("*", r"/{version:v[34]}/{tail:.*}", rest.dispatch)
    app.cleanup_ctx.append(_webhook_delivery)
    return app


async def _webhook_delivery(app: web.Application) -> AsyncIterator[None]:
    """Start the webhook dispatchers with the app and stop their queues (and sessions) with it."""
    await app[SANDBOX].dispatcher.start()  # accounts made later start theirs when made
    yield
    for sandbox in app[ACCOUNTS].all():
        await sandbox.dispatcher.stop()
