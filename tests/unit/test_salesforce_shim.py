"""The aiocometd-ng shim: fails when upstream changes what it patches."""

from __future__ import annotations

import asyncio
import inspect

from aiocometd_ng.client import Client
from aiocometd_ng.transports.base import TransportBase

from bridge.salesforce import shim


def test_upstream_still_passes_loop_to_wait_for() -> None:
    # When this fails, aiocometd-ng fixed the bug: drop patch 1 from bridge/salesforce/shim.py.
    source = inspect.getsource(shim.ORIGINAL_WAIT_CONNECTION_TIMEOUT)
    assert "wait_for" in source and "loop=" in source
    params = inspect.signature(shim.ORIGINAL_WAIT_CONNECTION_TIMEOUT).parameters
    assert list(params) == ["self", "timeout"]


def test_upstream_connect_done_still_reads_cancelled_futures() -> None:
    # When this fails, upstream checks for cancellation itself: drop patch 2.
    source = inspect.getsource(shim.ORIGINAL_CONNECT_DONE)
    assert "future.result()" in source and "cancelled" not in source


def test_apply_installs_both_patches_once() -> None:
    shim.apply()
    shim.apply()
    assert shim.applied()
    assert Client._wait_connection_timeout is not shim.ORIGINAL_WAIT_CONNECTION_TIMEOUT
    assert TransportBase._connect_done is not shim.ORIGINAL_CONNECT_DONE


async def test_cancelled_connect_is_ignored() -> None:
    shim.apply()
    future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
    future.cancel()
    TransportBase._connect_done(object(), future)  # type: ignore[arg-type]  # must not touch self
