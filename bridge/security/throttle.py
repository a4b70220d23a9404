"""Login throttling, per address and client, stored in PostgreSQL so every process agrees.

After ``PER_CLIENT`` failed logins for one address from one client within ``WINDOW``, that client
waits ``LOCKOUT`` after its last failure; after ``PER_ADDRESS`` failures for the address from any
client, everyone does (a slow distributed guess). A successful login clears the client's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.db import QUERIES, Conn

WINDOW = 15 * 60.0
LOCKOUT = 15 * 60.0
PER_CLIENT = 5
PER_ADDRESS = 20


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0  # seconds until the next attempt is allowed


def judge(
    from_client: int,
    for_address: int,
    last_from_client: datetime | None,
    last_for_address: datetime | None,
    now: datetime,
) -> Verdict:
    """Pure rule: may another attempt be made now?"""
    waits = []
    if from_client >= PER_CLIENT and last_from_client is not None:
        waits.append(LOCKOUT - (now - last_from_client).total_seconds())
    if for_address >= PER_ADDRESS and last_for_address is not None:
        waits.append(LOCKOUT - (now - last_for_address).total_seconds())
    wait = max(waits, default=0.0)
    return Verdict(True) if wait <= 0 else Verdict(False, wait)


async def check(conn: Conn, email: str, client: str) -> Verdict:
    row = await conn.fetchrow(QUERIES["login_failures"], email, client, WINDOW)
    assert row is not None  # an aggregate: always one row
    return judge(
        row["from_client"], row["for_address"], row["last_from_client"],
        row["last_for_address"], datetime.now(UTC),
    )


async def failed(conn: Conn, email: str, client: str) -> None:
    await conn.execute(QUERIES["record_login_failure"], email, client)
    await conn.execute(QUERIES["forget_old_login_failures"], WINDOW + LOCKOUT)


async def succeeded(conn: Conn, email: str, client: str) -> None:
    await conn.execute(QUERIES["clear_login_failures"], email, client)
