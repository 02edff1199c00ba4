"""Wire shapes: the service's records as protobuf messages, with numbers presented once by the
domain's `present_*` rules, and the proto enums mapped to the domain's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal

from stockfolio.common.v1 import pagination_pb2
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.currencies import FxRate, Valuation
from services.portfolio.domain import (
    CostMethod,
    Lot,
    Position,
    Side,
    Totals,
    present_money,
    present_percent,
    present_price,
    present_quantity,
    present_ratio,
    present_sum,
    ratio,
)
from services.portfolio.market_data import Quote, StockInfo
from services.portfolio.performance import PerformanceReport
from services.portfolio.profiles import StockProfile
from services.portfolio.realized import RealizedPage, RealizedRow, RealizedTotals
from services.portfolio.records import Portfolio, PortfolioKind, RecordedTrade, SplitEffect
from services.portfolio.returns import Benchmark, Breakdown
from services.portfolio.risk import RISK_FREE_RATE_PLACES, RiskFigures
from services.portfolio.stocks import StockHistory
from services.portfolio.wire_numbers import rounded
from services.runtime.timestamps import timestamp

SIDE_TO_PROTO = {
    Side.BUY: portfolio_pb2.TRADE_SIDE_BUY,
    Side.SELL: portfolio_pb2.TRADE_SIDE_SELL,
    Side.DIVIDEND: portfolio_pb2.TRADE_SIDE_DIVIDEND,
    Side.DEPOSIT: portfolio_pb2.TRADE_SIDE_DEPOSIT,
    Side.WITHDRAWAL: portfolio_pb2.TRADE_SIDE_WITHDRAWAL,
}
PROTO_TO_SIDE = {v: k for k, v in SIDE_TO_PROTO.items()}
KIND_TO_PROTO = {
    PortfolioKind.TRACKING: portfolio_pb2.PORTFOLIO_KIND_TRACKING,
    PortfolioKind.PAPER: portfolio_pb2.PORTFOLIO_KIND_PAPER,
}
PROTO_TO_KIND = {v: k for k, v in KIND_TO_PROTO.items()}
METHOD_TO_PROTO = {
    CostMethod.FIFO: portfolio_pb2.COST_METHOD_FIFO,
    CostMethod.AVERAGE: portfolio_pb2.COST_METHOD_AVERAGE,
}
PROTO_TO_METHOD = {v: k for k, v in METHOD_TO_PROTO.items()}


def trade_message(recorded: RecordedTrade) -> portfolio_pb2.Trade:
    trade = recorded.trade
    fields = {
        "price": present_price(trade.price),
        # Fees are kept as given (up to 6 places: per-share commissions add up to sub-cents).
        "fees": present_price(trade.fees),
        "amount": present_money(trade.amount),
        **as_given(recorded),
    }
    return portfolio_pb2.Trade(
        id=trade.id,
        portfolio_id=recorded.portfolio_id,
        symbol=trade.symbol,
        side=SIDE_TO_PROTO[trade.side],
        quantity=present_quantity(trade.quantity),
        executed_at=timestamp(trade.executed_at),
        notes=trade.notes,
        created_at=timestamp(recorded.created_at),
        price_source=recorded.price_source,
        order_id=recorded.order_id,
        **fields,
    )


def split_message(effect: SplitEffect) -> portfolio_pb2.StockSplit:
    recorded = effect.recorded
    split = recorded.split
    return portfolio_pb2.StockSplit(
        id=recorded.id,
        portfolio_id=recorded.portfolio_id,
        symbol=split.symbol,
        date=split.day.isoformat(),
        numerator=int(split.ratio),
        denominator=split.of,
        price="" if split.price is None else present_price(split.price),
        quantity_before=present_quantity(effect.quantity_before),
        quantity_after=present_quantity(effect.quantity_after),
        cash_in_lieu=present_money(effect.cash_in_lieu),
        created_at=timestamp(recorded.created_at),
    )


def as_given(recorded: RecordedTrade) -> dict[str, str]:
    """A trade in another currency than its portfolio's shows its price and fees as given, in
    that currency, with the rate they were converted at (amount: quantity x that price)."""
    fx = recorded.fx
    if fx is None:
        return {}
    trade = recorded.trade
    return {
        "price": present_price(fx.local_price),
        "fees": present_price(fx.local_fees),
        "amount": present_money(trade.quantity * fx.local_price),
        "currency": fx.currency,
        "fx_rate": format(fx.rate, "f"),
    }


def lot_message(lot: Lot) -> portfolio_pb2.Lot:
    return portfolio_pb2.Lot(
        quantity=present_quantity(lot.quantity),
        unit_cost=present_price(lot.unit_cost),
        cost=present_money(lot.cost),
        opened_at=timestamp(lot.opened_at),
    )


def position_message(
    portfolio_id: str, position: Position, fx: Valuation | None = None
) -> portfolio_pb2.Position:
    """`fx`: the trading currency, price in it and today's rate, when known."""
    average = position.average_cost
    listed = {}
    if fx is not None:
        listed = {
            "currency": fx.currency,
            "local_price": present_price(fx.local_price),
            "fx_rate": format(fx.rate, "f"),
        }
    return portfolio_pb2.Position(
        **listed,
        portfolio_id=portfolio_id,
        symbol=position.symbol,
        quantity=present_quantity(position.quantity),
        average_cost=present_price(average) if average is not None else "",
        cost_basis=present_money(position.cost_basis),
        market_value=present_money(position.market_value),
        unrealized_gain=present_sum(position.market_value, -position.cost_basis),
        realized_gain=present_money(position.realized_gain),
        weight=present_ratio(position.weight),
        price=present_price(position.price),
        unrealized_gain_percent=present_percent(
            ratio(position.unrealized_gain, position.cost_basis)
        ),
        dividends=present_money(position.dividends),
        lots=[lot_message(lot) for lot in position.lots],
        cost_method=METHOD_TO_PROTO[position.method],
    )


def portfolio_message(
    portfolio: Portfolio,
    totals: Totals,
    positions: list[Position],
    listed: Mapping[str, Valuation] | None = None,
) -> portfolio_pb2.Portfolio:
    """`listed`: each position's listing (currency, price in it, today's rate), when known."""
    listed = listed or {}
    return portfolio_pb2.Portfolio(
        id=portfolio.id,
        name=portfolio.name,
        description=portfolio.description,
        currency=portfolio.base_currency,
        user_id=portfolio.user_id,
        total_value=present_money(totals.total_value),
        total_cost=present_money(totals.total_cost),
        total_gain_loss=present_sum(totals.total_value, -totals.total_cost),
        total_gain_loss_percent=present_percent(totals.total_return),
        cash=present_money(totals.cash),
        positions=[position_message(portfolio.id, p, listed.get(p.symbol)) for p in positions],
        created_at=timestamp(portfolio.created_at),
        updated_at=timestamp(portfolio.updated_at),
        kind=KIND_TO_PROTO[portfolio.kind],
        cost_basis=present_money(totals.cost_basis),
        realized_gain=present_money(totals.realized_gain),
        unrealized_gain=present_sum(totals.market_value, -totals.cost_basis),
        dividends=present_money(totals.dividends),
        fees=present_money(totals.fees),
    )


def quote_message(quote: Quote) -> portfolio_pb2.Quote:
    return portfolio_pb2.Quote(
        symbol=quote.symbol,
        price=present_price(quote.price),
        change=present_price(quote.change),
        # The market's change_percent is in percent units already ("1.23" is 1.23%).
        change_percent=present_percent(quote.change_percent / 100),
        time=timestamp(quote.time),
        source=quote.source,
        stale=quote.stale,
    )


def stock_message(info: StockInfo, profile: StockProfile | None = None) -> portfolio_pb2.Stock:
    """`profile`: GetStock's; search results and histories come without one."""
    described = {}
    if profile is not None:
        described = {
            "sector": profile.sector,
            "industry": profile.industry,
            "country": profile.country,
            "asset_type": profile.asset_type,
        }
    return portfolio_pb2.Stock(
        symbol=info.symbol,
        name=info.name,
        exchange=info.exchange,
        currency=info.currency,
        **described,
    )


def stock_history_message(history: StockHistory) -> portfolio_pb2.GetStockHistoryResponse:
    change = history.change
    return portfolio_pb2.GetStockHistoryResponse(
        stock=stock_message(history.stock),
        range=history.range,
        start_date=history.start.isoformat(),
        end_date=history.end.isoformat(),
        closes=[
            portfolio_pb2.ValuePoint(date=day.isoformat(), value=present_price(close))
            for day, close in history.closes
        ],
        change="" if change is None else present_price(change),
        change_ratio=present_ratio(history.change_ratio),
    )


def performance_message(
    portfolio_id: str, report: PerformanceReport
) -> portfolio_pb2.GetPerformanceResponse:
    xirr = report.money_weighted_return
    gain = present_sum(report.end_value, -report.start_value, -report.inflows, report.outflows)
    return portfolio_pb2.GetPerformanceResponse(
        currency=report.currency,
        breakdown=breakdown_message(report.breakdown, gain) if report.breakdown else None,
        benchmark=benchmark_message(report.benchmark) if report.benchmark else None,
        portfolio_id=portfolio_id,
        time_weighted_return=present_ratio(report.time_weighted_return),
        money_weighted_return=present_ratio(xirr.rate),
        money_weighted_note="" if xirr.converged else xirr.reason,
        realized_gain=present_money(report.realized_gain),
        unrealized_gain=present_sum(report.market_value, -report.cost_basis),
        dividends=present_money(report.dividends),
        fees=present_money(report.fees),
        range=report.range,
        start_date=report.start.isoformat(),
        end_date=report.end.isoformat(),
        start_value=present_money(report.start_value),
        end_value=present_money(report.end_value),
        inflows=present_money(report.inflows),
        outflows=present_money(report.outflows),
        gain=gain,
        allocation=[
            portfolio_pb2.AllocationSlice(
                name=s.name, value=present_money(s.value), weight=present_ratio(s.weight)
            )
            for s in report.allocation
        ],
        series=[
            portfolio_pb2.ValuePoint(date=p.day.isoformat(), value=present_money(p.value))
            for p in report.series
        ],
        risk=risk_message(report.risk) if report.risk else None,
        risk_note=report.risk.note if report.risk else "",
    )


def risk_message(risk: RiskFigures) -> portfolio_pb2.RiskFigures:
    drawdown = risk.drawdown
    return portfolio_pb2.RiskFigures(
        max_drawdown=present_ratio(drawdown.ratio if drawdown else None),
        drawdown_peak_date=_iso(drawdown.peak if drawdown else None),
        drawdown_trough_date=_iso(drawdown.trough if drawdown else None),
        drawdown_recovery_date=_iso(drawdown.recovery if drawdown else None),
        volatility=present_ratio(risk.volatility),
        sharpe_ratio=present_ratio(risk.sharpe),
        sortino_ratio=present_ratio(risk.sortino),
        risk_free_rate=_rate_used(risk.risk_free_rate),
        trading_days=risk.trading_days,
    )


def _rate_used(rate: Decimal) -> str:
    """The risk-free rate as the ratios were worked out at: 6 places as ratios are shown, or
    the 8 it is taken with when it has more (0.0425125 is not 0.042512)."""
    shown = present_ratio(rate)
    return shown if Decimal(shown) == rate else format(rounded(rate, RISK_FREE_RATE_PLACES), "f")


def _iso(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def _parts_summing_to(
    total: str, parts: list[Decimal], present: Callable[[Decimal], str]
) -> list[str]:
    """Each part presented, the first (capital) as the presented total less the others, so the
    parts on the wire add up to the total on the wire exactly."""
    shown = [present(p) for p in parts[1:]]
    first = Decimal(total) - sum((Decimal(s) for s in shown), Decimal(0))
    return [format(first, "f"), *shown]


def breakdown_message(breakdown: Breakdown, gain: str) -> portfolio_pb2.ReturnBreakdown:
    """`gain`: the report's gain as presented, which the parts (whose exact total it is) sum
    to on the wire."""
    parts = [breakdown.capital, breakdown.dividends, breakdown.currency, breakdown.fees]
    total = gain
    money = _parts_summing_to(total, parts, present_money)
    contributions = [
        breakdown.capital_contribution,
        breakdown.dividend_contribution,
        breakdown.currency_contribution,
        breakdown.fees_contribution,
    ]
    total_contribution = present_ratio(breakdown.total_contribution)
    shares = _parts_summing_to(total_contribution, contributions, present_ratio)
    return portfolio_pb2.ReturnBreakdown(
        total_gain=total,
        capital_gain=money[0],
        dividend_gain=money[1],
        currency_gain=money[2],
        fees=money[3],
        total_contribution=total_contribution,
        capital_contribution=shares[0],
        dividend_contribution=shares[1],
        currency_contribution=shares[2],
        fees_contribution=shares[3],
    )


def benchmark_message(compared: Benchmark) -> portfolio_pb2.BenchmarkComparison:
    return portfolio_pb2.BenchmarkComparison(
        symbol=compared.symbol,
        time_weighted_return=present_ratio(compared.time_weighted_return),
        series=[
            portfolio_pb2.ValuePoint(date=p.day.isoformat(), value=present_money(p.value))
            for p in compared.series
        ],
        alpha=_alpha(compared),
        tracking_difference=present_sum(compared.portfolio_end_value, -compared.end_value),
        end_value=present_money(compared.end_value),
    )


def _alpha(compared: Benchmark) -> str:
    """The portfolio's return less the benchmark's, as the difference of the two figures shown."""
    mine, theirs = compared.portfolio_time_weighted_return, compared.time_weighted_return
    if mine is None or theirs is None:
        return ""
    return present_sum(mine, -theirs, present=present_ratio)


def fx_rate_message(rate: FxRate) -> portfolio_pb2.GetFxRateResponse:
    return portfolio_pb2.GetFxRateResponse(
        to=rate.quote,
        rate=format(rate.rate, "f"),
        date=rate.day.isoformat(),
        source=rate.source,
        **{"from": rate.base},
    )


def realized_gains_message(
    portfolio_id: str, found: RealizedPage, pagination: pagination_pb2.Pagination
) -> portfolio_pb2.ListRealizedGainsResponse:
    return portfolio_pb2.ListRealizedGainsResponse(
        portfolio_id=portfolio_id,
        cost_method=METHOD_TO_PROTO[found.report.method],
        currency=found.currency,
        gains=[realized_gain_message(row) for row in found.rows],
        totals=realized_totals_message(found.report.totals),
        pagination=pagination,
    )


def realized_gain_message(row: RealizedRow) -> portfolio_pb2.RealizedGain:
    term = {None: "", True: "long", False: "short"}[row.long_term]
    return portfolio_pb2.RealizedGain(
        symbol=row.symbol,
        trade_id=row.trade_id,
        sold_on=row.sold_on.isoformat(),
        quantity=present_quantity(row.quantity),
        proceeds=present_money(row.proceeds),
        cost_basis=present_money(row.cost_basis),
        # The difference of the two figures beside it, so that they add up on screen.
        gain=present_sum(row.proceeds, -row.cost_basis),
        acquired_on=row.acquired_on.isoformat() if row.acquired_on else "",
        holding_days=row.holding_days,
        term=term,
        cash_in_lieu=row.cash_in_lieu,
    )


def realized_totals_message(totals: RealizedTotals) -> portfolio_pb2.RealizedGainTotals:
    """Exact sums, each rounded once: `total` over all time is the portfolio's realized gain."""
    return portfolio_pb2.RealizedGainTotals(
        short_term="" if totals.short_term is None else present_money(totals.short_term),
        long_term="" if totals.long_term is None else present_money(totals.long_term),
        total=present_money(totals.gain),
        proceeds=present_money(totals.proceeds),
        cost_basis=present_money(totals.cost_basis),
    )
