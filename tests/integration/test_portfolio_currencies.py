"""Currencies, the three-part return and benchmarks through the real portfolio service (gRPC,
SQLite and PostgreSQL): GetFxRate, portfolios kept in a currency, trades converted at their
day's rate, holdings at today's, GetPerformance's breakdown and benchmark, and the refusals
(unknown currency, unknown benchmark, another user's portfolio)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.integration.portfolio_harness import (
    PortfolioService,
    rate,
)
from tests.utc_days import stamp, utc_today

D = Decimal
FRIDAY = date(2024, 3, 15)


async def test_fx_rates_live_and_on_a_day_and_unknown_codes_refused(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    before = utc_today()
    live = await s.stub.GetFxRate(pb.GetFxRateRequest(to="usd", **{"from": "eur"}), metadata=who)
    # Today's rate: of the server's day, the test's (unless midnight UTC passed meanwhile).
    days = {before, utc_today()}
    assert (getattr(live, "from"), live.to) == ("EUR", "USD")
    assert D(live.rate) in {rate("EUR", "USD", day) for day in days}
    saturday = await s.stub.GetFxRate(
        pb.GetFxRateRequest(to="JPY", date="2024-03-16", **{"from": "EUR"}), metadata=who
    )
    assert (saturday.date, D(saturday.rate)) == ("2024-03-15", rate("EUR", "JPY", FRIDAY))
    same = await s.stub.GetFxRate(pb.GetFxRateRequest(to="GBP", **{"from": "GBP"}), metadata=who)
    assert same.rate == "1"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await s.stub.GetFxRate(pb.GetFxRateRequest(to="USD", **{"from": "XYZ"}), metadata=who)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "from" in (refused.value.details() or "")


async def test_a_portfolio_in_an_unknown_currency_is_refused(
    portfolio_service: PortfolioService,
) -> None:
    who = await portfolio_service.user()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await portfolio_service.portfolio(who, currency="XYZ")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "currency" in (refused.value.details() or "")


async def test_a_foreign_listing_is_bought_at_its_days_rate_and_valued_at_todays(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    before = utc_today()
    who, p = await s.user_with_portfolio(currency="USD")
    await s.trade(who, p.id, "deposit", "10000", executed_at=stamp(date(2024, 3, 1)))
    bought = await s.trade(
        who, p.id, "buy", "10", "100", symbol="SAP", fees="2", executed_at=stamp(FRIDAY)
    )
    then = rate("EUR", "USD", FRIDAY)
    assert (bought.currency, D(bought.fx_rate), bought.price, bought.fees) == (
        "EUR",
        then,
        "100.00",
        "2.00",
    )
    assert bought.amount == "1000.00"
    valued = (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)).portfolio
    cost = (D(1000) + D(2)) * then
    assert D(valued.cash) == (D(10000) - cost).quantize(D("0.01"))
    positions = (
        await s.stub.ListPositions(pb.ListPositionsRequest(portfolio_id=p.id), metadata=who)
    ).positions
    (sap,) = positions
    listed = (await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=who)).portfolios
    # Valued at today's rate, of the server's day at each read: the test's (when midnight UTC
    # passed during the test, either day's, and the reads may differ).
    rates_now = {rate("EUR", "USD", day) for day in {before, utc_today()}}
    now = D(sap.fx_rate)
    assert (sap.currency, D(sap.local_price)) == ("EUR", D("182.40"))
    assert now in rates_now
    assert D(sap.market_value) == (10 * D("182.40") * now).quantize(D("0.01"))
    assert D(sap.price) == (D(sap.local_price) * D(sap.fx_rate)).quantize(D(sap.price))
    assert D(sap.cost_basis) == cost.quantize(D("0.01"))

    # The portfolio's own positions name the listing too, as ListPositions does, and in a
    # listing of portfolios: a page moving the value by live ticks (in euros) converts them.
    for shown in (valued, listed[0]):
        (held,) = shown.positions
        assert (held.currency, D(held.local_price)) == ("EUR", D("182.40"))
        assert D(held.fx_rate) in rates_now  # within one day: the rate ListPositions gave
        worth = (10 * D("182.40") * D(held.fx_rate)).quantize(D("0.01"))
        assert held.market_value == str(worth)  # within one day: sap.market_value

    # The currency cannot change under converted trades.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await s.stub.UpdatePortfolio(
            pb.UpdatePortfolioRequest(id=p.id, currency="EUR"), metadata=who
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    report = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, benchmark="spy"), metadata=who
    )
    parts = report.breakdown
    assert report.currency == "USD"
    assert parts.total_gain == report.gain
    money = [parts.capital_gain, parts.dividend_gain, parts.currency_gain, parts.fees]
    assert sum(D(x) for x in money) == D(parts.total_gain)
    assert D(parts.fees) == (-D(2) * then).quantize(D("0.01"))
    shares = [
        parts.capital_contribution,
        parts.dividend_contribution,
        parts.currency_contribution,
        parts.fees_contribution,
    ]
    assert sum(D(x) for x in shares) == D(parts.total_contribution)
    assert parts.total_contribution == report.time_weighted_return
    compared = report.benchmark
    assert compared.symbol == "SPY"
    assert len(compared.series) == len(report.series)
    assert D(compared.alpha) == D(report.time_weighted_return) - D(compared.time_weighted_return)
    assert D(compared.tracking_difference) == D(report.end_value) - D(compared.end_value)


async def test_a_portfolio_in_euros_converts_dollar_listings(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="eur")
    assert p.currency == "EUR"
    bought = await s.trade(who, p.id, "buy", "2", "150", symbol="AAPL", executed_at=stamp(FRIDAY))
    assert (bought.currency, D(bought.fx_rate)) == ("USD", rate("USD", "EUR", FRIDAY))
    local = await s.trade(who, p.id, "buy", "1", "180", symbol="SAP", executed_at=stamp(FRIDAY))
    assert (local.currency, local.fx_rate) == ("EUR", "1")
    report = await s.stub.GetPerformance(pb.GetPerformanceRequest(portfolio_id=p.id), metadata=who)
    assert report.currency == "EUR"
    assert not report.HasField("benchmark")


async def test_one_currency_has_no_currency_gain_and_refusals_are_404(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "3", "60", symbol="KO", executed_at=stamp(FRIDAY))
    await s.trade(who, p.id, "dividend", "3", "0.485", symbol="KO", fees="0.10")
    report = await s.stub.GetPerformance(pb.GetPerformanceRequest(portfolio_id=p.id), metadata=who)
    assert report.breakdown.currency_gain == "0.00"
    assert report.breakdown.dividend_gain == "1.36"  # 3 x 0.485 - 0.10 = 1.355, half-even
    for request in (
        pb.GetPerformanceRequest(portfolio_id=p.id, benchmark="ZZZZQ"),
        pb.GetPerformanceRequest(portfolio_id=p.id, benchmark="SPY"),
    ):
        other = await s.user()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.stub.GetPerformance(
                request, metadata=other if request.benchmark == "SPY" else who
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_imported_rows_are_converted_as_recorded_trades_are(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    csv = (
        "date,side,symbol,quantity,price,fees\n"
        "2024-03-15,buy,AAPL,4,170,1\n"
        "2024-03-15,buy,SAP,2,180,0\n"
    )
    reply = await s.stub.ImportTrades(
        pb.ImportTradesRequest(portfolio_id=p.id, csv=csv), metadata=who
    )
    by_symbol = {t.symbol: t for t in reply.trades}
    then = rate("USD", "EUR", FRIDAY)
    assert (by_symbol["AAPL"].currency, D(by_symbol["AAPL"].fx_rate)) == ("USD", then)
    assert (by_symbol["AAPL"].price, by_symbol["SAP"].currency) == ("170.00", "EUR")
    valued = (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)).portfolio
    # Funded shortfalls: the money put in is the trades' cost in euros.
    cost = (4 * D(170) + 1) * then + 2 * D(180)
    assert D(valued.total_cost) == cost.quantize(D("0.01"))
