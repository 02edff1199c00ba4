"""GetPerformance through the real server over a stored price history the test writes, so every
figure is checked by hand; on SQLite and PostgreSQL."""

from __future__ import annotations

import statistics
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise

import grpc
from sqlalchemy import select
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.domain import present_ratio
from services.portfolio.orm import price_history
from services.portfolio.performance import range_start
from services.portfolio.repository import PriceRepository
from services.portfolio.xirr import xirr
from tests.integration.portfolio_harness import PortfolioService, store_closes
from tests.rpc_errors import expect_error, violations
from tests.utc_days import noon, one_utc_day, utc_today


@one_utc_day  # the closes stored up to today end the series: the server's day
async def test_performance_of_a_hand_checked_portfolio(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    d0, d1, d2 = (today - timedelta(days=n) for n in (3, 2, 1))
    closes = {d0: "50", d1: "55", d2: "44", today: "60"}
    await store_closes(s, "KO", closes)
    await s.trade(who, p.id, "deposit", "1000", executed_at=noon(d0))
    await s.trade(who, p.id, "buy", "10", "50", symbol="KO", executed_at=noon(d0))
    await s.trade(who, p.id, "deposit", "100", executed_at=noon(d2))

    report = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all"), metadata=who
    )
    # Baseline: the day before the first trade, worth nothing.
    # d0: cash 500 + 10 KO at 50 = 1000, all of it the day's inflow: r = 1000 / (0 + 1000) - 1 = 0
    # d1: 500 + 550 = 1050:                      r = 1050 / 1000 - 1 = 0.05
    # d2: 100 more in, 600 + 440 = 1040:         r = 1040 / (1050 + 100) - 1
    # today: 600 + 600 = 1200:                   r = 1200 / 1040 - 1
    # TWR = 1.05 * (1040 / 1150) * (1200 / 1040) - 1 = 1260 / 1150 - 1 = 0.0956521739...
    assert report.time_weighted_return == "0.095652"
    assert [(v.date, v.value) for v in report.series] == [
        ((d0 - timedelta(days=1)).isoformat(), "0.00"),
        (d0.isoformat(), "1000.00"),
        (d1.isoformat(), "1050.00"),
        (d2.isoformat(), "1040.00"),
        (today.isoformat(), "1200.00"),
    ]
    assert (report.start_date, report.end_date) == (
        (d0 - timedelta(days=1)).isoformat(),
        today.isoformat(),
    )
    assert (report.start_value, report.end_value) == ("0.00", "1200.00")
    assert (report.inflows, report.outflows, report.gain) == ("1100.00", "0.00", "100.00")
    assert (report.realized_gain, report.unrealized_gain) == ("0.00", "100.00")
    assert (report.dividends, report.fees, report.range) == ("0.00", "0.00", "all")
    assert [(a.name, a.value, a.weight) for a in report.allocation] == [
        ("KO", "600.00", "0.500000"),
        ("cash", "600.00", "0.500000"),
    ]
    # XIRR of -1000 on d0, -100 on d2, +1200 today, annualized: as the domain states it.
    expected = xirr([(d0, Decimal(-1000)), (d2, Decimal(-100)), (today, Decimal(1200))])
    assert expected.converged
    assert (report.money_weighted_return, report.money_weighted_note) == (
        present_ratio(expected.rate),
        "",
    )


@one_utc_day  # the month up to today: the server's day
async def test_closes_the_market_gives_are_stored_and_stored_ones_win(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    start = today - timedelta(days=40)
    await s.trade(who, p.id, "buy", "1", "60", symbol="KO", executed_at=noon(start))
    db = s.database()
    try:
        async with db.transaction() as session:
            await PriceRepository(session).record("KO", today, Decimal("99"))
        report = await s.stub.GetPerformance(
            pb.GetPerformanceRequest(portfolio_id=p.id, range="1m"), metadata=who
        )
        async with db.reading() as session:
            rows = (
                await session.execute(
                    select(price_history.c.day, price_history.c.close).where(
                        price_history.c.symbol == "KO"
                    )
                )
            ).all()
    finally:
        await db.close()
    stored = dict(rows)
    weekdays = [
        today - timedelta(days=n) for n in range(1, 30) if (today - timedelta(days=n)).weekday() < 5
    ]
    assert all(day in stored for day in weekdays)  # fetched from the market and kept
    assert stored[today] == Decimal("99")  # the stored close was not overwritten
    assert report.end_value == "99.00"
    assert report.start_date == range_start("1m", today, inception=start).isoformat()


async def test_a_bad_range_or_portfolio_is_refused(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    error = await expect_error(
        s.stub.GetPerformance(
            pb.GetPerformanceRequest(portfolio_id=p.id, range="2w"), metadata=who
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in violations(error)] == ["range"]
    error = await expect_error(
        s.stub.GetPerformance(pb.GetPerformanceRequest(), metadata=who),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in violations(error)] == ["portfolioId"]
    empty = await s.stub.GetPerformance(pb.GetPerformanceRequest(portfolio_id=p.id), metadata=who)
    assert (empty.time_weighted_return, empty.end_value, empty.range) == ("", "0.00", "all")
    assert empty.money_weighted_return == ""
    assert empty.money_weighted_note.startswith("no sign change")


@one_utc_day  # the day's rise ends on today: the server's day
async def test_a_position_up_15_percent_in_a_day_reports_its_huge_rate_not_a_server_error(
    portfolio_service: PortfolioService,
) -> None:
    # Annualized, 15 % in one day is about 1.4e22: past the 28 digits of the default decimal
    # context, which once made this a 500.
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    yesterday = today - timedelta(days=1)
    await store_closes(s, "KO", {yesterday: "100", today: "115"})
    await s.trade(who, p.id, "deposit", "100", executed_at=noon(yesterday))
    await s.trade(who, p.id, "buy", "1", "100", symbol="KO", executed_at=noon(yesterday))

    report = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all"), metadata=who
    )
    expected = xirr([(yesterday, Decimal(-100)), (today, Decimal(115))])
    assert expected.rate is not None and expected.rate > Decimal("1e22")
    assert report.money_weighted_return == present_ratio(expected.rate)
    assert Decimal(report.money_weighted_return) == expected.rate
    assert report.end_value == "115.00" and report.money_weighted_note == ""


async def test_the_figures_shown_beside_a_gain_add_up_to_it(
    portfolio_service: PortfolioService,
) -> None:
    # A cost with half a cent (0.1 share at 100.05 is 10.005): each figure rounded on its own
    # showed value 18.95, cost 10.00 and gain 8.94. A gain is the difference of the figures
    # shown, for the portfolio, its position and its performance.
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "0.1", "100.05", symbol="AAPL")
    valued = (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)).portfolio
    (position,) = valued.positions
    report = await s.stub.GetPerformance(pb.GetPerformanceRequest(portfolio_id=p.id), metadata=who)
    assert (valued.total_cost, position.cost_basis) == ("10.00", "10.00")  # 10.005, half-even
    price = Decimal(position.price)
    assert Decimal(valued.total_value) == (price / 10).quantize(Decimal("0.01"))
    assert Decimal(valued.total_gain_loss) == Decimal(valued.total_value) - Decimal("10.00")
    market = Decimal(valued.total_value) - Decimal(valued.cash)
    assert Decimal(valued.unrealized_gain) == market - Decimal(valued.cost_basis)
    assert Decimal(position.unrealized_gain) == Decimal(position.market_value) - Decimal("10.00")
    assert Decimal(report.gain) == Decimal(report.end_value) - Decimal(report.start_value) - (
        Decimal(report.inflows) - Decimal(report.outflows)
    )
    assert Decimal(report.breakdown.total_gain) == Decimal(report.gain)


def _weekdays(first: date, last: date) -> list[date]:
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [day for day in days if day.weekday() < 5]


# A close per weekday from the first: up 10 % twice to the peak (121), down 20 % (96.80), back
# to 121 two weekdays later, then 125 and 127.50 in turn (falls of 1.96 %, far smaller).
def _path(count: int) -> list[Decimal]:
    head = [Decimal(v) for v in ("100", "110", "121", "96.8", "108.9", "121")]
    tail = [Decimal("125") if n % 2 == 0 else Decimal("127.5") for n in range(count)]
    return (head + tail)[:count]


@one_utc_day  # the closes run up to today: the server's day
async def test_risk_figures_of_a_hand_checked_price_path(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    first = next(d for d in (today - timedelta(days=42 - n) for n in range(7)) if d.weekday() < 5)
    weekdays = _weekdays(first, today)
    closes = dict(zip(weekdays, _path(len(weekdays)), strict=True))
    # Weekend days carry the Friday's close (stored too: the simulated market has none then).
    every_day = {
        first + timedelta(days=n): closes[
            max(d for d in weekdays if d <= first + timedelta(days=n))
        ]
        for n in range((today - first).days + 1)
    }
    await store_closes(s, "KO", {d: str(c) for d, c in every_day.items()})
    await s.trade(who, p.id, "deposit", "1000", executed_at=noon(first))
    await s.trade(who, p.id, "buy", "10", "100", symbol="KO", executed_at=noon(first))

    report = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all"), metadata=who
    )
    risk = report.risk
    # The index is the price's (all of the money is in KO from the first day's close): the
    # fall from 121 to 96.80 is 20 %, dated the weekdays of the path, recovered at 121.
    assert (risk.max_drawdown, risk.drawdown_peak_date, risk.drawdown_trough_date) == (
        "0.200000",
        weekdays[2].isoformat(),
        weekdays[3].isoformat(),
    )
    assert risk.drawdown_recovery_date == weekdays[5].isoformat()
    # Trading-day returns: the first day's 0 (bought at its close), then one per weekday
    # (weekends add none: their carried closes are chained in, changing nothing).
    prices = [closes[d] for d in weekdays]
    returns = [Decimal(0)] + [b / a - 1 for a, b in pairwise(prices)]
    assert risk.trading_days == len(weekdays) >= 20
    root_year = Decimal(252).sqrt()
    spread = statistics.stdev(returns) * root_year
    excess = statistics.fmean(returns) * 252  # a float: compared at 6 places below
    assert risk.volatility == present_ratio(spread)
    assert abs(Decimal(risk.sharpe_ratio) - Decimal(excess) / spread) < Decimal("2e-6")
    downside = (
        sum((r * r for r in returns if r < 0), Decimal(0)) / len(returns)
    ).sqrt() * root_year
    assert abs(Decimal(risk.sortino_ratio) - Decimal(excess) / downside) < Decimal("2e-6")
    assert (risk.risk_free_rate, report.risk_note) == ("0.000000", "")

    # At 4 % a year: the excess return is 0.04 lower, the volatility the same.
    at_four = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all", risk_free_rate="0.04"),
        metadata=who,
    )
    assert at_four.risk.volatility == risk.volatility
    assert at_four.risk.risk_free_rate == "0.040000"
    expected = (Decimal(excess) - Decimal("0.04")) / spread
    assert abs(Decimal(at_four.risk.sharpe_ratio) - expected) < Decimal("2e-6")
    assert Decimal(at_four.risk.sortino_ratio) < Decimal(risk.sortino_ratio)


@one_utc_day  # the closes end on today: the server's day
async def test_too_few_days_leave_the_risk_statistics_empty_and_say_why(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    d0, d1 = today - timedelta(days=2), today - timedelta(days=1)
    await store_closes(s, "KO", {d0: "50", d1: "40", today: "45"})
    await s.trade(who, p.id, "deposit", "500", executed_at=noon(d0))
    await s.trade(who, p.id, "buy", "10", "50", symbol="KO", executed_at=noon(d0))

    report = await s.stub.GetPerformance(pb.GetPerformanceRequest(portfolio_id=p.id), metadata=who)
    risk = report.risk
    assert (risk.volatility, risk.sharpe_ratio, risk.sortino_ratio) == ("", "", "")
    trading = risk.trading_days
    assert 1 <= trading <= 3  # d0, d1 and today, less the weekend days among them
    assert report.risk_note == (
        "volatility, Sharpe and Sortino need at least 20 trading-day returns;"
        f" this range has {trading}"
    )
    # The drawdown is a fact of the series, given however short: 50 -> 40 is a 20 % fall.
    assert (risk.max_drawdown, risk.drawdown_peak_date, risk.drawdown_trough_date) == (
        "0.200000",
        d0.isoformat(),
        d1.isoformat(),
    )
    assert risk.drawdown_recovery_date == ""


async def test_the_risk_free_rate_is_stated_as_the_ratios_used_it_to_its_last_place(
    portfolio_service: PortfolioService,
) -> None:
    """Up to 8 places are taken, and the ratios are worked out at all of them: the answer
    states that rate, not one rounded to a ratio's 6 places (0.0425125 is not 0.042512)."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "deposit", "1000")
    for given, stated in (
        ("0.0425125", "0.04251250"),
        ("-0.00000001", "-0.00000001"),
        (" 0.99999999 ", "0.99999999"),
        ("0.04", "0.040000"),
        ("", "0.000000"),
    ):
        report = await s.stub.GetPerformance(
            pb.GetPerformanceRequest(portfolio_id=p.id, risk_free_rate=given), metadata=who
        )
        assert report.risk.risk_free_rate == stated, given


async def test_a_risk_free_rate_out_of_bounds_is_refused_naming_it(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    for rate in ("1", "0.04%", "-2", "0.123456789"):
        error = await expect_error(
            s.stub.GetPerformance(
                pb.GetPerformanceRequest(portfolio_id=p.id, risk_free_rate=rate), metadata=who
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert [f for f, _ in violations(error)] == ["riskFreeRate"]
