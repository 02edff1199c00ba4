"""services/runtime/streams.py: a stream followed for good is reopened after it ends or fails,
with a backoff that grows while it keeps failing and starts over once it was live; a stream not
live yet is waited for quietly (INFO) for a while, a live one that closes is a WARNING."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import pytest

from services.runtime import streams


async def test_a_stream_is_reopened_with_a_backoff_that_starts_over_once_it_was_live(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(streams, "BACKOFF_FIRST", 0.01)
    live_at_open: list[bool] = []
    handled: list[int] = []
    fifth = asyncio.Event()

    async def stream(live: asyncio.Event) -> AsyncGenerator[int, None]:
        live_at_open.append(live.is_set())
        attempt = len(live_at_open)
        if attempt <= 3:
            raise ConnectionError("not there yet")
        live.set()
        yield attempt
        if attempt == 5:
            fifth.set()
            await asyncio.Event().wait()  # open until cancelled

    def handle(message: int) -> None:
        handled.append(message)
        if message == 4:
            raise ValueError("a bug in the handler")  # reopens the stream too

    with caplog.at_level(logging.INFO, logger=streams.__name__):
        follower = asyncio.create_task(streams.follow_forever(stream, handle, name="test"))
        await asyncio.wait_for(fifth.wait(), 5)
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower

    assert live_at_open == [False] * 5  # `live` is cleared while the stream is down
    assert handled == [4, 5]
    closed = [r for r in caplog.records if "retryIn" in r.__dict__]
    # Not live yet: only waited for (an upstream starting), at INFO; closed after it was: WARNING.
    assert [(r.levelname, r.getMessage()) for r in closed] == [
        ("INFO", "stream not open yet; retrying"),
        ("INFO", "stream not open yet; retrying"),
        ("INFO", "stream not open yet; retrying"),
        ("WARNING", "stream closed; reopening"),
    ]
    # A failure the same as the last, while down, is one line; the first of each kind, and one
    # after the stream was live, carry their traceback.
    failed = [r for r in caplog.records if r.getMessage() == "stream failed"]
    assert [(r.levelname, r.__dict__["error"], bool(r.exc_info)) for r in failed] == [
        ("ERROR", "ConnectionError: not there yet", True),
        ("WARNING", "ConnectionError: not there yet", False),
        ("WARNING", "ConnectionError: not there yet", False),
        ("ERROR", "ValueError: a bug in the handler", True),
    ]
    codes = [r.__dict__["code"] for r in closed]
    delays = [r.__dict__["retryIn"] for r in closed]
    assert codes == ["INTERNAL"] * 4
    ceilings = [0.01, 0.02, 0.04, 0.01]  # doubling while down; anew after a live stream
    assert all(
        ceiling / 2 - 0.001 <= d <= ceiling for d, ceiling in zip(delays, ceilings, strict=True)
    )


async def test_an_async_handler_is_awaited_in_order_and_backoff_max_caps_the_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(streams, "BACKOFF_FIRST", 0.01)
    opened: list[int] = []
    handled: list[str] = []
    done = asyncio.Event()

    async def stream(live: asyncio.Event) -> AsyncGenerator[int, None]:
        opened.append(1)
        if len(opened) <= 4:
            raise ConnectionError("the cache is away")
        live.set()
        for message in (1, 2):
            yield message
        done.set()
        await asyncio.Event().wait()

    async def handle(message: int) -> None:
        handled.append(f"start {message}")
        await asyncio.sleep(0.01)  # the next message waits for this one
        handled.append(f"end {message}")

    with caplog.at_level(logging.INFO, logger=streams.__name__):
        follower = asyncio.create_task(
            streams.follow_forever(stream, handle, name="test", backoff_max=0.02)
        )
        await asyncio.wait_for(done.wait(), 5)
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower

    assert handled == ["start 1", "end 1", "start 2", "end 2"]
    delays = [r.__dict__["retryIn"] for r in caplog.records if "retryIn" in r.__dict__]
    ceilings = [0.01, 0.02, 0.02, 0.02]  # doubling, but never past backoff_max
    assert all(
        ceiling / 2 - 0.001 <= d <= ceiling for d, ceiling in zip(delays, ceilings, strict=True)
    )
    assert len(delays) == 4
