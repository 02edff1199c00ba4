"""The waiting half of a subscriber's queue: a reader sleeps until a writer adds or ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sized


class Doorbell:
    """Wakes the one reader of a queue the caller keeps (a deque, a dict): the writer rings
    after adding and calls `end` when nothing more will come; the reader then drains what is
    left before it stops."""

    def __init__(self) -> None:
        self._rung = asyncio.Event()
        self.ended = False

    def ring(self) -> None:
        self._rung.set()

    def end(self) -> None:
        self.ended = True
        self._rung.set()

    async def wait_for(self, pending: Sized) -> bool:
        """Until `pending` holds something (True) or is empty after the end (False)."""
        while not pending:
            if self.ended:
                return False
            self._rung.clear()
            await self._rung.wait()
        return True
