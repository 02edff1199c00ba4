"""Figures shown beside each other add up on the wire: a gain is the difference of the figures it
is made of as they are shown (each rounded on its own, 18.95 less a cost of 10.005 shown as 10.00
made a gain of 8.94), in a portfolio's answer and in the live `portfolio_value` a socket gets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from services.portfolio.domain import Totals
from services.portfolio.events import EventHub
from services.portfolio.messages import portfolio_message
from services.portfolio.records import Portfolio, PortfolioKind

D = Decimal


def half_cent_totals() -> Totals:
    """0.1 share bought at 100.05 (a cost of 10.005), now worth 18.95."""
    return Totals(
        cash=D(0),
        market_value=D("18.95"),
        total_value=D("18.95"),
        cost_basis=D("10.005"),
        total_cost=D("10.005"),
        total_gain_loss=D("8.945"),
        total_return=D("8.945") / D("10.005"),
        realized_gain=D(0),
        unrealized_gain=D("8.945"),
        dividends=D(0),
        fees=D(0),
        deposits=D("10.005"),
        withdrawals=D(0),
        funded=D(0),
    )


def portfolio() -> Portfolio:
    now = datetime.now(UTC)
    return Portfolio("p1", "ann", "Main", "", "USD", PortfolioKind.TRACKING, now, now)


def test_a_portfolios_gains_are_the_differences_of_the_figures_shown() -> None:
    shown = portfolio_message(portfolio(), half_cent_totals(), [])
    assert (shown.total_value, shown.total_cost, shown.cost_basis) == ("18.95", "10.00", "10.00")
    assert shown.total_gain_loss == "8.95"
    # The unrealized gain beside the cost basis (and the value less the cash).
    assert shown.unrealized_gain == "8.95"


async def test_the_live_portfolio_value_shows_the_gain_the_portfolio_shows() -> None:
    # The dashboard takes the socket's figure as the authority: it flipped 8.95 / 8.94.
    hub = EventHub(None)
    events = hub.subscribe()
    await hub.portfolio_valued("ann", "p1", half_cent_totals(), datetime.now(UTC))
    pushed = (await asyncio.wait_for(anext(events), 5)).portfolio_value
    assert (pushed.total_value, pushed.total_gain_loss) == ("18.95", "8.95")
