"""API usage as the platform clients observe it, handed to whoever counts it.

A client is built for one tenant and calls its ``UsageSink`` after every API call; the sync
layer stores the counts per tenant, platform and day (table ``api_usage``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.vocabulary import Platform


@dataclass(frozen=True)
class ApiUsage:
    platform: Platform
    calls: int = 1
    used: int | None = None  # the platform's own count, e.g. Sforce-Limit-Info api-usage=used/max
    max: int | None = None


UsageSink = Callable[[ApiUsage], None]


def ignore_usage(_: ApiUsage) -> None:
    """The default sink: counts nothing."""
