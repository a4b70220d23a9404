"""The ``bridge`` command: serve, demo, sandbox, migrate, tenant, user, rotate-keys, generate-key."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg
import uvloop
from tqdm import tqdm

from bridge import logs
from bridge.app import arm_exit_deadline, create_app, signal_event, start_site, waiting_app
from bridge.config import Settings
from bridge.db import (
    CONNECT_TIMEOUT,
    QUERIES,
    DatabaseUnavailable,
    Pool,
    check_database,
    database_url,
    migrate,
    open_pool,
    unavailable_as_error,
    wait_for_database,
)
from bridge.errors import BridgeError, ConfigError
from bridge.security.vault import DEMO_KEY_FILE, Vault, demo_keys, generate_key
from bridge.tenants import create_tenant, create_user
from bridge.vocabulary import webhook_url

T = TypeVar("T")

log = logging.getLogger("bridge")

SANDBOXES = ("salesforce", "copernica")
EXIT_DEADLINE = 9.5  # seconds from SIGTERM to the end of `bridge serve`, whatever is in flight


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:  # each sandbox parses its own options
        return _sandbox(argv[1:])
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level, settings.log_format)
        return int(args.run(settings, args) or 0)
    except BridgeError as exc:
        print(f"bridge: error: {exc}", file=sys.stderr)
        return 2
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError) as exc:
        print(f"bridge: error: lost the connection to PostgreSQL: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Real-time two-way bridge between Salesforce and Copernica."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    serve = sub.add_parser("serve", help="run the bridge (web pages, webhooks, workers, streams)")
    serve.add_argument("--role", choices=("all", "web", "worker"), default="all")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, help="default: $PORT")
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="everything on one machine, with sandboxes and a demo tenant")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, help="default: $PORT")
    demo.add_argument("--salesforce-port", type=int, default=8801)
    demo.add_argument("--copernica-port", type=int, default=8802)
    demo.add_argument("--contacts", type=int, default=25, help="contacts in the Salesforce sandbox")
    demo.add_argument(
        "--traffic", type=float, default=0.0, metavar="R",
        help="make R random edits per second on both sides, to watch the sync",
    )
    demo.set_defaults(run=_demo)

    sub.add_parser("sandbox", help="run an emulator: bridge sandbox salesforce|copernica --help")

    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(run=_migrate)

    tenant = sub.add_parser("tenant", help="create or list tenants").add_subparsers(
        dest="action", required=True, metavar="action"
    )
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument("slug", help="short name: lower-case letters, digits and dashes")
    create.add_argument("--name", help="display name (default: the slug)")
    create.set_defaults(run=_tenant_create)
    tenant.add_parser(
        "list", help="list tenants, with the process that streams each and its queue"
    ).set_defaults(run=_tenant_list)

    user = sub.add_parser("user", help="create users").add_subparsers(
        dest="action", required=True, metavar="action"
    )
    ucreate = user.add_parser("create", help="create a user of a tenant")
    ucreate.add_argument("tenant", help="tenant slug")
    ucreate.add_argument("email")
    ucreate.add_argument("--role", choices=("admin", "user"), default="admin")
    ucreate.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    ucreate.set_defaults(run=_user_create)

    sync = sub.add_parser("sync", help="compare both sides of a tenant now and apply what differs")
    sync.add_argument("tenant", help="tenant slug")
    sync.add_argument(
        "--full", action="store_true",
        help="compare every record (default: what changed since the last run)",
    )
    sync.set_defaults(run=_sync)

    doctor = sub.add_parser("doctor", help="check a tenant's set-up, item by item, with fixes")
    doctor.add_argument("tenant", help="tenant slug")
    doctor.set_defaults(run=_doctor)

    sub.add_parser(
        "rotate-keys", help="re-encrypt all credentials under the first BRIDGE_SECRET_KEYS key"
    ).set_defaults(run=_rotate_keys)
    sub.add_parser("generate-key", help="print a new secret key").set_defaults(
        run=lambda *_: print(generate_key())
    )
    return parser


def _sandbox(argv: list[str]) -> int:
    if not argv or argv[0] not in SANDBOXES:
        print(f"usage: bridge sandbox {{{','.join(SANDBOXES)}}} [options]", file=sys.stderr)
        return 2
    logs.configure()
    return int(_sandbox_module(f"{argv[0]}.cli").main(argv[1:]))


def _sandbox_module(name: str) -> Any:
    """A module of the emulators' package, which production installations do not have."""
    try:
        return importlib.import_module(f"sandbox.{name}")
    except ModuleNotFoundError as missing:
        if missing.name != "sandbox":
            raise
        raise BridgeError(
            "the emulators are not installed: `make demo` in a checkout installs them "
            "(or `pip install -e ./sandbox` there)"
        ) from None


def _require_keys(settings: Settings) -> Settings:
    if not settings.secret_keys:
        raise ConfigError(
            "BRIDGE_SECRET_KEYS is not set: `serve` needs it to keep credentials encrypted "
            "(make one with `bridge generate-key`)"
        )
    return settings


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop's event loop: its sockets and timers in C cost the bridge about a
    third less CPU per change than asyncio's own loop (bench sync: 2.25 → 1.57 ms)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _with_db(work: Callable[[Pool], Awaitable[int | None]], settings: Settings) -> int:
    async def run() -> int | None:
        async with open_pool(settings) as pool:
            return await work(pool)

    return int(run_loop(run()) or 0)


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    async def run() -> None:
        async with database_url(settings) as url:
            with unavailable_as_error(url):
                conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
            try:
                applied = await migrate(conn)
            finally:
                await conn.close()
        print(f"applied: {', '.join(applied)}" if applied else "database is up to date")

    run_loop(run())
    return 0


def _tenant_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(pool: Pool) -> None:
        tenant = await create_tenant(pool, args.slug, args.name)
        print(f"created tenant {tenant.slug} (id {tenant.id})")
        print(f"Copernica webhook URL: {webhook_url(settings.public_url, tenant.hook_token)}")

    return _with_db(work, settings)


def _tenant_list(settings: Settings, _: argparse.Namespace) -> int:
    async def work(pool: Pool) -> None:
        async with pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["list_tenants"])
            streams = {r["id"]: r for r in await conn.fetch(QUERIES["stream_owners"])}
        print(
            f"{'id':>4}  {'slug':<20} {'direction':<9} {'auto':<5} {'users':>5} {'queue':>7}  "
            f"{'stream owner':<28} name"
        )
        for r in rows:
            stream = streams.get(r["id"])
            owner = (stream and stream["stream_owner"]) or "-"
            depth = stream["queue_depth"] if stream else 0
            print(
                f"{r['id']:>4}  {r['slug']:<20} {r['direction']:<9} "
                f"{'yes' if r['auto_sync'] else 'no':<5} {r['users']:>5} {depth:>7}  "
                f"{owner:<28} {r['name']}"
            )

    return _with_db(work, settings)


def _user_create(settings: Settings, args: argparse.Namespace) -> int:
    generated = not args.password_stdin
    password = secrets.token_urlsafe(12) if generated else sys.stdin.readline().rstrip("\n")

    async def work(pool: Pool) -> None:
        await create_user(pool, args.tenant, args.email, password, args.role)
        print(f"created user {args.email} of tenant {args.tenant}")
        if generated:
            print(f"password (shown once): {password}")

    return _with_db(work, settings)


def _sync(settings: Settings, args: argparse.Namespace) -> int:
    """Run one reconcile in this process (sharing the queue with any running bridge) and show
    its progress until it ends."""
    from bridge.sync.jobs import JobQueue
    from bridge.sync.runs import get_run, request_sync
    from bridge.sync.runtime import SyncOptions, SyncRuntime

    settings = _keys_for_cli(settings)

    async def work(pool: Pool) -> int:
        async with pool.acquire() as conn:
            tenant = await conn.fetchrow(QUERIES["tenant_by_slug"], args.tenant)
        if tenant is None:
            raise BridgeError(f"no tenant named {args.tenant!r} (see `bridge tenant list`)")
        queue = JobQueue.configured(pool, settings)
        runtime = SyncRuntime(
            pool, queue, Vault(settings.secret_keys), settings,
            SyncOptions(streams=False, schedule=False, poll_interval=0.5),
        )
        run_id = await request_sync(queue, tenant["id"], "full" if args.full else "reconcile", "cli")
        await runtime.start()
        try:
            with tqdm(unit=" records", file=sys.stderr, dynamic_ncols=True) as bar:
                while True:
                    async with pool.acquire() as conn:
                        run = await get_run(conn, tenant["id"], run_id)
                    assert run is not None
                    bar.total = run.total
                    bar.n = run.done
                    bar.set_postfix_str((run.message or run.state)[:40], refresh=False)
                    bar.refresh()
                    if run.state in ("done", "failed"):
                        break
                    await asyncio.sleep(0.25)
            print(f"{run.state}: {run.message}")
            return 0 if run.state == "done" else 1
        finally:
            await runtime.stop()

    return _with_db(work, settings)


def _keys_for_cli(settings: Settings) -> Settings:
    """The configured keys, or the demo's generated key when run beside the demo."""
    if not settings.secret_keys and (settings.data_dir / DEMO_KEY_FILE).exists():
        settings = dataclasses.replace(settings, secret_keys=demo_keys(settings.data_dir))
    return _require_keys(settings)


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.doctor import run

    settings = _keys_for_cli(settings)
    return _with_db(lambda pool: run(pool, settings, args.tenant), settings)


def _rotate_keys(settings: Settings, _: argparse.Namespace) -> int:
    vault = Vault(_require_keys(settings).secret_keys)

    async def work(pool: Pool) -> None:
        count = await vault.rotate(pool)
        print(f"re-encrypted {count} credential record(s) under the current key")

    return _with_db(work, settings)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then stop within ``EXIT_DEADLINE`` seconds. A configured
    database that is not up yet is waited for (one line per attempt) while ``/healthz``
    answers."""
    settings = _require_keys(settings)
    host, port = args.host, args.port or settings.port

    async def run() -> None:
        stop = signal_event()
        if settings.database_url and not await _database_or_stop(settings.database_url, host, port, stop):
            return
        runner = await start_site(create_app(settings, role=args.role), host, port)
        # What start-up made lives as long as the process: out of the collector's sight, its
        # full passes (every few seconds under load) stop stalling the event loop ~25 ms each.
        gc.collect()
        gc.freeze()
        try:
            await stop.wait()
            log.info("stopping")
        finally:
            arm_exit_deadline(EXIT_DEADLINE)  # until the very end of the process
            await runner.cleanup()

    run_loop(run())
    return 0


async def _database_or_stop(url: str, host: str, port: int, stop: asyncio.Event) -> bool:
    """True once the database answers; False when told to stop first. Meanwhile a small app
    on the port answers ``/healthz`` (and 503 for the rest)."""
    try:
        await check_database(url)
        return True
    except DatabaseUnavailable as problem:
        if not problem.transient:
            raise
        status = {"reason": problem.reason}
    runner = await start_site(waiting_app(status), host, port)

    def say(line: str) -> None:
        status["reason"] = line
        log.warning("%s", line)

    waiting = asyncio.create_task(wait_for_database(url, say=say))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            log.info("stopping before the database answered")
            return False
        waiting.result()  # a reason that waiting cannot cure: raise it
        return True
    finally:
        for task in (waiting, stopping):
            task.cancel()
        await asyncio.gather(waiting, stopping, return_exceptions=True)
        await runner.cleanup()


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.secret_keys:
        settings = dataclasses.replace(settings, secret_keys=demo_keys(settings.data_dir))
    run_loop(_sandbox_module("demo").run(settings, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
