"""Ending a background task: cancel it and wait until it has really stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How long a cancelled task may take before it is cancelled again.
AGAIN_AFTER = 1.0


async def cancel_and_wait(
    task: asyncio.Future[Any] | None, *, again_after: float = AGAIN_AFTER
) -> None:
    """Cancel `task` (nothing for None) and wait for it to finish its cleanup; the cancellation
    it ends with is not raised here (an error it ends with instead is).

    A cancellation can be lost inside a task: on Python 3.11 `asyncio.wait_for` drops one that
    arrives as its inner call completes, and a library may turn one into its own error, which a
    loop that retries on errors then survives. Awaiting such a task once would wait forever (a
    replica's beat kept a test run waiting in CI), so it is cancelled again until it ends.
    """
    if task is None:
        return
    task.cancel()
    while not task.done():
        await asyncio.wait({task}, timeout=again_after)
        if not task.done():
            task.cancel()
    if not task.cancelled():
        task.result()  # an error it ended with instead is raised, as awaiting it would


async def cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """`cancel_and_wait` for each of `tasks` at once; what they end with is not raised."""
    await asyncio.gather(*(cancel_and_wait(task) for task in tasks), return_exceptions=True)
