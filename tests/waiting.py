"""Waiting in tests for what happens in its own time: a condition polled until it holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WAIT = 10.0


async def until(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    """Return once `check()` holds; fail naming `what` if it does not within `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def until_async(
    check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT
) -> None:
    """`until` for a condition that must be awaited: a read from a database, a cache or a server."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
