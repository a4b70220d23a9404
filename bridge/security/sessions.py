"""Server-side login sessions: the cookie holds a random value, the table only its SHA-256.

A session can be revoked (logout, "Terminate session", password change) and expires after
``LIFETIME`` whatever happens; a new session, with a new id, is made at every login.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from bridge.db import QUERIES, Conn

LIFETIME = 12 * 3600.0  # seconds; a working day in the Salesforce tab without logging in again
COOKIE = "bridge_session"


@dataclass(frozen=True)
class Session:
    """Who is logged in: every page and action is scoped to ``tenant_id`` from here."""

    id_hash: str
    user_id: int
    tenant_id: int
    csrf_token: str
    email: str
    role: str
    tenant_slug: str
    tenant_name: str
    salesforce_domain: str | None  # the tenant's org (My Domain), whose pages may frame ours


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def open_session(
    conn: Conn, user_id: int, tenant_id: int, lifetime: float = LIFETIME
) -> str:
    """Store a new session and return the cookie value (shown once, never stored)."""
    value = secrets.token_urlsafe(32)
    await conn.execute(
        QUERIES["create_session"], digest(value), user_id, tenant_id,
        secrets.token_urlsafe(32), lifetime,
    )
    return value


async def find_session(conn: Conn, value: str) -> Session | None:
    """The live session behind a cookie value, or None (unknown, expired or revoked)."""
    if not value or len(value) > 128:
        return None
    row = await conn.fetchrow(QUERIES["live_session"], digest(value))
    return None if row is None else Session(**dict(row))


async def revoke(conn: Conn, id_hash: str) -> None:
    await conn.execute(QUERIES["revoke_session"], id_hash)


async def revoke_others(conn: Conn, user_id: int, keep_id_hash: str = "") -> None:
    """End every session of a user but ``keep_id_hash`` (after a password change or reset)."""
    await conn.execute(QUERIES["revoke_user_sessions"], user_id, keep_id_hash)
