"""The portfolio service's shared market at two replicas and across a Redis pause, through real
servers: a replica started after the leader serves (and trades at) the shared prices, and a
leader that reloads a lower count after Redis paused past its lease streams its steps on."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from pathlib import Path
from typing import cast

from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from facade.codec import Plans
from facade.outbox import ClientSocket
from facade.portfolio_feed import FeedSocket, PortfolioFeed
from tests.faults.infrastructure import PrivateRedis
from tests.integration.portfolio_harness import PortfolioService, StartPortfolio
from tests.recording_socket import Recorder
from tests.waiting import until


async def test_a_follower_started_after_the_leader_serves_the_shared_price_not_its_own_open(
    start_portfolio: StartPortfolio, redis_url: str
) -> None:
    # Followers answer quotes and trades at market price from the leader's prices. A
    # follower's own (never stepped) simulated market dates its opening quotes at its start,
    # later than the steps published before: it served its opening price until a symbol moved.
    shared = {"REDIS_URL": redis_url, "MOCK_UPDATE_INTERVAL": "8000"}
    async with start_portfolio(**shared) as leader:
        who = await leader.user()
        opening = (
            await leader.stub.GetQuote(pb.GetQuoteRequest(symbol="AAPL"), metadata=who)
        ).quote
        # Wait for the leader's first step to move AAPL.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            moved = (
                await leader.stub.GetQuote(pb.GetQuoteRequest(symbol="AAPL"), metadata=who)
            ).quote
            if moved.price != opening.price:
                break
            assert loop.time() < deadline, "the market never moved"
            await asyncio.sleep(0.1)
        async with start_portfolio(**shared) as follower:
            paper = await follower.portfolio(
                who, "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
            )

            async def price(service: PortfolioService) -> str:
                reply = await service.stub.GetQuote(pb.GetQuoteRequest(symbol="AAPL"), metadata=who)
                quoted: str = reply.quote.price
                return quoted

            # Read between two of the leader's reads that agree: no step (every 8 s) fell in
            # between, so the follower's quote and its trade had one shared price to match.
            for _ in range(5):
                on_leader = await price(leader)
                on_follower = await price(follower)
                # A trade at market price on the follower is priced at the shared price too.
                trade = await follower.trade(who, paper.id, "buy", "1", symbol="AAPL")
                if await price(leader) == on_leader:
                    break
            assert on_follower == on_leader, (
                f"follower {on_follower} (opening {opening.price})",
                f"leader {on_leader}",
            )
            assert Decimal(trade.price) == Decimal(on_leader)


async def test_after_redis_pauses_longer_than_the_lease_the_market_stream_keeps_numbering_on(
    start_portfolio: StartPortfolio, tmp_path: Path
) -> None:
    # Redis stops answering but keeps its data (a pause, a partition): the leader finds its
    # lease lapsed, is refused its next publish, reloads the stored (older) step and leads
    # again from that lower count in a new term. The streams kept the higher number, so every
    # step after it was numbered like the last one of the outage and the facade dropped it.
    server = await asyncio.to_thread(PrivateRedis.start_new, tmp_path / "redis")
    try:
        async with start_portfolio(REDIS_URL=server.url, MOCK_UPDATE_INTERVAL="100") as s:
            feed = PortfolioFeed(Plans())
            recorder = Recorder()
            ann = FeedSocket(cast(ClientSocket, recorder), "ann")
            feed.join(ann)
            feed.follow(ann, ["AAPL", "MSFT", "NVDA", "TSLA"], ())
            call = s.stub.StreamMarket(pb.StreamMarketRequest(), metadata=s.service_token())

            log: list[tuple[float, int, int, int, bool, int]] = []

            async def pump() -> None:
                async for message in call:
                    log.append(
                        (
                            round(asyncio.get_running_loop().time(), 2),
                            message.seq,
                            message.since_seq,
                            message.term,
                            message.resync,
                            len(message.quotes),
                        )
                    )
                    feed.publish_step(message)

            pumping = asyncio.create_task(pump())
            await until(lambda: len(recorder.frames) > 5, "prices before the outage")
            term, paused_at = log[-1][3], len(log)
            server.pause()  # Redis stops answering, keeps its data
            await asyncio.sleep(6.0)  # past the 3 s lease: the outage itself
            server.resume()

            def stepping_on() -> bool:
                return sum(1 for m in log if m[3] > term and m[5]) >= 10

            await until(stepping_on, "ten steps of the new term", within=30)
            pumping.cancel()
            call.cancel()
            assert any(m[4] for m in log[paused_at:]), "the sockets are told of the gap"
            # Every message with quotes is a new step for the facade: one numbered like the
            # message before it (same seq, same term, no resync) is dropped there unseen.
            swallowed = [
                (after[1], after[3])
                for before, after in itertools.pairwise(log)
                if after[5] and after[1] == before[1] and after[3] == before[3] and not after[4]
            ]
            assert swallowed == [], (
                f"{len(swallowed)} steps after Redis came back were numbered like the one"
                f" before them (seq, term): {swallowed}"
            )
    finally:
        await asyncio.to_thread(server.stop)
