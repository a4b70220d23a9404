"""How far a platform's clock is from ours, read from the ``Date`` header of its replies.

Both platform clients watch every reply on their own HTTP session (logins included), so
``bridge doctor`` can tell a skewed clock, which breaks OAuth JWT assertions and Copernica's
short-lived tokens, from a wrong credential.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from email.utils import parsedate_to_datetime
from types import SimpleNamespace

import aiohttp

KEPT = 25  # the most recent replies a clock remembers


class PlatformClock:
    """The offset of one platform's clock from ours (positive: the platform is ahead)."""

    def __init__(self) -> None:
        self.offsets: deque[float] = deque(maxlen=KEPT)

    def trace(self) -> aiohttp.TraceConfig:
        """A trace config for an ``aiohttp.ClientSession`` whose replies this clock reads."""
        config = aiohttp.TraceConfig()
        config.on_request_end.append(self._on_request_end)
        return config

    def observe(self, date_header: str | None) -> None:
        if not date_header:
            return
        with contextlib.suppress(TypeError, ValueError):
            self.offsets.append(parsedate_to_datetime(date_header).timestamp() - time.time())

    async def _on_request_end(
        self, _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        self.observe(params.response.headers.get("Date"))

    @property
    def offset(self) -> float | None:
        """The median offset of the replies seen (None: no reply carried a Date)."""
        if not self.offsets:
            return None
        ordered = sorted(self.offsets)
        return ordered[len(ordered) // 2]
