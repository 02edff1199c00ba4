"""Reading a terminal session's output in the terminal's unit tests: a watcher read up to the
first match of a pattern, failing with the tail of what it saw."""

from __future__ import annotations

import asyncio
import re

from services.terminal.watcher import Watcher
from tests.waiting import WAIT


async def read_until(watcher: Watcher, pattern: bytes) -> bytes:
    """Output up to and including the first match of the regex `pattern`."""
    seen = bytearray()

    async def collect() -> bytes:
        async for chunk in watcher:
            seen.extend(chunk)
            if re.search(pattern, seen):
                return bytes(seen)
        raise AssertionError(f"output ended before {pattern!r}: {bytes(seen)[-500:]!r}")

    try:
        return await asyncio.wait_for(collect(), WAIT)
    except TimeoutError:
        raise AssertionError(f"no {pattern!r} within {WAIT}s: {bytes(seen)[-500:]!r}") from None
