"""The application factory: ``create_app(settings)`` is what the CLI serves and the tests run.

Resources (database pool, the tenants' platform clients, the sync runtime) live on
``cleanup_ctx``: started in order on start-up, closed in reverse order on shutdown. Role ``web`` serves pages and webhooks, role
``worker`` applies changes and owns streams, role ``all`` does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from aiohttp import web

from bridge.config import Settings
from bridge.copernica.keys import DnsTxtKeys, KeyLookup, SandboxKeys
from bridge.db import open_pool
from bridge.errors import BridgeError
from bridge.metrics import Registry
from bridge.platforms import PlatformClients
from bridge.security.vault import Vault
from bridge.sync.jobs import JobQueue
from bridge.sync.runtime import SyncOptions, SyncRuntime
from bridge.web import health, hooks, pages
from bridge.web.keys import (
    METRICS,
    PLATFORMS,
    POOL,
    QUEUE,
    ROLE,
    SETTINGS,
    SYNC,
    VAULT,
    WEBHOOK_KEYS,
)
from bridge.web.middlewares import request_context

log = logging.getLogger("bridge")

Role = Literal["all", "web", "worker"]


def create_app(
    settings: Settings, role: Role = "all", sync_options: SyncOptions | None = None
) -> web.Application:
    app = web.Application(middlewares=[request_context])
    app[SETTINGS] = settings
    app[ROLE] = role
    app[METRICS] = Registry()
    app[VAULT] = Vault(settings.secret_keys)
    app[WEBHOOK_KEYS] = webhook_keys(settings)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_platforms)
    if role in ("all", "worker"):
        app.cleanup_ctx.append(_sync_runtime(sync_options or SyncOptions()))
    app.router.add_routes(health.routes)
    app.router.add_routes(hooks.routes)
    pages.setup(app)
    return app


def webhook_keys(settings: Settings) -> KeyLookup:
    """Where webhook signature keys come from: DNS, as Copernica publishes them, or the sandbox."""
    if settings.copernica_sandbox_url:
        return SandboxKeys(settings.copernica_sandbox_url)

    async def resolve_txt(name: str) -> Sequence[str]:
        import dns.asyncresolver

        answer = await dns.asyncresolver.resolve(name, "TXT")
        return [b"".join(record.strings).decode() for record in answer]

    return DnsTxtKeys(resolve_txt)


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_pool(app[SETTINGS]) as pool:
        app[POOL] = pool
        app[QUEUE] = JobQueue(pool)
        yield


async def _platforms(app: web.Application) -> AsyncIterator[None]:
    """The platform clients of every tenant, shared by pages and workers; closed last. The
    sync runtime writes their API call counts every few seconds; the last ones at shutdown."""
    async with PlatformClients(app[POOL], app[VAULT], app[SETTINGS]) as platforms:
        app[PLATFORMS] = platforms
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await platforms.usage.flush(app[POOL])


def _sync_runtime(options: SyncOptions):  # type: ignore[no-untyped-def]
    async def run(app: web.Application) -> AsyncIterator[None]:
        runtime = SyncRuntime(
            app[POOL], app[QUEUE], app[VAULT], app[SETTINGS], options, platforms=app[PLATFORMS]
        )
        app[SYNC] = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return run


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        raise BridgeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    log.info("listening on http://%s:%s", host, port)
    return runner


async def until_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
