"""Two fixes to aiocometd-ng 0.5.6 (under aiosfstream-ng 0.7.5) on Python ≥ 3.10.

1. ``Client._wait_connection_timeout`` still passes ``loop=`` to ``asyncio.wait_for``, so the
   first HTTP 500 or dropped connection ends the stream with ``TransportTimeoutError`` instead of
   reconnecting. Replaced by the same logic without ``loop=``.
2. ``TransportBase._connect_done`` calls ``future.result()`` on cancelled connect tasks, which
   logs a ``CancelledError`` traceback on every ``close()``. Cancelled futures are ignored.

``apply()`` is idempotent and runs when ``bridge.salesforce.stream`` is imported. The unit test
``tests/unit/test_salesforce_shim.py`` fails when upstream changes what is patched here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiocometd_ng.client import Client
from aiocometd_ng.constants import TransportState
from aiocometd_ng.transports.base import TransportBase

ORIGINAL_WAIT_CONNECTION_TIMEOUT = Client._wait_connection_timeout
ORIGINAL_CONNECT_DONE = TransportBase._connect_done


async def _wait_connection_timeout(self: Client, timeout: float) -> None:  # noqa: ASYNC109
    """Return when the transport fails to get back to CONNECTED within ``timeout``."""
    transport = self._transport
    assert transport is not None
    while True:
        await transport.wait_for_state(TransportState.CONNECTING)
        try:
            await asyncio.wait_for(transport.wait_for_state(TransportState.CONNECTED), timeout)
        except TimeoutError:
            break


def _connect_done(self: TransportBase, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    ORIGINAL_CONNECT_DONE(self, future)


def apply() -> None:
    """Install both patches (once)."""
    Client._wait_connection_timeout = _wait_connection_timeout  # type: ignore[method-assign]
    TransportBase._connect_done = _connect_done  # type: ignore[method-assign]


def applied() -> bool:
    return (
        Client._wait_connection_timeout is _wait_connection_timeout
        and TransportBase._connect_done is _connect_done
    )
