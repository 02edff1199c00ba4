"""Streams followed for good: whenever one ends or fails it is opened again, after a backoff
(with jitter) that doubles while it keeps failing and starts over once it is live again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TypeVar

import grpc
from prometheus_client import Counter

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 10.0
# A stream that has not been live yet is only waited for (an upstream still starting, as with
# `make run`), said at INFO, for this many seconds; after that, and once it was live, a close
# is a WARNING.
STARTING_GRACE = 30.0

T = TypeVar("T")


async def follow_forever(
    open_stream: Callable[[asyncio.Event], AsyncGenerator[T, None]],
    handle: Callable[[T], Awaitable[None] | None],
    *,
    name: str,
    live: asyncio.Event | None = None,
    restarts: Counter | None = None,
    log_extra: Mapping[str, object] | None = None,
    backoff_max: float = BACKOFF_MAX,
) -> None:
    """Hand each message of `open_stream(live)` to `handle` (its awaitable, if it returns one,
    awaited before the next message) until cancelled. The stream sets `live` once
    nothing sent to it can be missed (a subscription confirmed); it is cleared while the stream
    is down. A failure of `handle` reopens the stream too: a bug in one message must not end
    the stream for good. `backoff_max`: the longest wait between two tries."""
    live = live or asyncio.Event()
    first = backoff = min(BACKOFF_FIRST, backoff_max)
    loop = asyncio.get_running_loop()
    waiting_until: float | None = loop.time() + STARTING_GRACE  # None once it has been live
    last_failure: str | None = None  # the last failure's type and message
    while True:
        outcome = "ended"
        try:
            async with contextlib.aclosing(open_stream(live)) as stream:
                async for message in stream:
                    if (handling := handle(message)) is not None:
                        await handling
        except grpc.aio.AioRpcError as error:
            outcome = error.code().name
        except Exception as error:
            # One traceback per kind of failure: a dependency that stays down (Redis for a
            # cache subscription) fails alike on every try, several times a second at the
            # shorter ceilings; the repeats are said in one line.
            failure = f"{type(error).__name__}: {error}"
            again = failure == last_failure and not live.is_set()
            log.log(
                logging.WARNING if again else logging.ERROR,
                "stream failed",
                exc_info=not again,
                extra={"stream": name, **(log_extra or {}), "error": failure},
            )
            last_failure = failure
            outcome = "INTERNAL"
        if live.is_set():
            backoff = first
            waiting_until = None
        live.clear()
        delay = backoff * random.uniform(0.5, 1.0)
        starting = waiting_until is not None and loop.time() < waiting_until
        log.log(
            logging.INFO if starting else logging.WARNING,
            "stream not open yet; retrying" if starting else "stream closed; reopening",
            extra={
                "stream": name,
                **(log_extra or {}),
                "code": outcome,
                "retryIn": round(delay, 3),
            },
        )
        if restarts is not None:
            restarts.inc()
        await asyncio.sleep(delay)
        backoff = min(backoff * 2, backoff_max)
