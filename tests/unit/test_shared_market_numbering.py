"""The shared market's price stream as the facade reads it, across a change of leader: a new
leader that counts from below what a replica had reached numbers the stream afresh (a resync),
and the steps after it reach the sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

from stockfolio.portfolio.v1 import portfolio_pb2

from facade.codec import Plans
from facade.outbox import ClientSocket
from facade.portfolio_feed import FeedSocket, PortfolioFeed
from services.portfolio.market_data import Quote
from services.portfolio.messages import quote_message
from services.portfolio.mock_market import MockMarket
from services.portfolio.shared_market import STATE_KEY, SharedMarket, Step
from services.runtime.local_cache import InProcessCache
from tests.recording_socket import Recorder

T0 = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def aapl(price: str, n: int) -> Quote:
    return Quote("AAPL", Decimal(price), Decimal(0), Decimal(0), T0 + timedelta(seconds=n), "mock")


async def test_a_replica_that_takes_a_new_leaders_lower_count_streams_its_steps_on() -> None:
    # A new leader numbering from lower (after a Redis outage during which the old leader kept
    # stepping alone) is a gap every socket is told of, and prices go on. The streams kept the
    # highest number seen (150), so the facade took every later step as delivered already and
    # the prices froze until the new leader's count passed it.
    cache = InProcessCache()
    market = SharedMarket(MockMarket(seed=7, interval=3600), cache, lease=0.6)
    stream = market.ticks()  # the facade's StreamMarket to this replica
    feed = PortfolioFeed(Plans())
    recorder = Recorder()
    socket = FeedSocket(cast(ClientSocket, recorder), "ann")
    feed.join(socket)
    feed.follow(socket, ["AAPL"], ())

    async def pump() -> None:
        read = await stream.batch()
        feed.publish_step(
            portfolio_pb2.StreamMarketResponse(
                quotes=map(quote_message, read.quotes),
                seq=read.seq,
                since_seq=read.since,
                resync=read.resync,
                term=read.term,
            )
        )

    # Term 1: this replica led alone while Redis was away, up to step 150.
    for seq in range(1, 151):
        await market._received(Step(1, seq, (aapl(f"{100 + seq}.00", seq),)).encode())
        await pump()
    assert recorder.messages()[-1]["price"] == "250.00"
    # Redis is back; another replica took the lease (term 2) from the stored step 101.
    await cache.set(STATE_KEY, Step(2, 102, (aapl("201.00", 200),), resync=True).encode())
    await market._received(Step(2, 102, (aapl("201.00", 200),)).encode())
    assert (market.term, market.seq) == (2, 102)  # the replica itself took the new market
    await pump()
    # The new leader's next steps.
    for seq in (103, 104):
        await market._received(Step(2, seq, (aapl(f"{100 + seq}.50", 200 + seq),)).encode())
        await pump()
    seen = [(m["type"], m.get("price")) for m in recorder.messages()[150:]]
    assert seen == [
        ("resync", None),  # the sockets are told of the gap
        ("price", "201.00"),
        ("price", "203.50"),
        ("price", "204.50"),
    ], seen
    await market.close()
