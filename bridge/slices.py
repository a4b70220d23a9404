"""Long loops on the event loop's thread, taken in slices.

Comparing a page of 2,000 records, typing a Bulk API result page or planning a batch of 200
takes tens of milliseconds of pure Python; every real-time change of the process (and of every
tenant it serves) would wait that long. ``in_slices`` hands the loop a turn between slices.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")

SLICE = 50  # items between two turns of the event loop: a few milliseconds of work at most


async def in_slices(items: Iterable[T], size: int = SLICE) -> AsyncIterator[T]:
    """``items``, with a turn of the event loop after every ``size`` of them."""
    for n, item in enumerate(items, 1):
        yield item
        if n % size == 0:
            await asyncio.sleep(0)
