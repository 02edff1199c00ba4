"""The internal streams through the real server: portfolio events (trades, revaluations) and
market ticks, reachable with a service token only; events cross replicas through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
from sqlalchemy import select
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.orm import price_history
from tests.integration.portfolio_harness import PortfolioService, StartPortfolio, collecting
from tests.utc_days import utc_today
from tests.waiting import until


async def test_a_service_receives_each_trade_made_after_it_subscribed(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, user_id = await s.account()
    p = await s.portfolio(who)
    async with collecting(s) as events:
        trade = await s.trade(who, p.id, "buy", "2", "60", symbol="KO")
        await s.stub.ImportTrades(
            pb.ImportTradesRequest(
                portfolio_id=p.id,
                csv="date,side,quantity\n2024-01-02,deposit,5\n2024-01-03,deposit,6\n",
            ),
            metadata=who,
        )
        await until(lambda: len(events) >= 3, "three events")
    assert [e.WhichOneof("event") for e in events] == ["trade", "trade", "trade"]
    assert {e.user_id for e in events} == {user_id}
    assert events[0].trade == trade
    assert [e.trade.quantity for e in events[1:]] == ["5", "6"]


async def test_a_rejected_trade_publishes_nothing(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    async with collecting(s) as events:
        with contextlib.suppress(grpc.aio.AioRpcError):
            await s.trade(who, p.id, "sell", "1", "60", symbol="KO")
        await s.trade(who, p.id, "deposit", "7")
        await until(lambda: len(events) >= 1, "an event")
    assert [e.trade.side for e in events] == [pb.TRADE_SIDE_DEPOSIT]


async def test_the_calculator_publishes_values_and_records_todays_prices(
    start_portfolio: StartPortfolio,
) -> None:
    first_day = utc_today()
    async with start_portfolio(PORTFOLIO_REVALUE_INTERVAL="0.2") as s:
        who, user_id = await s.account()
        p = await s.portfolio(who)
        await s.trade(who, p.id, "buy", "2", "60", symbol="KO")
        await s.portfolio(who, name="Cash only", initial_cash="10")
        async with collecting(s) as events:
            await until(
                lambda: any(e.HasField("portfolio_value") for e in events), "a portfolio value"
            )
        values = [e for e in events if e.HasField("portfolio_value")]
        assert {e.portfolio_value.portfolio_id for e in values} == {p.id}  # only with positions
        value = values[0]
        assert value.user_id == user_id
        # 2 KO at the market's 62.40, bought for 120 brought in.
        assert (value.portfolio_value.total_value, value.portfolio_value.total_gain_loss) == (
            "124.80",
            "4.80",
        )
        # Today's prices are recorded after the values are published: wait for them.
        db = s.database()
        rows: list[Any] = []
        try:
            for _ in range(500):
                async with db.reading() as session:
                    rows = list((await session.execute(select(price_history))).all())
                if rows:
                    break
                await asyncio.sleep(0.02)
        finally:
            await db.close()
        # The close of the day the price was observed. The market stands still here: its one
        # quote of KO, read at the server's start, is the one recorded, and its day is the
        # test's (or the next, when midnight UTC passed since the test began).
        quote = (await s.stub.GetQuote(pb.GetQuoteRequest(symbol="KO"), metadata=who)).quote
        observed = quote.time.ToDatetime(tzinfo=UTC).date()
        assert observed in {first_day, utc_today()}
        assert [(r.symbol, r.day, r.close) for r in rows] == [("KO", observed, Decimal("62.40"))]


async def test_the_market_stream_delivers_ticks(start_portfolio: StartPortfolio) -> None:
    async with start_portfolio(MOCK_UPDATE_INTERVAL="20") as s:
        call = s.stub.StreamMarket(pb.StreamMarketRequest(), metadata=s.service_token())
        steps = []
        async for step in call:
            assert not step.HasField("quote")  # the deprecated one-quote form is not sent
            steps.append(list(step.quotes))
            if len(steps) == 3:
                break
        call.cancel()
    ticks = [q for quotes in steps for q in quotes]
    assert all(q.symbol and Decimal(q.price) > 0 and q.source == "mock" for q in ticks)
    assert all(q.change_percent for q in ticks)
    # Each message is one whole step: several symbols, each once, all at the step's time.
    for quotes in steps:
        assert len(quotes) > 1
        assert len({q.symbol for q in quotes}) == len(quotes)
        assert len({q.time.ToJsonString() for q in quotes}) == 1


async def test_a_user_token_on_the_internal_streams_is_permission_denied(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    for call in (
        s.stub.StreamMarket(pb.StreamMarketRequest(), metadata=who),
        s.stub.StreamPortfolioEvents(pb.StreamPortfolioEventsRequest(), metadata=who),
    ):
        try:
            async for _ in call:
                raise AssertionError("a user received an internal stream")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_events_reach_every_replica_once_through_redis(
    start_portfolio: StartPortfolio, redis_url: str
) -> None:
    async with (
        start_portfolio(REDIS_URL=redis_url) as a,
        start_portfolio(REDIS_URL=redis_url) as b,
    ):
        who = await a.user()
        p = await a.portfolio(who)
        async with collecting(a) as on_a, collecting(b) as on_b:
            trade = await a.trade(who, p.id, "deposit", "5")
            # A trade on b reaches a only through Redis, after the echo of a's own trade.
            later = await b.trade(who, p.id, "deposit", "1")
            await until(lambda: len(on_a) >= 2 and len(on_b) >= 2, "two events on each replica")
        assert [e.trade for e in on_a] == [trade, later]  # its own event, back from Redis, skipped
        assert sorted(e.trade.id for e in on_b) == sorted([trade.id, later.id])


async def test_with_two_replicas_the_revaluation_runs_on_the_market_leader_only(
    start_portfolio: StartPortfolio, redis_url: str
) -> None:
    interval = 0.2
    shared = {"REDIS_URL": redis_url, "PORTFOLIO_REVALUE_INTERVAL": str(interval)}
    async with start_portfolio(**shared) as first, start_portfolio(**shared) as second:
        who, _ = await first.account()
        p = await first.portfolio(who)
        await first.trade(who, p.id, "buy", "2", "60", symbol="KO")

        def values() -> list[datetime]:
            return sorted(
                e.portfolio_value.time.ToDatetime()
                for e in events
                if e.HasField("portfolio_value") and e.portfolio_value.portfolio_id == p.id
            )

        async with collecting(second) as events:
            await until(lambda: len(values()) >= 8, "eight values", within=60)
        times = values()
    # One revaluer starts a round an interval after the last one ended: its values are at least
    # an interval apart. Two, rounds taking T each, would split their gaps: among eight values
    # two would be at most T / 2 apart, under 0.9 intervals unless a round took 0.8 of one.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) > interval * 0.9, gaps
