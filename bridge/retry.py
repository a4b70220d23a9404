"""The one retry policy: exponential back-off with full jitter, capped.

Used by the HTTP clients (transient errors) and the job queue (failed jobs) alike.
delay(n) = uniform(base * 2**(n-1) * (1 - jitter), base * 2**(n-1)), capped at ``cap``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base: float = 0.5  # seconds before the second attempt (before jitter)
    cap: float = 300.0  # no single wait is longer than this
    jitter: float = 0.5  # fraction of the delay that is randomised (0 = exact)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        spread = raw * self.jitter
        return raw - spread * (rng or random).random()

    def gives_up(self, attempt: int) -> bool:
        """True when ``attempt`` failed attempts mean: stop retrying."""
        return attempt >= self.max_attempts
