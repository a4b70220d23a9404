"""The application factory: ``create_app(settings)`` is what the CLI serves and the tests run.

Resources (database pool, the tenants' platform clients, the sync runtime) live on
``cleanup_ctx``: started in order on start-up, closed in reverse order on shutdown. Role ``web`` serves pages and webhooks, role
``worker`` applies changes and owns streams, role ``all`` does both.

Shutting down is bounded: requests get ``SHUTDOWN_TIMEOUT`` seconds to finish, the runtime
lets its batches finish or hands them back, every HTTP session and the pool are closed within
their own limits, so a stopping process is gone within 10 s whatever is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from aiohttp import web

from bridge.config import Settings
from bridge.copernica.keys import DnsTxtKeys, KeyLookup, SandboxKeys
from bridge.db import open_pool
from bridge.errors import BridgeError
from bridge.metrics import Metrics
from bridge.platforms import PlatformClients
from bridge.security.vault import Vault
from bridge.supervise import Supervisor
from bridge.sync.ingest import WebhookIntake
from bridge.sync.jobs import JobQueue
from bridge.sync.runtime import SyncOptions, SyncRuntime
from bridge.web import health, hooks, pages
from bridge.web.keys import (
    INTAKE,
    METRICS,
    PLATFORMS,
    POOL,
    QUEUE,
    RECORD_COUNTS,
    ROLE,
    SETTINGS,
    SUPERVISOR,
    SYNC,
    VAULT,
    WEBHOOK_KEYS,
)
from bridge.web.middlewares import request_context

log = logging.getLogger("bridge")

Role = Literal["all", "web", "worker"]
SHUTDOWN_TIMEOUT = 2.0  # seconds requests in flight get to finish when the process stops


def create_app(
    settings: Settings, role: Role = "all", sync_options: SyncOptions | None = None
) -> web.Application:
    app = web.Application(middlewares=[request_context])
    app[SETTINGS] = settings
    app[ROLE] = role
    app[RECORD_COUNTS] = {}
    app[METRICS] = Metrics()
    app[SUPERVISOR] = Supervisor(app[METRICS])
    app[VAULT] = Vault(settings.secret_keys)
    app[WEBHOOK_KEYS] = webhook_keys(settings)
    app.cleanup_ctx.append(_event_loop_watch)
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


async def _event_loop_watch(app: web.Application) -> AsyncIterator[None]:
    """``bridge_event_loop_lag_seconds`` in every role: how busy this process is."""
    app[SUPERVISOR].spawn("event_loop", app[METRICS].watch_event_loop)
    yield
    await app[SUPERVISOR].cancel("event_loop", within=1.0)


async def _database(app: web.Application) -> AsyncIterator[None]:
    async with open_pool(app[SETTINGS]) as pool:
        app[POOL] = pool
        app[QUEUE] = JobQueue.configured(pool, app[SETTINGS])
        app[INTAKE] = WebhookIntake(pool)
        yield


async def _platforms(app: web.Application) -> AsyncIterator[None]:
    """The platform clients of every tenant, shared by pages and workers; closed last. The
    sync runtime writes their API call counts every few seconds; the last ones at shutdown."""
    platforms = PlatformClients(app[POOL], app[VAULT], app[SETTINGS])
    platforms.usage.listeners.append(app[METRICS].api_call)
    app[PLATFORMS] = platforms
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await platforms.usage.flush(app[POOL])
        try:
            async with asyncio.timeout(2.0):
                await platforms.close()
        except TimeoutError:
            log.warning("platform clients did not close within 2 s")


def _sync_runtime(options: SyncOptions):  # type: ignore[no-untyped-def]
    async def run(app: web.Application) -> AsyncIterator[None]:
        runtime = SyncRuntime(
            app[POOL], app[QUEUE], app[VAULT], app[SETTINGS], options, platforms=app[PLATFORMS],
            metrics=app[METRICS], supervisor=app[SUPERVISOR],
        )
        app[SYNC] = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    return run


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        raise BridgeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    log.info("listening on http://%s:%s", host, port)
    return runner


def signal_event() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def until_signal(stop: asyncio.Event | None = None) -> None:
    """Return on SIGINT or SIGTERM."""
    await (stop or signal_event()).wait()
    log.info("stopping")


def arm_exit_deadline(seconds: float) -> threading.Timer:
    """Leave the process after ``seconds`` even if shutting down hangs somewhere (a stopping
    process must be gone in bounded time; its jobs' leases bring their work back). The timer
    runs on a daemon thread: a process that ends in time ends it too."""

    def force() -> None:
        log.error("shutdown took longer than %.1f s: exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer


def waiting_app(status: dict[str, str]) -> web.Application:
    """What ``bridge serve`` answers while its database is not there yet: ``/healthz`` 200 (the
    process lives), ``/readyz`` and everything else 503 with ``status["reason"]``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "database": "waiting"})

    async def unavailable(_: web.Request) -> web.Response:
        return web.json_response(
            {"status": "unavailable", "database": f"waiting: {status.get('reason', '')}"},
            status=503, headers={"Retry-After": "5"},
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", unavailable)
    return app
