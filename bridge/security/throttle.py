"""Login throttling, stored in PostgreSQL so every process agrees.

Every attempt is counted *before* its password is checked, inside one transaction that holds an
advisory lock on the address and one on the client: parallel guesses queue up behind each other
instead of slipping through together. An attempt stays counted as a failure unless it succeeds.
Failures make the next attempt wait, doubling from one second, never a hard lock:

- the same address from the same client: ``FREE_PAIR`` attempts, then 1 s, 2 s, 4 s … up to
  ``CAP`` (a guesser at one account);
- one client over any addresses: ``FREE_CLIENT`` attempts, then the same (password spraying);
- one address from any client: ``FREE_ADDRESS`` attempts, then doubling up to ``ADDRESS_CAP``:
  someone else's failures delay a victim by a minute at most, they never lock them out;
- every login together: past ``GLOBAL_PER_MINUTE`` failures in a minute, each attempt waits a
  second (a ceiling on what a botnet gets).

Refused attempts are not counted: knocking on a closed door does not make it close longer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.db import QUERIES, Conn

WINDOW = 15 * 60.0  # seconds a failure counts
CAP = 15 * 60.0
ADDRESS_CAP = 60.0
FREE_PAIR = 5
FREE_CLIENT = 20
FREE_ADDRESS = 20
GLOBAL_PER_MINUTE = 1000


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0  # seconds until the next attempt is allowed


def backoff(failures: int, free: int, cap: float) -> float:
    """Seconds the next attempt waits after ``failures`` counted ones."""
    return 0.0 if failures < free else min(cap, 2.0 ** min(failures - free, 30))


def judge(counts: Mapping[str, Any], now: datetime) -> Verdict:
    """Pure rule: may another attempt be made now, given the counts of ``login_attempts``?"""
    waits = [1.0 if int(counts["last_minute"] or 0) >= GLOBAL_PER_MINUTE else 0.0]
    for scope, free, cap in (("pair", FREE_PAIR, CAP), ("client", FREE_CLIENT, CAP),
                             ("address", FREE_ADDRESS, ADDRESS_CAP)):
        last = counts[f"{scope}_last"]
        if isinstance(last, datetime):
            delay = backoff(int(counts[scope] or 0), free, cap)
            waits.append(delay - (now - last).total_seconds())
    wait = max(waits)
    return Verdict(True) if wait <= 0 else Verdict(False, wait)


async def attempt(conn: Conn, email: str, client: str) -> Verdict:
    """Decide on a login attempt and, when it may go ahead, count it (as a failure for now)."""
    async with conn.transaction():
        await conn.execute(QUERIES["lock_login_attempts"], email, client)
        row = await conn.fetchrow(QUERIES["login_attempts"], email, client, WINDOW)
        assert row is not None  # an aggregate: always one row
        verdict = judge(dict(row), datetime.now(UTC))
        if verdict.allowed:
            await conn.execute(QUERIES["record_login_attempt"], email, client)
    return verdict


async def succeeded(conn: Conn, email: str, client: str) -> None:
    """The attempt was right: this client's failures for the address are forgiven."""
    await conn.execute(QUERIES["clear_login_failures"], email, client)
    await conn.execute(QUERIES["forget_old_login_failures"], WINDOW)
