"""A long loop on the event loop's thread lets other work in between its slices."""

import asyncio

from bridge.slices import in_slices


async def test_other_tasks_run_between_the_slices_of_a_long_loop() -> None:
    done = 0
    seen_while_looping: list[int] = []

    async def other() -> None:
        while True:
            seen_while_looping.append(done)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(other())
    await asyncio.sleep(0)  # the watcher starts
    seen_while_looping.clear()
    async for _ in in_slices(range(200), size=50):
        done += 1  # no await of its own: only in_slices gives the loop a turn
    watcher.cancel()
    assert [n for n in seen_while_looping if n < 200] == [50, 100, 150]
