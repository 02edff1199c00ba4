"""The one clock: what time it is, for code that takes a clock so tests can hold time still."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

# A wall clock (aware UTC datetimes) and a monotonic one (seconds), as code takes them.
Clock = Callable[[], datetime]
Monotonic = Callable[[], float]


def utc_now() -> datetime:
    """Now, in UTC, time-zone aware."""
    return datetime.now(UTC)


monotonic: Monotonic = time.monotonic
