"""The portfolio service through its real gRPC server, on SQLite and PostgreSQL: portfolios,
trades of every side, positions, validation, concurrency, and market data.

Prices are the simulated market's opening prices, held still (AAPL 189.50, KO 62.40, MSFT
415.30), so every figure below is computed by hand.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.domain import present_ratio
from tests.integration.portfolio_harness import PortfolioService
from tests.rpc_errors import expect_error, reason, violations
from tests.utc_days import timestamp


async def trades_of(service: PortfolioService, who: object, portfolio_id: str) -> list[pb.Trade]:
    reply = await service.stub.ListTrades(
        pb.ListTradesRequest(portfolio_id=portfolio_id, limit=100), metadata=who
    )
    return list(reply.trades)


# --- portfolios --------------------------------------------------------------------------------


async def test_a_user_creates_lists_gets_updates_and_deletes_their_portfolio(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    created = await s.portfolio(
        who, description="Long term", currency="eur", kind=pb.PORTFOLIO_KIND_PAPER
    )
    assert (created.name, created.description, created.currency) == (
        "Main",
        "Long term",
        "EUR",
    )
    assert created.kind == pb.PORTFOLIO_KIND_PAPER
    assert (created.total_value, created.cash, created.total_cost) == ("0.00", "0.00", "0.00")
    assert created.total_gain_loss_percent == ""  # nothing put in: no return to state

    listed = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=who)
    assert [p.id for p in listed.portfolios] == [created.id]
    assert listed.pagination.total == 1

    updated = await s.stub.UpdatePortfolio(
        pb.UpdatePortfolioRequest(id=created.id, name="Renamed", currency="GBP"),
        metadata=who,
    )
    assert (updated.portfolio.name, updated.portfolio.description) == ("Renamed", "Long term")
    assert updated.portfolio.currency == "GBP"
    got = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=created.id), metadata=who)
    assert got.portfolio.name == "Renamed"
    assert got.portfolio.updated_at.ToDatetime() >= got.portfolio.created_at.ToDatetime()

    await s.stub.DeletePortfolio(pb.DeletePortfolioRequest(id=created.id), metadata=who)
    await expect_error(
        s.stub.GetPortfolio(pb.GetPortfolioRequest(id=created.id), metadata=who),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_new_portfolio_defaults_to_tracking_in_usd_and_initial_cash_is_a_deposit(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    created = await s.portfolio(who, initial_cash="2500.50")
    assert (created.kind, created.currency) == (pb.PORTFOLIO_KIND_TRACKING, "USD")
    assert (created.cash, created.total_value, created.total_cost) == (
        "2500.50",
        "2500.50",
        "2500.50",
    )
    (deposit,) = await trades_of(s, who, created.id)
    assert (deposit.side, deposit.quantity, deposit.amount) == (
        pb.TRADE_SIDE_DEPOSIT,
        "2500.5",
        "2500.50",
    )


async def test_another_users_portfolio_is_not_found_everywhere(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    owner, stranger = await s.user(), await s.user()
    mine = await s.portfolio(owner, initial_cash="100")
    calls = [
        s.stub.GetPortfolio(pb.GetPortfolioRequest(id=mine.id), metadata=stranger),
        s.stub.UpdatePortfolio(
            pb.UpdatePortfolioRequest(id=mine.id, name="Mine now"), metadata=stranger
        ),
        s.stub.DeletePortfolio(pb.DeletePortfolioRequest(id=mine.id), metadata=stranger),
        s.stub.CreateTrade(
            pb.CreateTradeRequest(
                portfolio_id=mine.id, side=pb.TRADE_SIDE_WITHDRAWAL, quantity="100"
            ),
            metadata=stranger,
        ),
        s.stub.ListTrades(pb.ListTradesRequest(portfolio_id=mine.id), metadata=stranger),
        s.stub.ListPositions(pb.ListPositionsRequest(portfolio_id=mine.id), metadata=stranger),
        s.stub.GetPerformance(pb.GetPerformanceRequest(portfolio_id=mine.id), metadata=stranger),
    ]
    for call in calls:
        error = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert reason(error) == "PORTFOLIO_NOT_FOUND"
    export = s.stub.ExportPortfolio(
        pb.ExportPortfolioRequest(portfolio_id=mine.id), metadata=stranger
    )
    try:
        async for _ in export:
            raise AssertionError("a stranger received export data")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
    listed = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=stranger)
    assert list(listed.portfolios) == []
    got = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=mine.id), metadata=owner)
    assert (got.portfolio.name, got.portfolio.cash) == ("Main", "100.00")


async def test_portfolio_fields_are_checked_naming_the_field(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    cases = [
        (pb.CreatePortfolioRequest(name="  "), "name"),
        (pb.CreatePortfolioRequest(name="x" * 101), "name"),
        (pb.CreatePortfolioRequest(name="Main", currency="dollars"), "currency"),
        (pb.CreatePortfolioRequest(name="Main", initial_cash="-5"), "initialCash"),
        (pb.CreatePortfolioRequest(name="Main", initial_cash="lots"), "initialCash"),
        (pb.CreatePortfolioRequest(name="Main", kind=7), "kind"),  # type: ignore[arg-type]
    ]
    for request, field in cases:
        error = await expect_error(
            s.stub.CreatePortfolio(request, metadata=who), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert [f for f, _ in violations(error)] == [field], request


async def test_portfolios_are_listed_in_pages(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who = await s.user()
    ids = [(await s.portfolio(who, name=f"P{i}")).id for i in range(5)]
    first = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(page=1, limit=2), metadata=who)
    third = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(page=3, limit=2), metadata=who)
    assert [p.id for p in first.portfolios] == ids[:2]
    assert [p.id for p in third.portfolios] == ids[4:]
    assert (first.pagination.total, first.pagination.total_pages) == (5, 3)


# --- trades of every side ----------------------------------------------------------------------


async def test_every_side_moves_cash_positions_and_totals_as_computed_by_hand(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(initial_cash="10000")
    await s.trade(who, p.id, "buy", "10", "150", symbol="AAPL", fees="5")
    await s.trade(who, p.id, "buy", "5", "160", symbol="aapl")
    sold = await s.trade(who, p.id, "sell", "12", "170", symbol="AAPL", fees="4")
    dividend = await s.trade(who, p.id, "dividend", "3", "0.25", symbol="AAPL")
    await s.trade(who, p.id, "withdrawal", "1000", fees="1")
    await s.trade(who, p.id, "deposit", "500")
    assert (sold.amount, sold.fees, sold.price_source) == ("2040.00", "4.00", "")
    assert dividend.amount == "0.75"

    got = (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)).portfolio
    # Cash: 10000 - (1500 + 5) - 800 + (2040 - 4) + 0.75 - (1000 + 1) + 500 = 9230.75
    assert got.cash == "9230.75"
    # FIFO: the sell of 12 takes lot 1 (10 for 1505) and 2 of lot 2 (320): cost 1825,
    # proceeds 2036, realized 211. Left: 3 shares of lot 2 at 160 = 480.
    assert (got.cost_basis, got.realized_gain) == ("480.00", "211.00")
    # 3 AAPL at the market's 189.50 = 568.50, unrealized 88.50.
    assert got.unrealized_gain == "88.50"
    assert got.total_value == "9799.25"  # 9230.75 + 568.50
    assert got.total_cost == "9500.00"  # 10000 + 500 deposited - 1000 withdrawn
    assert got.total_gain_loss == "299.25"  # = 211 + 88.50 + 0.75 dividends - 1 withdrawal fee
    assert got.total_gain_loss_percent == "3.15"  # 299.25 / 9500
    assert (got.dividends, got.fees) == ("0.75", "10.00")  # fees: 5 + 4 + 1

    (aapl,) = got.positions
    assert (aapl.symbol, aapl.quantity, aapl.average_cost) == ("AAPL", "3", "160.00")
    assert (aapl.price, aapl.market_value, aapl.dividends) == ("189.50", "568.50", "0.75")
    assert aapl.unrealized_gain_percent == "18.44"  # 88.50 / 480
    assert aapl.weight == present_ratio(Decimal("568.50") / Decimal("9799.25"))
    assert [(lot.quantity, lot.unit_cost, lot.cost) for lot in aapl.lots] == [
        ("3", "160.00", "480.00")
    ]


async def test_positions_by_average_cost_and_closed_positions_on_request(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "10", "150", symbol="AAPL", fees="5")
    await s.trade(who, p.id, "buy", "5", "160", symbol="AAPL")
    await s.trade(who, p.id, "sell", "12", "170", symbol="AAPL", fees="4")
    await s.trade(who, p.id, "buy", "1", "60", symbol="KO")
    await s.trade(who, p.id, "sell", "1", "61", symbol="KO")

    average = await s.stub.ListPositions(
        pb.ListPositionsRequest(portfolio_id=p.id, cost_method=pb.COST_METHOD_AVERAGE),
        metadata=who,
    )
    (aapl,) = average.positions
    # 15 shares cost 2305; the 12 sold cost 2305 * 12 / 15 = 1844: realized 2036 - 1844 = 192.
    assert (aapl.cost_basis, aapl.realized_gain, aapl.average_cost) == (
        "461.00",
        "192.00",
        "153.666667",
    )
    assert aapl.cost_method == pb.COST_METHOD_AVERAGE
    every = await s.stub.ListPositions(
        pb.ListPositionsRequest(portfolio_id=p.id, include_closed=True), metadata=who
    )
    assert [(x.symbol, x.quantity, x.realized_gain) for x in every.positions] == [
        ("AAPL", "3", "211.00"),
        ("KO", "0", "1.00"),
    ]
    assert every.pagination.total == 2


async def test_a_buy_without_a_price_trades_at_the_markets_price_and_names_its_source(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    quote = (await s.stub.GetQuote(pb.GetQuoteRequest(symbol="MSFT"), metadata=who)).quote
    trade = await s.trade(who, p.id, "buy", "2", symbol="msft")
    assert (trade.symbol, trade.price, trade.price_source) == ("MSFT", quote.price, "mock")
    assert quote.price == "415.30"
    assert trade.amount == "830.60"


async def test_create_position_is_a_buy_and_answers_the_position(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    first = await s.stub.CreatePosition(
        pb.CreatePositionRequest(portfolio_id=p.id, symbol="KO", quantity="4", price="60"),
        metadata=who,
    )
    second = await s.stub.CreatePosition(
        pb.CreatePositionRequest(portfolio_id=p.id, symbol="KO", quantity="1"), metadata=who
    )
    assert (first.position.quantity, first.position.cost_basis) == ("4", "240.00")
    # 240 + 62.40 at the market
    assert (second.position.quantity, second.position.cost_basis) == ("5", "302.40")
    assert second.position.market_value == "312.00"  # 5 * 62.40
    (buy, _) = await trades_of(s, who, p.id)
    assert (buy.side, buy.price_source) == (pb.TRADE_SIDE_BUY, "mock")


async def test_selling_more_than_held_is_rejected_naming_the_shortfall_and_records_nothing(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "3", "60", symbol="KO")
    error = await expect_error(
        s.trade(who, p.id, "sell", "5", "61", symbol="KO"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "INSUFFICIENT_SHARES"
    assert error.details() == "cannot sell 5 KO: only 3 held (short by 2)"
    assert [t.side for t in await trades_of(s, who, p.id)] == [pb.TRADE_SIDE_BUY]


async def test_a_back_dated_sell_is_checked_against_the_shares_held_at_its_date(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    now = datetime.now(UTC)
    await s.trade(
        who, p.id, "buy", "5", "60", symbol="KO", executed_at=timestamp(now - timedelta(days=2))
    )
    await s.trade(who, p.id, "sell", "5", "61", symbol="KO", executed_at=timestamp(now))
    # Yesterday 5 were held, but selling them then leaves today's sell short.
    error = await expect_error(
        s.trade(
            who,
            p.id,
            "sell",
            "1",
            "61",
            symbol="KO",
            executed_at=timestamp(now - timedelta(days=1)),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "short by 1" in (error.details() or "")
    assert len(await trades_of(s, who, p.id)) == 2


async def test_twenty_concurrent_sells_of_ten_shares_sell_exactly_ten(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "10", "60", symbol="KO")
    results = await asyncio.gather(
        *(s.trade(who, p.id, "sell", "1", "61", symbol="KO") for _ in range(20)),
        return_exceptions=True,
    )
    sold = [r for r in results if isinstance(r, pb.Trade)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert (len(sold), len(refused)) == (10, 10), results
    assert {e.code() for e in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    positions = await s.stub.ListPositions(
        pb.ListPositionsRequest(portfolio_id=p.id, include_closed=True), metadata=who
    )
    assert [(x.symbol, x.quantity) for x in positions.positions] == [("KO", "0")]
    sells = [t for t in await trades_of(s, who, p.id) if t.side == pb.TRADE_SIDE_SELL]
    assert len(sells) == 10


async def test_a_paper_portfolio_buys_only_with_the_cash_it_has(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    paper = await s.portfolio(who, kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100")
    error = await expect_error(
        s.trade(who, paper.id, "buy", "2", "60", symbol="KO"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "INSUFFICIENT_CASH"
    assert "short by 20.00" in (error.details() or "")
    await s.trade(who, paper.id, "buy", "1", "60", symbol="KO")
    got = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=paper.id), metadata=who)
    assert (got.portfolio.cash, got.portfolio.total_cost) == ("40.00", "100.00")

    tracking = await s.portfolio(who, initial_cash="100")
    await s.trade(who, tracking.id, "buy", "2", "60", symbol="KO")  # 20 more brought in
    got = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=tracking.id), metadata=who)
    assert (got.portfolio.cash, got.portfolio.total_cost) == ("0.00", "120.00")


async def test_a_withdrawal_beyond_the_cash_is_refused(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(initial_cash="50")
    error = await expect_error(
        s.trade(who, p.id, "withdrawal", "60"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "INSUFFICIENT_CASH"


async def test_bad_trades_are_invalid_naming_each_field_as_the_client_spells_it(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    tomorrow = timestamp(datetime.now(UTC) + timedelta(days=1))
    cases: list[tuple[dict[str, object], list[str]]] = [
        (
            {
                "side": "buy",
                "quantity": "1",
                "price": "60",
                "symbol": "KO",
                "executed_at": tomorrow,
            },
            ["executedAt"],
        ),
        ({"side": "buy", "quantity": "ten", "price": "60", "symbol": "KO"}, ["quantity"]),
        ({"side": "buy", "quantity": "1", "price": "1e3", "symbol": "KO"}, ["price"]),
        (
            {"side": "buy", "quantity": "-1", "price": "60", "symbol": "KO", "fees": "-2"},
            ["quantity", "fees"],
        ),
        ({"side": "buy", "quantity": "0", "price": "NaN", "symbol": "KO"}, ["quantity", "price"]),
        ({"side": "deposit", "quantity": "10", "symbol": "KO"}, ["symbol"]),
        ({"side": "sell", "quantity": "1", "price": "60"}, ["symbol"]),
    ]
    for fields, expected in cases:
        side = str(fields.pop("side"))
        error = await expect_error(
            s.trade(who, p.id, side, **fields),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert [f for f, _ in violations(error)] == expected, fields
    error = await expect_error(
        s.stub.CreateTrade(
            pb.CreateTradeRequest(portfolio_id=p.id, symbol="KO", quantity="1"), metadata=who
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in violations(error)] == ["side"]
    error = await expect_error(s.trade(who, "", "deposit", "1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in violations(error)] == ["portfolioId"]
    await expect_error(s.trade(who, "no-such-portfolio", "deposit", "1"), grpc.StatusCode.NOT_FOUND)
    assert await trades_of(s, who, p.id) == []


async def test_an_unknown_symbol_is_not_found(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    for price in ("", "10"):
        error = await expect_error(
            s.trade(who, p.id, "buy", "1", price, symbol="NOPE"), grpc.StatusCode.NOT_FOUND
        )
        assert reason(error) == "UNKNOWN_SYMBOL"
    assert await trades_of(s, who, p.id) == []


async def test_trades_are_listed_newest_first_with_filters_and_pages(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    a, b = await s.portfolio(who), await s.portfolio(who, name="Other")
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    made = []
    for i, (portfolio, side, symbol) in enumerate(
        [
            (a, "buy", "KO"),
            (a, "buy", "AAPL"),
            (b, "buy", "KO"),
            (a, "sell", "KO"),
            (a, "dividend", "KO"),
        ]
    ):
        made.append(
            await s.trade(
                who,
                portfolio.id,
                side,
                "1",
                "50",
                symbol=symbol,
                executed_at=timestamp(day + timedelta(days=i)),
            )
        )

    async def ids(**fields: object) -> list[str]:
        request = pb.ListTradesRequest(**fields)  # type: ignore[arg-type]
        return [t.id for t in (await s.stub.ListTrades(request, metadata=who)).trades]

    assert await ids() == [t.id for t in reversed(made)]
    assert await ids(portfolio_id=a.id) == [made[4].id, made[3].id, made[1].id, made[0].id]
    assert await ids(symbol="ko") == [made[4].id, made[3].id, made[2].id, made[0].id]
    assert await ids(side=pb.TRADE_SIDE_BUY, portfolio_id=a.id) == [made[1].id, made[0].id]
    window = {"from": timestamp(day + timedelta(days=1)), "to": timestamp(day + timedelta(days=3))}
    assert await ids(**window) == [made[3].id, made[2].id, made[1].id]
    assert await ids(limit=2, page=2) == [made[2].id, made[1].id]
    paged = await s.stub.ListTrades(pb.ListTradesRequest(limit=2), metadata=who)
    assert (paged.pagination.total, paged.pagination.total_pages) == (5, 3)
    stranger = await s.user()
    theirs = await s.stub.ListTrades(pb.ListTradesRequest(), metadata=stranger)
    assert (list(theirs.trades), theirs.pagination.total) == ([], 0)
    error = await expect_error(
        s.stub.ListTrades(pb.ListTradesRequest(limit=500), metadata=who),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in violations(error)] == ["limit"]


# --- market data -------------------------------------------------------------------------------


async def test_stocks_are_searched_described_and_quoted_and_unknown_ones_are_not_found(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    found = await s.stub.SearchStocks(pb.SearchStocksRequest(q="coca"), metadata=who)
    assert [(x.symbol, x.name) for x in found.stocks] == [("KO", "The Coca-Cola Company")]
    every = await s.stub.SearchStocks(pb.SearchStocksRequest(limit=5, page=2), metadata=who)
    assert len(every.stocks) == 5
    assert every.pagination.total > 30
    stock = await s.stub.GetStock(pb.GetStockRequest(symbol="msft"), metadata=who)
    assert (stock.stock.symbol, stock.stock.exchange, stock.stock.currency) == (
        "MSFT",
        "NASDAQ",
        "USD",
    )
    quote = (await s.stub.GetQuote(pb.GetQuoteRequest(symbol="AAPL"), metadata=who)).quote
    assert (quote.symbol, quote.price, quote.change, quote.change_percent) == (
        "AAPL",
        "189.50",
        "0.00",
        "0.00",
    )
    assert (quote.source, quote.stale) == ("mock", False)
    assert quote.time.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    for call in (
        s.stub.GetStock(pb.GetStockRequest(symbol="NOPE"), metadata=who),
        s.stub.GetQuote(pb.GetQuoteRequest(symbol="NOPE"), metadata=who),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND)


async def test_the_unrealized_gain_is_the_difference_shown_in_every_view(
    portfolio_service: PortfolioService,
) -> None:
    """0.1 AAPL bought at 100.05 costs 10.005, shown 10.00; at 189.50 it is worth 18.95. The gain
    shown beside them is 18.95 - 10.00 = 8.95 in the portfolio, its positions, the export's
    positions table and the performance report alike (two of them rounded the exact 8.945, to
    8.94)."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    quote = await s.stub.GetQuote(pb.GetQuoteRequest(symbol="AAPL"), metadata=who)
    assert quote.quote.price == "189.50"
    await s.trade(who, p.id, "buy", "0.1", "100.05", symbol="AAPL")
    got = (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)).portfolio
    (position,) = got.positions
    shown = (position.market_value, position.cost_basis, position.unrealized_gain)
    assert shown == ("18.95", "10.00", "8.95")
    assert got.unrealized_gain == "8.95"
    chunks = s.stub.ExportPortfolio(pb.ExportPortfolioRequest(portfolio_id=p.id), metadata=who)
    text = b"".join([chunk.data async for chunk in chunks]).decode()
    (row,) = csv.DictReader(io.StringIO(text.partition("\r\n\r\n")[2]))
    performance = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all"), metadata=who
    )
    assert {
        "export row": (row["market_value"], row["cost_basis"], row["unrealized_gain"]),
        "performance": performance.unrealized_gain,
    } == {"export row": ("18.95", "10.00", "8.95"), "performance": "8.95"}
