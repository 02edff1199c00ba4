"""The stored book of a portfolio through the real service, on SQLite and PostgreSQL: concurrent
trades (some back-dated) never oversell and leave the stored book equal to a replay of the
trades; a portfolio without a stored book (data from before it) builds one the first time; an
in-order trade reads no trades and, on PostgreSQL, writes the trade and the book in one
statement; a trade reads its portfolio once, converting into the currency remembered from the
last trade unless the locked row says otherwise."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import grpc
import pytest
from sqlalchemy import update
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio import book_states
from services.portfolio.book_states import StoredBook
from services.portfolio.domain import Book, CashPolicy, Side, Trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.market_data import MarketData
from services.portfolio.orm import portfolios
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.portfolio.trades import TradeDraft, Trades
from services.runtime.db import Database
from tests.integration.portfolio_harness import Metadata, PortfolioService
from tests.utc_days import timestamp


async def stored_and_replayed(
    s: PortfolioService, user_id: str, portfolio_id: str
) -> tuple[StoredBook | None, Book, int]:
    """The portfolio's stored book, a replay of the trades it holds and their highest
    sequence."""
    db = s.database()
    try:
        async with db.reading() as session:
            found = await PortfolioRepository(session).with_book(portfolio_id, user_id, lock=False)
            assert found is not None
            portfolio, stored = found
            trades = [r.trade for r in await TradeRepository(session).of(portfolio_id)]
    finally:
        await db.close()
    last = max((t.sequence for t in trades), default=0)
    return stored, Book.replay(trades, policy=portfolio.kind.policy), last


def exactly(book: Book) -> str:
    return book_states.encode(StoredBook(book.state(), 0))


async def assert_stored_book_is_the_replay(
    s: PortfolioService, user_id: str, portfolio_id: str
) -> Book:
    stored, replayed, last = await stored_and_replayed(s, user_id, portfolio_id)
    assert stored is not None
    assert exactly(Book.resume(stored.state)) == exactly(replayed)
    assert stored.last_sequence == last
    return replayed


async def outcomes(calls: list[Any]) -> tuple[int, int]:
    """How many calls succeeded and how many were refused as FAILED_PRECONDITION (any other
    failure fails the test)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused), refused
    assert all(isinstance(r, (pb.Trade, grpc.aio.AioRpcError)) for r in results), results
    return len(results) - len(refused), len(refused)


async def test_concurrent_trades_some_back_dated_never_oversell_and_leave_the_stored_book_a_replay(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, user_id = await s.account()
    p = await s.portfolio(who)
    start = datetime.now(UTC) - timedelta(days=30)
    await s.trade(who, p.id, "buy", "10", "60", symbol="KO", executed_at=timestamp(start))
    sells_now = [s.trade(who, p.id, "sell", "1", "61", symbol="KO") for _ in range(12)]
    # Dated before every sell above: each is checked against the shares held at its date and
    # must not leave any later sell short.
    back_dated_sells = [
        s.trade(
            who,
            p.id,
            "sell",
            "2",
            "59",
            symbol="KO",
            executed_at=timestamp(start + timedelta(days=1 + i)),
        )
        for i in range(3)
    ]
    back_dated_buys = [
        s.trade(
            who,
            p.id,
            "buy",
            "1",
            "58",
            symbol="KO",
            executed_at=timestamp(start - timedelta(days=1 + i)),
        )
        for i in range(3)
    ]
    other_symbol = [s.trade(who, p.id, "buy", "1", "400", symbol="MSFT") for _ in range(5)]
    (sold_now, _), (sold_back, _), bought_back, bought_other = await asyncio.gather(
        outcomes(sells_now),
        outcomes(back_dated_sells),
        outcomes(back_dated_buys),
        outcomes(other_symbol),
    )
    assert (bought_back, bought_other) == ((3, 0), (5, 0))
    # Only what was held was sold, and everything recorded replays.
    book = await assert_stored_book_is_the_replay(s, user_id, p.id)
    bought = Decimal(10 + 3)
    assert book.quantity("KO") == bought - sold_now - 2 * sold_back
    assert book.quantity("KO") >= 0
    assert book.quantity("MSFT") == 5
    positions = await s.stub.ListPositions(
        pb.ListPositionsRequest(portfolio_id=p.id, include_closed=True), metadata=who
    )
    assert {x.symbol: Decimal(x.quantity) for x in positions.positions} == {
        "KO": book.quantity("KO"),
        "MSFT": Decimal(5),
    }


async def test_twenty_concurrent_sells_of_ten_shares_sell_ten_and_store_the_replayed_book(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, user_id = await s.account()
    p = await s.portfolio(who)
    await s.trade(who, p.id, "buy", "10", "60", symbol="KO")
    assert await outcomes(
        [s.trade(who, p.id, "sell", "1", "61", symbol="KO") for _ in range(20)]
    ) == (10, 10)
    book = await assert_stored_book_is_the_replay(s, user_id, p.id)
    assert book.quantity("KO") == 0
    assert book.realized_gain() == 10


async def test_a_portfolio_without_a_stored_book_builds_it_by_a_replay_the_first_time(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, user_id = await s.account()
    p = await s.portfolio(who, kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="1000")
    await s.trade(who, p.id, "buy", "5", "60", symbol="KO")
    await s.trade(who, p.id, "sell", "2", "70", symbol="KO")
    await s.forget_stored_books()  # as data from before the stored book
    await s.trade(who, p.id, "sell", "1", "65", symbol="KO")
    book = await assert_stored_book_is_the_replay(s, user_id, p.id)
    assert book.policy is CashPolicy.REQUIRE_CASH
    assert (book.quantity("KO"), book.cash) == (Decimal(2), Decimal(1000 - 300 + 140 + 65))
    # A paper portfolio's rules hold on the stored book too.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await s.trade(who, p.id, "buy", "100", "60", symbol="KO")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await assert_stored_book_is_the_replay(s, user_id, p.id)


async def test_portfolios_are_valued_from_the_stored_book_as_from_a_replay(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    p = await s.portfolio(who, kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="10000")
    other = await s.portfolio(who, "Other")
    await s.trade(who, p.id, "buy", "3", "60.5", symbol="KO", fees="1")
    await s.trade(who, p.id, "buy", "2", "400", symbol="MSFT")
    await s.trade(who, p.id, "sell", "1", "70", symbol="KO", fees="0.5")
    await s.trade(who, other.id, "buy", "1.5", "180", symbol="AAPL")

    async def seen() -> tuple[pb.Portfolio, list[pb.Portfolio]]:
        got = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)
        listed = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=who)
        return got.portfolio, list(listed.portfolios)

    from_books = await seen()
    await s.forget_stored_books()  # only a replay can answer now
    assert await seen() == from_books
    assert from_books[0].cash == "9087.00"  # 10000 - (181.50 + 1) - 800 + (70 - 0.50)


async def test_an_in_order_trade_reads_no_trades_and_writes_in_one_statement_on_postgresql(
    portfolio_service: PortfolioService, statements: list[str]
) -> None:
    s = portfolio_service
    who: Metadata = await s.user()
    p = await s.portfolio(who)
    for _ in range(20):  # a history a replay would read
        await s.trade(who, p.id, "buy", "1", "60", symbol="KO")
    statements.clear()
    for _ in range(5):
        await s.trade(who, p.id, "buy", "1", "60", symbol="KO")
    sent = [x for x in statements if not x.startswith("BEGIN")]  # SQLite's explicit BEGIN
    if s.database_url.startswith("postgresql"):
        # The trade's INSERT rides in the book's UPDATE (WITH recorded AS (INSERT ...)).
        expected = ["SELECT", "WITH", "COMMIT"]
    else:
        expected = ["SELECT", "INSERT", "UPDATE", "COMMIT"]
    assert [x.split()[0] for x in sent] == expected * 5, sent
    assert all("FROM trades" not in x for x in sent if x.startswith("SELECT")), sent
    assert all("INSERT INTO trades" in x for x in sent if x.startswith(("WITH", "INSERT")))


class CurrencyStub:
    """An exchange that converts nothing and remembers what it was asked."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.reads = 0
        self.converted_into: list[str] = []

    async def portfolio_currency(self, user_id: str, portfolio_id: str) -> str:
        self.reads += 1
        async with self._db.reading() as session:
            portfolio = await PortfolioRepository(session).get(portfolio_id, user_id)
        assert portfolio is not None
        return portfolio.base_currency

    async def trade_in(self, trade: Trade, currency: str) -> tuple[Trade, None]:
        self.converted_into.append(currency)
        return trade, None


class Listed:
    async def stock(self, symbol: str) -> None:
        return None


class Quiet:
    async def trades_recorded(self, user_id: str, recorded: object) -> None:
        return None


async def test_a_trade_converts_into_the_currency_remembered_and_the_locked_row_corrects_it(
    portfolio_database_url: str,
) -> None:
    db = Database(portfolio_database_url)
    try:
        now = datetime.now(UTC)
        owned = Portfolio("p-1", "u-1", "Main", "", "USD", PortfolioKind.TRACKING, now, now)
        async with db.transaction() as session:
            await PortfolioRepository(session).add(owned)
        exchange = CurrencyStub(db)
        trades = Trades(
            db,
            cast(MarketData, Listed()),
            cast(Prices, None),
            cast(EventHub, Quiet()),
            exchange=cast(Exchange, exchange),
        )
        buy = TradeDraft(Side.BUY, "KO", "1", "60")
        await trades.record("u-1", "p-1", buy)
        await trades.record("u-1", "p-1", buy)
        assert (exchange.reads, exchange.converted_into) == (1, ["USD", "USD"])
        async with db.transaction() as session:  # as another replica would change it
            await session.execute(update(portfolios).values(base_currency="EUR"))
        await trades.record("u-1", "p-1", buy)
        assert (exchange.reads, exchange.converted_into) == (1, ["USD", "USD", "USD", "EUR"])
        async with db.reading() as session:
            assert len(await TradeRepository(session).of("p-1")) == 3
    finally:
        await db.close()
