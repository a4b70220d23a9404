"""How far a platform's clock is from ours, read from the ``Date`` header of its replies.

Both platform clients watch every reply on their own HTTP session (logins included), so
``bridge doctor`` can tell a skewed clock, which breaks OAuth JWT assertions and Copernica's
short-lived tokens, from a wrong credential.
"""

from __future__ import annotations

import time
from collections import deque
from email.utils import parsedate_to_datetime

import aiohttp

KEPT = 25  # the most recent replies a clock remembers


class PlatformClock:
    """The offset of one platform's clock from ours (positive: the platform is ahead)."""

    def __init__(self) -> None:
        self.offsets: deque[float] = deque(maxlen=KEPT)
        self._last_header, self._last_stamp = "", 0.0

    async def watch(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Client middleware of a session whose replies this clock reads."""
        response = await handler(request)
        self.observe(response.headers.get("Date"))
        return response

    def observe(self, date_header: str | None) -> None:
        if not date_header:
            return
        if date_header != self._last_header:  # a Date holds for a second: read once
            try:
                self._last_stamp = parsedate_to_datetime(date_header).timestamp()
            except (TypeError, ValueError):
                return
            self._last_header = date_header
        self.offsets.append(self._last_stamp - time.time())

    @property
    def offset(self) -> float | None:
        """The median offset of the replies seen (None: no reply carried a Date)."""
        if not self.offsets:
            return None
        ordered = sorted(self.offsets)
        return ordered[len(ordered) // 2]
