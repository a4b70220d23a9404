"""What fails now, per tenant and platform, in words for the status bar and the dashboard:
"Salesforce failing since 10:02 UTC, retrying (attempt 4)".

Two sources write it: a tenant's CDC stream (through the supervisor's listeners) and the sync
jobs (a batch that failed on a platform, a batch that went through). A row lives in table
``platform_health`` from the first failure of an episode until that source works again, so
every process of the bridge (a ``web`` one too) shows the same. Only categories are kept, never
messages: every user of the tenant sees the status bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from bridge.db import QUERIES, Conn
from bridge.vocabulary import Category, Platform

Source = Literal["stream", "jobs"]
NAMES: dict[str, str] = {"salesforce": "Salesforce", "copernica": "Copernica"}
WHAT: dict[str, str] = {  # a few words on the category, after the status line
    "auth": "the credentials are refused",
    "permission": "the integration user lacks a permission",
    "rate_limit": "the API budget is spent or throttled",
    "transient": "the platform does not answer properly",
    "not_configured": "the set-up is not finished",
}


@dataclass(frozen=True)
class Problem:
    platform: Platform
    failing_since: datetime
    attempts: int
    category: str

    @property
    def text(self) -> str:
        since = self.failing_since.astimezone(UTC)
        moment = f"{since:%H:%M}" if since.date() == datetime.now(UTC).date() else f"{since:%Y-%m-%d %H:%M}"
        line = f"{NAMES[self.platform]} failing since {moment} UTC, retrying (attempt {self.attempts})"
        what = WHAT.get(self.category)
        return f"{line}: {what}" if what else line

    def as_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform, "failing_since": self.failing_since.isoformat(),
            "attempts": self.attempts, "category": self.category, "text": self.text,
        }


async def failing(
    conn: Conn, tenant_id: int, platform: Platform, source: Source, category: Category | str,
    attempts: int | None = None,
) -> None:
    """``source`` saw ``platform`` fail again (``attempts``: its own count, else one more)."""
    await conn.execute(QUERIES["platform_failing"], tenant_id, platform, source, category, attempts)


async def working(
    conn: Conn, tenant_id: int, source: Source, platform: Platform | None = None
) -> None:
    """``source`` works again (for ``platform`` only, when given)."""
    await conn.execute(QUERIES["platform_working"], tenant_id, source, platform)


async def problems(conn: Conn, tenant_id: int) -> list[Problem]:
    return [
        Problem(r["platform"], r["failing_since"], r["attempts"], r["category"])
        for r in await conn.fetch(QUERIES["platform_problems"], tenant_id)
    ]
