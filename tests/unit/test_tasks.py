"""cancel_and_wait: a task is waited for until it has really ended."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.tasks import cancel_and_wait


async def test_a_task_that_loses_its_cancellation_is_cancelled_again() -> None:
    turns: list[str] = []

    async def beat() -> None:
        # As a retry loop behaves when a library turned the cancellation into its own error.
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                if turns:
                    raise
                turns.append("lost")

    task = asyncio.create_task(beat())
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await cancel_and_wait(task, again_after=0.05)
    assert task.cancelled()
    assert turns == ["lost"]


async def test_an_error_the_task_ends_with_is_raised() -> None:
    async def failing() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            raise RuntimeError("cleanup failed")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_nothing_and_a_finished_task_are_fine() -> None:
    await cancel_and_wait(None)
    done = asyncio.create_task(asyncio.sleep(0, result=7))
    await done
    await cancel_and_wait(done)
    assert done.result() == 7
