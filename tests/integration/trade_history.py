"""What the tests of rewriting a portfolio's history (DeleteTrade, UpdateTrade) share: trades
recorded by the day, what a user and the database read of a portfolio afterwards, a filled
order, a portfolio's row held locked, the races of a rewrite and a sell, and the market's
dividend payer the day after JNJ's ex-date."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select, text
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio import book_states, orm
from services.portfolio.book_states import StoredBook
from services.portfolio.dividends import DividendPayer
from services.portfolio.domain import Book
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.mock_market import MockMarket
from services.portfolio.prices import Prices
from services.portfolio.records import PortfolioKind
from services.portfolio.repository import SplitRepository, TradeRepository
from services.portfolio.trades import Trades
from tests.integration.portfolio_harness import Metadata, PortfolioService, order, wait_for_status
from tests.utc_days import noon, timestamp, utc_today


def days_ago(n: int) -> date:
    return utc_today() - timedelta(days=n)


async def delete(s: PortfolioService, who: Metadata, trade_id: str) -> pb.DeleteTradeResponse:
    reply: pb.DeleteTradeResponse = await s.stub.DeleteTrade(
        pb.DeleteTradeRequest(id=trade_id), metadata=who
    )
    return reply


async def trades_of(s: PortfolioService, who: Metadata, portfolio_id: str) -> list[pb.Trade]:
    reply = await s.stub.ListTrades(
        pb.ListTradesRequest(portfolio_id=portfolio_id, limit=100), metadata=who
    )
    return list(reply.trades)


async def stored_book(s: PortfolioService, portfolio_id: str) -> str:
    """The portfolios.book column as the service left it."""
    db = s.database()
    try:
        async with db.reading() as session:
            query = select(orm.portfolios.c.book).where(orm.portfolios.c.id == portfolio_id)
            found: str = (await session.execute(query)).scalar_one()
            return found
    finally:
        await db.close()


async def replayed_book(s: PortfolioService, portfolio_id: str, kind: PortfolioKind) -> str:
    """The book a replay of the portfolio's trades and splits as stored gives, encoded as the
    service stores one (its last sequence: the highest of the trades)."""
    db = s.database()
    try:
        async with db.reading() as session:
            trades = [r.trade for r in await TradeRepository(session).of(portfolio_id)]
            splits = [r.split for r in await SplitRepository(session).of(portfolio_id)]
    finally:
        await db.close()
    book = Book.replay(trades, splits=splits, policy=kind.policy)
    last = max((t.sequence for t in trades), default=0)
    return book_states.encode(StoredBook(book.state(), last))


def summary(p: pb.Portfolio) -> tuple[str, ...]:
    return (
        p.total_value,
        p.total_cost,
        p.cash,
        p.cost_basis,
        p.realized_gain,
        p.unrealized_gain,
        p.dividends,
        p.fees,
    )


Held = tuple[str, str, str, str, str, list[tuple[str, str]]]


async def figures(
    s: PortfolioService, who: Metadata, portfolio_id: str
) -> tuple[tuple[str, ...], list[Held]]:
    """What a user reads of a portfolio: its totals and its positions with their lots."""
    got = await s.read(who, portfolio_id)
    positions = (
        await s.stub.ListPositions(
            pb.ListPositionsRequest(portfolio_id=portfolio_id, include_closed=True), metadata=who
        )
    ).positions
    held = [
        (
            p.symbol,
            p.quantity,
            p.cost_basis,
            p.average_cost,
            p.realized_gain,
            [(lot.quantity, lot.unit_cost) for lot in p.lots],
        )
        for p in positions
    ]
    return summary(got), held


# A tracking portfolio's history; the buy at [2] is the typo (100 shares, not 10).
HISTORY: list[tuple[str, str, str, str, int]] = [
    ("deposit", "", "5000", "1", 10),
    ("buy", "AAPL", "10", "100", 9),
    ("buy", "AAPL", "100", "105", 8),
    ("buy", "AAPL", "5", "110", 7),
    ("sell", "AAPL", "12", "120", 5),
    ("dividend", "AAPL", "3", "0.5", 4),
    ("buy", "MSFT", "2", "300", 3),
]
TYPO = 2
# A buy of 10 AAPL six days ago, all sold two days ago: the sell needs every share of the buy.
SOLD_OUT: list[tuple[str, str, str, str, int]] = [
    ("buy", "AAPL", "10", "100", 6),
    ("sell", "AAPL", "10", "120", 2),
]


class SoldOut(NamedTuple):
    """A new user's portfolio holding SOLD_OUT, and what a refused change must leave as is."""

    who: Metadata
    portfolio: pb.Portfolio
    buy: pb.Trade
    sell: pb.Trade
    book: str  # as stored
    figures: tuple[tuple[str, ...], list[Held]]  # as the user reads them


async def sold_out(s: PortfolioService) -> SoldOut:
    who, p = await s.user_with_portfolio()
    buy, sell = await recorded(s, who, p.id, SOLD_OUT)
    return SoldOut(who, p, buy, sell, await stored_book(s, p.id), await figures(s, who, p.id))


Row = tuple[str, str, str, str, int | datetime]


async def paper_bought_jnj(
    s: PortfolioService, who: Metadata, shares: str, later: Sequence[Row] = ()
) -> tuple[pb.Portfolio, list[pb.Trade]]:
    """A paper portfolio of `who`'s with 20000 deposited and `shares` JNJ bought at 150 on
    2024-05-01, two weeks before its ex-date, then the `later` rows: the portfolio, and its
    trades as recorded (the deposit first)."""
    paper = await s.portfolio(who, "Paper", kind=pb.PORTFOLIO_KIND_PAPER)
    rows: list[Row] = [
        ("deposit", "", "20000", "1", datetime(2024, 5, 1, 9, tzinfo=UTC)),
        ("buy", "JNJ", shares, "150", datetime(2024, 5, 1, 15, tzinfo=UTC)),
        *later,
    ]
    return paper, await recorded(s, who, paper.id, rows)


async def recorded(
    s: PortfolioService,
    who: Metadata,
    portfolio_id: str,
    rows: Sequence[Row],
) -> list[pb.Trade]:
    """Each row (side, symbol, quantity, price, when) recorded in turn; `when` is a number of
    days ago (at noon) or a moment."""
    return [
        await s.trade(
            who, portfolio_id, side, quantity, price, symbol=symbol, executed_at=executed(when)
        )
        for side, symbol, quantity, price, when in rows
    ]


def executed(when: int | datetime) -> Timestamp:
    return noon(days_ago(when)) if isinstance(when, int) else timestamp(when)


async def a_filled_order(s: PortfolioService) -> tuple[Metadata, pb.Portfolio, pb.Order]:
    """A paper portfolio whose limit buy of KO at twice the price filled at once: its owner,
    the portfolio, the order as filled."""
    who, paper = await s.user_with_portfolio(
        "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
    )
    quote = (await s.stub.GetQuote(pb.GetQuoteRequest(symbol="KO"), metadata=who)).quote
    placed = (
        await s.stub.CreateOrder(
            order(paper.id, limit_price=str(Decimal(quote.price) * 2)), metadata=who
        )
    ).order
    return who, paper, await wait_for_status(s, who, placed.id, pb.ORDER_STATUS_FILLED)


@contextlib.asynccontextmanager
async def portfolio_locked(s: PortfolioService, portfolio_id: str) -> AsyncIterator[None]:
    """PostgreSQL: the portfolio's row held FOR UPDATE (a slow writer) until the block ends."""
    db = s.database()
    try:
        async with db.transaction() as session:
            locked = select(orm.portfolios.c.id).where(orm.portfolios.c.id == portfolio_id)
            await session.execute(locked.with_for_update())
            yield
    finally:
        await db.close()


async def waiting_for_locks(s: PortfolioService, count: int) -> None:
    """Until `count` sessions of the service's database wait for a lock."""
    db = s.database()
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )

    async def waiting() -> int:
        async with db.reading() as session:
            found: int = (await session.execute(query)).scalar_one()
            return found

    try:
        deadline = asyncio.get_running_loop().time() + 10
        while await waiting() < count:
            assert asyncio.get_running_loop().time() < deadline, "no one waits for the lock"
            await asyncio.sleep(0.02)
    finally:
        await db.close()


async def outcome(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def rewrite_with_a_sell_sent_midway(
    s: PortfolioService,
    who: Metadata,
    portfolio_id: str,
    rewrite: Callable[[str], Awaitable[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[grpc.StatusCode, grpc.StatusCode, str]:
    """A buy of 10 AAPL rewritten (deleted, edited) while a sell of its 10 shares is sent just
    after the rewrite has read the history (under the lock), and given time to commit before
    the rewrite writes: the sell must wait for the rewrite. The two outcomes, and the buy's id."""
    (buy,) = await recorded(s, who, portfolio_id, [("buy", "AAPL", "10", "100", 4)])
    original = TradeRepository.of
    sell: asyncio.Future[pb.Trade] | None = None

    async def of(self: TradeRepository, read_id: str) -> Any:
        nonlocal sell
        found = await original(self, read_id)
        if sell is None and read_id == portfolio_id:
            sell = asyncio.ensure_future(
                s.trade(who, portfolio_id, "sell", "10", "110", symbol="AAPL")
            )
            await asyncio.sleep(0.5)
        return found

    monkeypatch.setattr(TradeRepository, "of", of)
    rewritten = await outcome(rewrite(buy.id))
    assert sell is not None
    sold = await outcome(sell)
    monkeypatch.undo()
    return rewritten, sold, buy.id


async def rewrite_and_sell_at_once(
    s: PortfolioService, who: Metadata, portfolio_id: str, rewrite: Callable[[str], Awaitable[Any]]
) -> list[list[tuple[pb.TradeSide.ValueType, str]]]:
    """A buy of 10 AAPL rewritten and a sell of its shares sent at once, either first: one of
    the two succeeds, never both, and the stored book is the history's. The trades each round
    left, (side, quantity) (cleared after)."""
    rounds = []
    for rewrite_first in (True, False):
        (buy,) = await recorded(s, who, portfolio_id, [("buy", "AAPL", "10", "100", 4)])
        calls: list[Awaitable[Any]] = [
            rewrite(buy.id),
            s.trade(who, portfolio_id, "sell", "10", "110", symbol="AAPL"),
        ]
        if not rewrite_first:
            calls.reverse()
        results = await asyncio.gather(*(outcome(c) for c in calls))
        assert sorted(r.name for r in results) == ["FAILED_PRECONDITION", "OK"], results
        left = await trades_of(s, who, portfolio_id)
        rounds.append(sorted((t.side, t.quantity) for t in left))
        book = await replayed_book(s, portfolio_id, PortfolioKind.TRACKING)
        assert await stored_book(s, portfolio_id) == book
        for side in (pb.TRADE_SIDE_SELL, pb.TRADE_SIDE_BUY):  # the buy is needed until then
            for t in left:
                if t.side == side:
                    await delete(s, who, t.id)
    return rounds


@contextlib.asynccontextmanager
async def dividend_payer(s: PortfolioService) -> AsyncIterator[DividendPayer]:
    """The service's dividend payer over the simulated market (seed 7) on 2024-05-16 at noon,
    the day after JNJ went ex-dividend (1.24 a share); its database closed after the block."""
    now = datetime(2024, 5, 16, 12, tzinfo=UTC)
    db = s.database()
    try:
        market = MockMarket(seed=7, clock=lambda: now)
        exchange = Exchange(db, market, clock=lambda: now)
        hub = EventHub(None)
        trades = Trades(db, market, Prices(db, market, exchange), hub, clock=lambda: now)
        yield DividendPayer(db, market, trades, hub, exchange, clock=lambda: now)
    finally:
        await db.close()
