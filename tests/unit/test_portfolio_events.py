"""The event hub without a server: a slow subscriber loses events but never holds up the
others, events seen twice (their own, back through pub/sub) are delivered once, and closing
the hub ends every stream."""

from __future__ import annotations

import asyncio
import logging

import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.events import ID_BYTES, EventHub
from services.runtime.local_cache import InProcessCache


def event(n: int) -> pb.StreamPortfolioEventsResponse:
    return pb.StreamPortfolioEventsResponse(
        user_id="u-1", trade=pb.Trade(id=f"t-{n}", quantity=str(n))
    )


async def test_a_slow_subscriber_loses_what_does_not_fit_and_the_others_get_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = EventHub(None, queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    received: list[str] = []

    async def read_fast() -> None:
        async for e in fast:
            received.append(e.trade.id)

    reader = asyncio.create_task(read_fast())
    for n in range(10):
        await asyncio.wait_for(hub.publish(event(n)), 0.1)  # never waits on a subscriber
        await asyncio.sleep(0)
    await hub.close()
    await reader
    assert received == [f"t-{n}" for n in range(10)]
    assert [e.trade.id async for e in slow] == ["t-0", "t-1", "t-2"]
    assert slow.dropped == 7
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["slow event subscriber: dropping events"]


async def test_an_event_that_comes_back_is_delivered_once() -> None:
    cache = InProcessCache()
    hub = EventHub(cache)
    await hub.start()
    subscription = hub.subscribe()
    try:
        await hub.publish(event(1))
        # Another replica's event, through the same channel.
        await cache.publish("portfolio-events", b"x" * ID_BYTES + event(2).SerializeToString())
        await asyncio.sleep(0.05)
    finally:
        await hub.close()
    assert [e.trade.id async for e in subscription] == ["t-1", "t-2"]


async def test_an_unsubscribed_stream_ends_and_receives_nothing_more() -> None:
    hub = EventHub(None)
    subscription = hub.subscribe()
    hub.unsubscribe(subscription)
    await hub.publish(event(1))
    assert [e async for e in subscription] == []
    assert hub.subscribers == 0
