"""ListRealizedGains through the real portfolio server, on SQLite and PostgreSQL: FIFO rows per
lot with their days and terms, the average method, a split between buy and sale, fees, a euro
portfolio of dollar stocks, periods and pages, and the refusals. Over all time the report's gains
add up to the portfolio's realized gain."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.currencies import SimulatedRates
from tests.integration.portfolio_harness import (
    BAD_PERIODS,
    Metadata,
    PortfolioService,
    holding,
    realized,
    realized_gain,
    split,
)
from tests.rpc_errors import expect_error, fields
from tests.utc_days import noon

D = Decimal
CENT = D("0.01")


def row(gain: pb.RealizedGain) -> tuple[object, ...]:
    days = gain.holding_days if gain.HasField("holding_days") else None
    return (
        gain.symbol,
        gain.sold_on,
        gain.quantity,
        gain.proceeds,
        gain.cost_basis,
        gain.gain,
        gain.acquired_on,
        days,
        gain.term,
    )


async def two_lots_and_a_sale(s: PortfolioService, who: Metadata, portfolio_id: str) -> pb.Trade:
    """Back-dated, as a tracking portfolio allows: 10 AAPL bought at 100 (fees 5) on 2023-01-10
    and 10 at 150 on 2024-09-01, and 15 sold at 200 (fees 15) on 2024-12-02; the sale."""
    made = [
        await s.trade(
            who,
            portfolio_id,
            side,
            quantity,
            price,
            symbol="AAPL",
            fees=fees,
            executed_at=noon(day),
        )
        for side, quantity, price, fees, day in (
            ("buy", "10", "100", "5", date(2023, 1, 10)),
            ("buy", "10", "150", "", date(2024, 9, 1)),
            ("sell", "15", "200", "15", date(2024, 12, 2)),
        )
    ]
    return made[-1]


async def test_fifo_closes_the_oldest_lot_first_a_long_and_a_short_row_with_fees(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    # A lot held 692 days and one held 92.
    sold = await two_lots_and_a_sale(s, who, p.id)

    reply = await realized(s, who, p.id, **{"from": "2024-01-01"}, to="2024-12-31")
    # Proceeds 15 x 200 - 15 = 2985, shared by quantity: 1990 for 10 shares, 995 for 5.
    assert [row(g) for g in reply.gains] == [
        ("AAPL", "2024-12-02", "10", "1990.00", "1005.00", "985.00", "2023-01-10", 692, "long"),
        ("AAPL", "2024-12-02", "5", "995.00", "750.00", "245.00", "2024-09-01", 92, "short"),
    ]
    assert {g.trade_id for g in reply.gains} == {sold.id}
    assert not any(g.cash_in_lieu for g in reply.gains)
    t = reply.totals
    assert (t.short_term, t.long_term, t.total, t.proceeds, t.cost_basis) == (
        "245.00",
        "985.00",
        "1230.00",
        "2985.00",
        "1755.00",
    )
    assert (reply.cost_method, reply.currency, reply.portfolio_id) == (
        pb.COST_METHOD_FIFO,
        "USD",
        p.id,
    )
    assert (reply.pagination.total, reply.pagination.total_pages) == (2, 1)
    assert reply.totals.total == await realized_gain(s, who, p.id)

    # A page of one row keeps the period's totals; a period without sales is empty.
    paged = await realized(s, who, p.id, limit=1, page=2)
    assert [row(g)[6] for g in paged.gains] == ["2024-09-01"]
    assert (paged.pagination.total, paged.pagination.total_pages, paged.totals.total) == (
        2,
        2,
        "1230.00",
    )
    later = await realized(s, who, p.id, **{"from": "2024-12-03"})
    assert (list(later.gains), later.totals.total, later.totals.short_term) == ([], "0.00", "0.00")


async def test_the_average_method_gives_one_row_per_sale_without_terms(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await two_lots_and_a_sale(s, who, p.id)
    reply = await realized(s, who, p.id, cost_method=pb.COST_METHOD_AVERAGE)
    # 20 shares cost 2505; 15 of them 1878.75.
    assert [row(g) for g in reply.gains] == [
        ("AAPL", "2024-12-02", "15", "2985.00", "1878.75", "1106.25", "", None, ""),
    ]
    t = reply.totals
    assert (t.short_term, t.long_term, t.total) == ("", "", "1106.25")
    assert reply.cost_method == pb.COST_METHOD_AVERAGE
    positions = await s.stub.ListPositions(
        pb.ListPositionsRequest(
            portfolio_id=p.id, cost_method=pb.COST_METHOD_AVERAGE, include_closed=True
        ),
        metadata=who,
    )
    assert [x.realized_gain for x in positions.positions] == ["1106.25"]


async def test_a_split_between_buy_and_sale_keeps_the_lots_day_and_cost(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "10", "500", symbol="NVDA", executed_at=noon(date(2024, 1, 2)))
    await split(s, who, p.id, "NVDA", "2024-03-01", 10, 1)
    await s.trade(who, p.id, "sell", "60", "55", symbol="NVDA", executed_at=noon(date(2024, 6, 3)))
    # A 1-for-3 of the 40 left pays a third of a share's dust in cash: a row of its own.
    await split(s, who, p.id, "NVDA", "2024-07-01", 1, 3, price="170")

    reply = await realized(s, who, p.id)
    first, lieu = reply.gains
    assert row(first) == (
        "NVDA",
        "2024-06-03",
        "60",
        "3300.00",
        "3000.00",
        "300.00",
        "2024-01-02",
        153,
        "short",
    )
    # 40 / 3 = 13.33333333 shares and 1/3 x 1e-8 of one, paid at 170.
    assert (lieu.cash_in_lieu, lieu.trade_id, lieu.sold_on, lieu.acquired_on) == (
        True,
        "",
        "2024-07-01",
        "2024-01-02",
    )
    assert reply.totals.total == await realized_gain(s, who, p.id)
    held = await holding(s, who, p.id, "NVDA")
    assert D(reply.totals.total) == D(held.realized_gain)


def usd_to_eur(day: date) -> Decimal:
    return SimulatedRates(7).close("USD", "EUR", day)[1]  # the harness's MOCK_SEED


async def test_a_euro_portfolio_of_dollar_stocks_realizes_at_each_trades_rate(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    bought, sold = date(2024, 3, 15), date(2024, 6, 14)
    await s.trade(who, p.id, "buy", "10", "100", symbol="AAPL", fees="2", executed_at=noon(bought))
    await s.trade(who, p.id, "sell", "4", "120", symbol="AAPL", fees="1", executed_at=noon(sold))

    reply = await realized(s, who, p.id)
    (gain,) = reply.gains
    proceeds = (4 * D(120) - 1) * usd_to_eur(sold)
    cost = (10 * D(100) + 2) * usd_to_eur(bought) * 4 / 10
    assert (gain.proceeds, gain.cost_basis, gain.gain) == (
        str(proceeds.quantize(CENT)),
        str(cost.quantize(CENT)),
        str(proceeds.quantize(CENT) - cost.quantize(CENT)),
    )
    assert (gain.holding_days, gain.term, reply.currency) == (91, "short", "EUR")
    assert reply.totals.total == str((proceeds - cost).quantize(CENT))
    assert reply.totals.total == await realized_gain(s, who, p.id)


async def test_another_users_portfolio_is_not_found_and_bad_input_names_its_field(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p, theirs = await s.user_beside_a_stranger()
    await expect_error(realized(s, who, theirs.id), grpc.StatusCode.NOT_FOUND)
    bad: list[tuple[dict[str, object], str]] = [
        *BAD_PERIODS,
        ({"cost_method": 7}, "costMethod"),
        ({"limit": 101}, "limit"),
    ]
    for given, field in bad:
        error = await expect_error(
            realized(s, who, p.id, **given), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert fields(error) == [field], given
