"""The coalescer of round trips: callers that come while a call is on its way share the next
one, each gets its own answer in order, and one bad argument fails only its own caller."""

from __future__ import annotations

import asyncio

import pytest

from bridge.db import Coalescer


class Squares:
    """A round trip that can be held open, counting the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()  # a round trip is on its way
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self, numbers: list[int]) -> list[int]:
        self.batches.append(numbers)
        self.started.set()
        await self.open.wait()
        if -1 in numbers:
            raise ValueError("no squares of -1 here")
        return [n * n for n in numbers]


async def held_open(run: Squares, squares: Coalescer[int, int], n: int) -> asyncio.Future[int]:
    """``squares(n)`` on its way, its round trip held open until ``let_through``."""
    run.open.clear()
    first = asyncio.ensure_future(squares(n))
    await run.started.wait()
    return first


async def let_through(run: Squares) -> None:
    await asyncio.sleep(0)  # the callers started meanwhile join the queue
    run.open.set()


async def test_callers_during_a_round_trip_share_the_next_and_get_their_own_answers() -> None:
    run = Squares()
    squares = Coalescer(run)
    first = await held_open(run, squares, 2)
    rest = [asyncio.ensure_future(squares(n)) for n in range(3, 9)]
    await let_through(run)
    assert await first == 4
    assert await asyncio.gather(*rest) == [n * n for n in range(3, 9)]
    assert run.batches == [[2], list(range(3, 9))]
    assert await squares(10) == 100  # alone again: a batch of one, at once
    assert run.batches[-1] == [10]


async def test_a_bad_argument_fails_its_own_caller_only() -> None:
    run = Squares()
    squares = Coalescer(run)
    first = await held_open(run, squares, 1)
    rest = [asyncio.ensure_future(squares(n)) for n in (2, -1, 3)]
    await let_through(run)
    assert await first == 1
    answers = await asyncio.gather(*rest, return_exceptions=True)
    assert answers[0] == 4 and answers[2] == 9
    assert isinstance(answers[1], ValueError)
    assert run.batches[1:] == [[2, -1, 3], [2], [-1], [3]]  # the batch, then one at a time


async def test_a_database_gone_fails_the_whole_batch_at_once() -> None:
    batches: list[list[int]] = []

    async def gone(numbers: list[int]) -> list[int]:
        batches.append(numbers)
        await asyncio.sleep(0)
        raise ConnectionRefusedError("the database is not there")

    calls = Coalescer(gone)
    answers = await asyncio.gather(*(calls(n) for n in range(4)), return_exceptions=True)
    assert all(isinstance(a, ConnectionRefusedError) for a in answers)
    assert len(batches) <= 2  # not tried again one by one


async def test_a_caller_that_gave_up_is_left_out() -> None:
    run = Squares()
    squares = Coalescer(run)
    first = await held_open(run, squares, 1)
    impatient = asyncio.ensure_future(squares(5))
    patient = asyncio.ensure_future(squares(6))
    await asyncio.sleep(0)
    impatient.cancel()
    await let_through(run)
    assert (await first, await patient) == (1, 36)
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert run.batches == [[1], [6]]
