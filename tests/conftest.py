"""Shared fixtures: a real PostgreSQL (embedded, or the server in DATABASE_URL) with a fresh,
migrated database for the test session."""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
import pytest

from bridge.db import EmbeddedPostgres, create_pool, migrate
from bridge.tenants import Tenant, create_tenant
from tests.fixtures.shutdown import bounded, close_test_pool

pytest_plugins = [
    "tests.fixtures.salesforce",
    "tests.fixtures.copernica",
    "tests.fixtures.bridge",
    "tests.fixtures.browser",
    "tests.fixtures.postgres",
]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
async def server_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A PostgreSQL server: $DATABASE_URL when set, else an embedded one for this session."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    folder = tmp_path_factory.mktemp("embedded")
    embedded = EmbeddedPostgres(folder)
    try:
        yield await embedded.start()
    finally:
        # The server is this session's alone: stopping it and removing its folder ends every
        # test database at once (dropping dozens one by one took 45 s under load).
        # Its data goes too, so an immediate stop will do: no shutdown checkpoint of dozens
        # of test databases (that alone took seconds under load).
        await bounded(asyncio.to_thread(_stop_immediately, embedded.pgdata), "the embedded PostgreSQL")
        await bounded(embedded.stop(), "the embedded PostgreSQL's handle")
        # Removing the files of dozens of test databases took up to half a minute under load:
        # a process of its own does it after the run.
        remover = await asyncio.create_subprocess_exec(
            "sh", "-c", f"rm -rf {shlex.quote(str(folder))} &"
        )
        await remover.wait()  # the shell only starts it


def _stop_immediately(pgdata: Path) -> None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        server = psutil.Process(pid)
        server.send_signal(signal.SIGQUIT)  # PostgreSQL's "immediate shutdown"
        server.wait(10)
    except (OSError, ValueError, IndexError, psutil.Error):
        pass  # not running (any more): the package's own stop does the rest


def own_server() -> bool:
    """The test databases live on this session's embedded server (removed as a whole)."""
    return not os.environ.get("DATABASE_URL")


@pytest.fixture(scope="session")
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """One new, empty database on the server, dropped at the end of the session."""
    name = f"bridge_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(server_url, name)
    if not own_server():
        await drop_databases(server_url, [name])


@pytest.fixture(scope="session")
async def database_url(fresh_database: str) -> str:
    """The URL of the session's migrated test database."""
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return fresh_database


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=20)
    yield pool
    await close_test_pool(pool, "the session pool")


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    """A new tenant of its own for each test, so tests do not see each other's rows."""
    return await create_tenant(pool, f"t-{secrets.token_hex(5)}")


@pytest.fixture(scope="session")
async def new_database(server_url: str) -> AsyncIterator:
    """Factory of extra databases for tests that need a whole database to themselves.

    ``await new_database(migrated=True)`` returns the URL of a new database; all are dropped
    at the end of the session.
    """
    made: list[str] = []

    async def make(migrated: bool = True) -> str:
        name = f"bridge_test_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        made.append(name)
        url = with_database(server_url, name)
        if migrated:
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        return url

    yield make
    if not own_server():
        await drop_databases(server_url, made)


async def drop_databases(server_url: str, names: list[str]) -> None:
    """Drop the test databases, several at a time (one after the other, a long session's
    last teardown took more than 10 s)."""
    limit = asyncio.Semaphore(8)

    async def drop(name: str) -> None:
        async with limit:
            admin = await asyncpg.connect(server_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    await asyncio.gather(*(drop(name) for name in names))


# Teardown times: the slowest is printed at the end of every run; with TEARDOWN_LIMIT_S set (the
# under-load run sets 10), a teardown slower than that fails the run.
_teardowns: list[tuple[float, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        _teardowns.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter, exitstatus: int) -> None:  # type: ignore[no-untyped-def]
    if not _teardowns:
        return
    duration, nodeid = max(_teardowns)
    terminalreporter.write_line(f"slowest teardown: {duration:.1f} s ({nodeid})")
    limit = os.environ.get("TEARDOWN_LIMIT_S")
    if limit and duration > float(limit):
        terminalreporter.write_line(f"FAILED: a teardown took more than {limit} s")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    limit = os.environ.get("TEARDOWN_LIMIT_S")
    if limit and _teardowns and max(_teardowns)[0] > float(limit) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
