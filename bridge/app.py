"""The application factory: ``create_app(settings)`` is what the CLI serves and the tests run.

Resources (database pool, job waker, workers) live on ``cleanup_ctx``: started in order on
start-up, closed in reverse order on shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from aiohttp import web

from bridge.config import Settings
from bridge.db import open_pool
from bridge.metrics import Registry
from bridge.security.vault import Vault
from bridge.sync.jobs import JobQueue, Waker
from bridge.web import health, pages
from bridge.web.keys import METRICS, POOL, QUEUE, ROLE, SETTINGS, VAULT
from bridge.web.middlewares import request_context

Role = Literal["all", "web", "worker"]


def create_app(settings: Settings, role: Role = "all") -> web.Application:
    app = web.Application(middlewares=[request_context])
    app[SETTINGS] = settings
    app[ROLE] = role
    app[METRICS] = Registry()
    app[VAULT] = Vault(settings.secret_keys)
    app.cleanup_ctx.append(_database)
    if role in ("all", "worker"):
        app.cleanup_ctx.append(_workers)
    app.router.add_routes(health.routes)
    pages.setup(app)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_pool(app[SETTINGS]) as pool:
        app[POOL] = pool
        app[QUEUE] = JobQueue(pool)
        yield


async def _workers(app: web.Application) -> AsyncIterator[None]:
    """The job waker; the sync engine registers its workers on it."""
    waker = Waker(app[POOL])
    await waker.start()
    try:
        yield
    finally:
        await waker.stop()
