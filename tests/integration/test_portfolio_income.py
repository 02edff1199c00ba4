"""GetPortfolioIncome through the real portfolio server, on SQLite and PostgreSQL: dividends by
month, quarter and year with the empty periods between, fees withheld, a dividend paid in pounds
into a dollar portfolio at its day's rate, by symbol; over all time the gross total is the
portfolio's `dividends`. The trailing twelve months and yield on cost (to today, or to `to`),
the simulated market's announced dividends projected at today's rate, none projected (with the
reason) over Alpha Vantage, another user's portfolio a 404 and bad input named; and the
dividends the market leader pays a paper portfolio counted, with the calendar projected from a
held clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import cast

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.currencies import SimulatedRates
from services.portfolio.dividends import DividendPayer
from services.portfolio.domain import Side, Trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.income import Grouping
from services.portfolio.income_reports import NO_CALENDAR, IncomeReports
from services.portfolio.mock_market import MockMarket
from services.portfolio.periods import Period
from services.portfolio.prices import Prices
from services.portfolio.records import Portfolio, PortfolioKind
from services.portfolio.repository import PortfolioRepository
from services.portfolio.trades import Trades
from services.runtime.db import Database
from services.runtime.errors import NotFound
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage
from tests.integration.portfolio_harness import (
    BAD_PERIODS,
    Events,
    Metadata,
    PortfolioService,
    StartPortfolio,
)
from tests.rpc_errors import expect_error, fields
from tests.utc_days import noon, one_utc_day, utc_today

D = Decimal
CENT = D("0.01")


async def income(
    s: PortfolioService, who: Metadata, portfolio_id: str, **given: object
) -> pb.GetPortfolioIncomeResponse:
    request = pb.GetPortfolioIncomeRequest(portfolio_id=portfolio_id, **given)  # type: ignore[arg-type]
    reply: pb.GetPortfolioIncomeResponse = await s.stub.GetPortfolioIncome(request, metadata=who)
    return reply


def amounts(a: pb.IncomeAmounts) -> tuple[str, str, str, int]:
    return (a.gross, a.fees, a.net, a.count)


def money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def gbp_usd(day: date) -> Decimal:
    return SimulatedRates(7).close("GBP", "USD", day)[1]  # the harness's MOCK_SEED


def ago(days: int) -> Timestamp:
    """Noon UTC `days` days before today."""
    return noon(utc_today() - timedelta(days=days))


async def test_dividends_by_month_quarter_and_year_and_all_time_is_the_portfolios_dividends(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    bought = noon(date(2024, 1, 10))
    await s.trade(who, p.id, "buy", "100", "60", symbol="KO", executed_at=bought)
    await s.trade(who, p.id, "buy", "200", "27", symbol="SHEL", executed_at=bought)
    await s.trade(
        who, p.id, "dividend", "10", "1", symbol="KO", executed_at=noon(date(2023, 12, 15))
    )
    # 15 % withheld: 7.275 of 48.50, shown 7.28 (half-even), net 41.22.
    await s.trade(
        who,
        p.id,
        "dividend",
        "100",
        "0.485",
        symbol="KO",
        fees="7.275",
        executed_at=noon(date(2024, 3, 15)),
    )
    # Paid in pounds (SHEL trades in London): 200 x 0.2707 GBP at that day's GBP/USD.
    shel_day = date(2024, 5, 15)
    await s.trade(who, p.id, "dividend", "200", "0.2707", symbol="SHEL", executed_at=noon(shel_day))
    await s.trade(
        who, p.id, "dividend", "100", "0.485", symbol="KO", executed_at=noon(date(2024, 6, 14))
    )
    shel = D(200) * D("0.2707") * gbp_usd(shel_day)
    year = {"from": "2024-01-01", "to": "2024-12-31"}

    monthly = await income(s, who, p.id, **year)
    assert (monthly.currency, monthly.group_by, monthly.portfolio_id) == (
        "USD",
        pb.INCOME_GROUPING_MONTH,
        p.id,
    )
    assert [(m.label, m.start, m.end) for m in monthly.periods][:3] == [
        ("2024-01", "2024-01-01", "2024-01-31"),
        ("2024-02", "2024-02-01", "2024-02-29"),  # a leap year
        ("2024-03", "2024-03-01", "2024-03-31"),
    ]
    assert len(monthly.periods) == 12
    by_label = {m.label: amounts(m.income) for m in monthly.periods}
    assert by_label["2024-03"] == ("48.50", "7.28", "41.22", 1)
    assert by_label["2024-05"] == (money(shel), "0.00", money(shel), 1)
    assert by_label["2024-06"] == ("48.50", "0.00", "48.50", 1)
    assert by_label["2024-01"] == by_label["2024-12"] == ("0.00", "0.00", "0.00", 0)
    total = D("97.00") + shel
    assert amounts(monthly.totals) == (
        money(total),
        "7.28",
        str(D(money(total)) - D("7.28")),
        3,
    )
    assert [(x.symbol, amounts(x.income), x.share) for x in monthly.symbols] == [
        ("KO", ("97.00", "7.28", "89.72", 2), str((D(97) / total).quantize(D("0.000001")))),
        ("SHEL", (money(shel), "0.00", money(shel), 1), str((shel / total).quantize(D("1e-6")))),
    ]

    quarterly = await income(s, who, p.id, group_by=pb.INCOME_GROUPING_QUARTER, **year)
    assert [(q.label, q.start, q.end, q.income.gross) for q in quarterly.periods] == [
        ("2024-Q1", "2024-01-01", "2024-03-31", "48.50"),
        ("2024-Q2", "2024-04-01", "2024-06-30", money(D("48.50") + shel)),
        ("2024-Q3", "2024-07-01", "2024-09-30", "0.00"),
        ("2024-Q4", "2024-10-01", "2024-12-31", "0.00"),
    ]

    # Without a period: from the first dividend's to the last one's, the gaps filled.
    all_time = await income(s, who, p.id)
    assert [m.label for m in all_time.periods] == [
        "2023-12",
        "2024-01",
        "2024-02",
        "2024-03",
        "2024-04",
        "2024-05",
        "2024-06",
    ]
    yearly = await income(s, who, p.id, group_by=pb.INCOME_GROUPING_YEAR)
    assert [(y.label, y.income.gross, y.income.count) for y in yearly.periods] == [
        ("2023", "10.00", 1),
        ("2024", money(total), 3),
    ]
    assert yearly.totals.gross == money(total + 10)
    assert yearly.totals.gross == (await s.read(who, p.id)).dividends


@one_utc_day
async def test_yield_on_cost_of_a_holding_sold_down_is_on_what_is_left(
    portfolio_service: PortfolioService,
) -> None:
    # 100 KO at 50 paid 0.485 a share twice, then 99 sold: the one share left cost 50 and was
    # paid 0.97 in the twelve months, a yield of 1.94 %, as before the sale (it was answered
    # 97.00 / 50.00 = 194 %).
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "100", "50", symbol="KO", executed_at=ago(300))
    for days in (200, 100):
        await s.trade(who, p.id, "dividend", "100", "0.485", symbol="KO", executed_at=ago(days))
    before = (await income(s, who, p.id)).trailing
    assert (before.held_income, before.cost_basis, before.yield_on_cost) == (
        "97.00",
        "5000.00",
        "0.019400",
    )
    await s.trade(who, p.id, "sell", "99", "60", symbol="KO", executed_at=ago(50))
    after = (await income(s, who, p.id)).trailing
    assert amounts(after.income) == ("97.00", "0.00", "97.00", 2)  # what was received stays
    assert (after.held_income, after.cost_basis, after.yield_on_cost) == (
        "0.97",
        "50.00",
        "0.019400",
    )


@one_utc_day
async def test_trailing_twelve_months_yield_on_cost_and_the_announced_dividends_projected(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    await s.trade(who, p.id, "buy", "100", "50", symbol="KO", executed_at=ago(400))
    await s.trade(who, p.id, "buy", "10", "150", symbol="JNJ", executed_at=ago(400))
    for days in (380, 200, 30):
        await s.trade(who, p.id, "dividend", "100", "0.485", symbol="KO", executed_at=ago(days))
    await s.trade(who, p.id, "dividend", "10", "1.24", symbol="JNJ", executed_at=ago(100))
    await s.trade(who, p.id, "sell", "10", "160", symbol="JNJ", executed_at=ago(50))
    # Held, paying nothing yet: not part of the yield's cost basis.
    await s.trade(who, p.id, "buy", "200", "27", symbol="SHEL", executed_at=ago(10))

    reply = await income(s, who, p.id)
    t = reply.trailing
    start = today.replace(year=today.year - 1) if (today.month, today.day) != (2, 29) else None
    assert start is None or t.start == (start + timedelta(days=1)).isoformat()
    assert t.end == today.isoformat()
    # KO's two of the last twelve months and JNJ's (sold since: in the income, not the yield).
    assert amounts(t.income) == ("109.40", "0.00", "109.40", 3)
    assert (t.held_income, t.cost_basis, t.yield_on_cost) == ("97.00", "5000.00", "0.019400")

    # A `to` ahead of today ends them today: trailing months lie in the past.
    ahead = await income(s, who, p.id, to=(today + timedelta(days=400)).isoformat())
    assert ahead.trailing == reply.trailing

    # Ending at `to`: the twelve months before it, and the holdings as they were then (JNJ too).
    earlier = await income(s, who, p.id, to=(today - timedelta(days=60)).isoformat())
    e = earlier.trailing
    assert (e.end, amounts(e.income)) == (
        (today - timedelta(days=60)).isoformat(),
        ("109.40", "0.00", "109.40", 3),
    )
    assert (e.held_income, e.cost_basis, e.yield_on_cost) == ("109.40", "6500.00", "0.016831")

    # The simulated market's calendar: KO in March, June, September and December, SHEL in
    # February, May, August and November, each on the 15th; four of each in any year ahead.
    projected = reply.projected
    assert (projected.start, projected.note) == ((today + timedelta(days=1)).isoformat(), "")
    rows = [
        (d.symbol, d.quantity, d.per_share, d.currency, d.fx_rate, d.amount)
        for d in projected.dividends
    ]
    rate = gbp_usd(today)
    assert sorted(rows) == sorted(
        [("KO", "100", "0.485", "USD", "1", "48.50")] * 4
        + [("SHEL", "200", "0.2707", "GBP", format(rate, "f"), money(D("54.14") * rate))] * 4
    )
    ex_dates = [d.ex_date for d in projected.dividends]
    assert ex_dates == sorted(ex_dates)
    assert all(date.fromisoformat(d).day == 15 for d in ex_dates)
    assert projected.total == money(4 * D("48.50") + 4 * D("54.14") * rate)


async def test_over_alpha_vantage_nothing_is_projected_and_the_note_says_why(
    start_portfolio: StartPortfolio,
) -> None:
    async with (
        FakeAlphaVantage() as fake,
        start_portfolio(
            USE_MOCK_PRICES="false", ALPHA_VANTAGE_API_KEY=API_KEY, ALPHA_VANTAGE_URL=fake.url
        ) as s,
    ):
        who, p = await s.user_with_portfolio()
        day = utc_today() - timedelta(days=20)
        await s.trade(who, p.id, "buy", "10", "190", symbol="AAPL", executed_at=noon(day))
        await s.trade(who, p.id, "dividend", "10", "0.25", symbol="AAPL", executed_at=noon(day))
        reply = await income(s, who, p.id)
        assert amounts(reply.totals) == ("2.50", "0.00", "2.50", 1)
        assert (list(reply.projected.dividends), reply.projected.total) == ([], "0.00")
        assert reply.projected.note == NO_CALENDAR


async def test_another_users_portfolio_is_not_found_and_bad_input_names_its_field(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p, theirs = await s.user_beside_a_stranger()
    await expect_error(income(s, who, theirs.id), grpc.StatusCode.NOT_FOUND)
    for day in (date(1901, 1, 15), date(2024, 1, 15)):
        await s.trade(who, p.id, "dividend", "10", "1", symbol="KO", executed_at=noon(day))
    month = pb.INCOME_GROUPING_MONTH
    bad: list[tuple[dict[str, object], str]] = [
        *BAD_PERIODS,
        ({"group_by": 9}, "groupBy"),
        # More than 1,200 periods: the bounds given, or the dividends' own span.
        ({"from": "0001-01-01", "to": "9999-12-31", "group_by": month}, "from"),
        ({"from": "0001-01-01", "to": "9999-12-31", "group_by": pb.INCOME_GROUPING_YEAR}, "from"),
        ({"from": "1800-01-01"}, "from"),
        ({"to": "9999-12-31"}, "to"),
        ({}, "groupBy"),  # 1901-01 to 2024-01: 1,477 months
    ]
    for given, field in bad:
        error = await expect_error(income(s, who, p.id, **given), grpc.StatusCode.INVALID_ARGUMENT)
        assert fields(error) == [field], given
    # By quarter the same span is 493 periods; a century of months is allowed.
    quarterly = await income(s, who, p.id, group_by=pb.INCOME_GROUPING_QUARTER)
    assert (len(quarterly.periods), quarterly.periods[0].label) == (493, "1901-Q1")
    century = await income(s, who, p.id, **{"from": "1924-02-01"}, to="2024-01-31")
    assert len(century.periods) == 1200


async def test_dividends_paid_to_a_paper_portfolio_are_its_income_and_the_calendar_projects(
    portfolio_database_url: str,
) -> None:
    # The market leader's payer (dividends.py) on 16 May 2024, the day after JNJ and SHEL went
    # ex-dividend; the report read with the same clock.
    now = datetime(2024, 5, 16, 12, tzinfo=UTC)
    db = Database(portfolio_database_url)
    market = MockMarket(seed=7, clock=lambda: now)
    exchange = Exchange(db, market, clock=lambda: now)
    hub = cast(EventHub, Events())
    trades = Trades(db, market, cast(Prices, None), hub, clock=lambda: now, exchange=exchange)
    try:
        async with db.transaction() as session:
            owned = Portfolio("paper", "u-1", "Paper", "", "USD", PortfolioKind.PAPER, now, now)
            await PortfolioRepository(session).add(owned)
        bought = datetime(2024, 5, 1, 15, tzinfo=UTC)
        for trade in (
            Trade(Side.DEPOSIT, "", D(20000), D(1), D(0), bought - timedelta(hours=6)),
            Trade(Side.BUY, "JNJ", D(10), D(150), D(0), bought),
            Trade(Side.BUY, "SHEL", D(100), D(27), D(0), bought),
        ):
            converted, fx = await exchange.trade_in(trade, "USD")
            await trades.append("u-1", "paper", [converted], conversions=[fx])
        assert await DividendPayer(db, market, trades, hub, exchange, clock=lambda: now).pay_due()
        reports = IncomeReports(db, market, exchange, clock=lambda: now)

        found = await reports.income("u-1", "paper", Period(), Grouping.MONTH)
        shel = 100 * D("0.2707") * gbp_usd(date(2024, 5, 15))
        assert [(p.label, p.income.gross, p.income.count) for p in found.report.periods] == [
            ("2024-05", D("12.40") + shel, 2)
        ]
        assert [(s.symbol, s.income.gross) for s in found.report.symbols] == [
            ("SHEL", shel),
            ("JNJ", D("12.40")),
        ]
        # The next twelve months from 17 May 2024: each in August, November, February and May.
        rate = gbp_usd(now.date())
        assert [(p.ex_date, p.symbol, p.amount) for p in found.projection.dividends] == [
            (date(y, m, 15), symbol, amount)
            for y, m in ((2024, 8), (2024, 11), (2025, 2), (2025, 5))
            for symbol, amount in (("JNJ", D("12.40")), ("SHEL", D("27.07") * rate))
        ]
        assert found.note == ""
        with pytest.raises(NotFound):
            await reports.income("u-2", "paper", Period(), Grouping.MONTH)
    finally:
        await db.close()
