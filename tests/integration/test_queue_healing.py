"""The queue's part in self-healing, against a real PostgreSQL: a stopping worker hands its batch
back, saving working credentials brings back exactly what that platform held, and a database
that cannot be reached is one line naming the server, never its password."""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from bridge.db import DatabaseUnavailable, check_database, describe_target, unavailable
from bridge.sync.jobs import Failure, JobQueue, requeue_fixed
from bridge.sync.reports import record_error
from tests.fixtures.bridge import free_port


@pytest.fixture
def kind() -> str:
    return f"test-{secrets.token_hex(4)}"


async def _jobs(pool, kind):
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key, state, attempts, payload, locked_by FROM jobs WHERE kind = $1 ORDER BY id",
            kind,
        )
    return [dict(r) for r in rows]


async def test_a_released_batch_waits_again_untried_and_merges_into_newer_changes(pool, tenant, kind):
    queue = JobQueue(pool)
    for key in ("a", "b"):
        await queue.enqueue(tenant.id, kind, key, {"old": key})
    jobs = await queue.claim(kind, 10)
    await queue.enqueue(tenant.id, kind, "b", {"new": "b"})  # a newer change of b waits
    await queue.release(jobs)
    after = {j["key"]: j for j in await _jobs(pool, kind)}
    assert len(await _jobs(pool, kind)) == 2  # b merged into its newer twin
    assert after["a"]["state"] == "waiting" and after["a"]["attempts"] == 0
    assert after["a"]["locked_by"] is None
    assert after["b"]["state"] == "waiting" and after["b"]["payload"] == {"old": "b", "new": "b"}
    assert len(await queue.claim(kind, 10)) == 2  # ready at once


async def test_requeue_fixed_brings_back_what_that_platform_held_and_resolves_its_reports(
    pool, tenant, kind
):
    queue = JobQueue(pool)
    held = {}
    for key, failure in {
        "cp-auth": Failure("Invalid access token", "auth", True, platform="copernica"),
        "sf-auth": Failure("INVALID_LOGIN", "auth", True, platform="salesforce"),
        "cp-data": Failure("bad value", "validation", True, platform="copernica"),
        "no-db": Failure("no Copernica database chosen yet", "not_configured", True),
    }.items():
        job_id = await queue.enqueue(tenant.id, kind, key, {"k": key})
        [job] = await queue.claim(kind)
        assert await queue.fail(job, failure) == "held"
        async with pool.acquire() as conn:
            await record_error(conn, tenant.id, category=failure.category, operation="update",
                               message=failure.message, record_id=key, job_id=job_id,
                               platform=failure.platform)
        held[key] = job_id
    await queue.enqueue(tenant.id, kind, "cp-auth", {"newer": True})  # a newer change waits

    async with pool.acquire() as conn:
        assert await requeue_fixed(conn, tenant.id, "copernica") == 2
        reports = {r["record_id"]: r["status"] for r in await conn.fetch(
            "SELECT record_id, status FROM error_reports WHERE tenant_id = $1", tenant.id)}
    states = {j["key"]: j for j in await _jobs(pool, kind)}
    assert states["cp-auth"]["state"] == "waiting"
    assert states["cp-auth"]["payload"] == {"k": "cp-auth", "newer": True}  # merged
    assert states["no-db"]["state"] == "waiting" and states["no-db"]["attempts"] == 0
    assert states["sf-auth"]["state"] == "held"  # Salesforce's credentials were not saved
    assert states["cp-data"]["state"] == "held"  # not a credentials problem
    assert reports == {"cp-auth": "resolved", "no-db": "resolved", "sf-auth": "open",
                       "cp-data": "open"}
    async with pool.acquire() as conn:  # nothing left to do: nothing happens
        assert await requeue_fixed(conn, tenant.id, "copernica") == 0


async def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://bridge:s3cret@127.0.0.1:{port}/bridge"
    with pytest.raises(DatabaseUnavailable) as caught:
        await check_database(url)
    text = str(caught.value)
    assert text == (f"cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused "
                    "(is PostgreSQL running?)")
    assert caught.value.transient and "s3cret" not in text
    assert describe_target("postgresql://u:p@db.example/x") == "db.example:5432"
    assert describe_target("postgresql://postgres:@/postgres?host=/tmp/pg") == "/tmp/pg (Unix socket)"
    refused = unavailable(url, asyncpg.InvalidPasswordError("password authentication failed"))
    assert refused is not None and not refused.transient  # waiting would not help
