"""Exposure: where a portfolio's money is, by sector, country, asset type and trading currency.

Numbers, stated once
--------------------
Each holding counts at its position's market value as GetPortfolio shows it (half-even to the
cent, in the portfolio's currency), and the cash as GetPortfolio shows it; a bucket's value is
the exact sum of its holdings' shown values, so every breakdown adds up to the same total: the
holdings' shown values and the cash (GetPortfolio's total value, or a cent apart per position
where positions' values have sub-cent digits, as the overview says of positions). Weights are
fractions of that total rounded to 6 places so that a breakdown's add up to exactly 1 (largest
remainder, as allocations and income shares are); undefined (None) when the total is 0.

A holding whose profile the market cannot give (an unknown symbol, a provider whose budget is
spent) counts under "Unknown"; one without a quote, whose trading currency is not known now,
under "Unknown" currency. The cash is a bucket of its own in every breakdown, always listed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from services.portfolio.domain import Position
from services.portfolio.market_data import MarketData
from services.portfolio.performance import shares
from services.portfolio.portfolios import Portfolios
from services.portfolio.profiles import UNKNOWN, StockProfile, profiles_of
from services.portfolio.records import require_portfolio_id
from services.portfolio.wire_numbers import MONEY_PLACES, ZERO, rounded

CASH = "Cash"


@dataclass(frozen=True)
class Holding:
    """One open position as the breakdowns see it: its shown value and what it is."""

    symbol: str
    value: Decimal
    profile: StockProfile
    currency: str


@dataclass(frozen=True)
class Bucket:
    name: str
    value: Decimal
    weight: Decimal | None
    symbols: tuple[str, ...] = ()
    is_cash: bool = False


@dataclass(frozen=True)
class Exposure:
    portfolio_id: str
    currency: str
    total_value: Decimal
    sectors: list[Bucket]
    countries: list[Bucket]
    asset_types: list[Bucket]
    currencies: list[Bucket]


def breakdown(
    holdings: Sequence[Holding], cash: Decimal, key: Callable[[Holding], str]
) -> list[Bucket]:
    """The holdings grouped by `key` (blank: Unknown) and the cash, highest value first (then
    by name, cash after a holdings bucket of the same value), weighted to add up to 1."""
    grouped: dict[str, list[Holding]] = {}
    for holding in holdings:
        grouped.setdefault(key(holding).strip() or UNKNOWN, []).append(holding)
    named: list[tuple[str, Decimal, tuple[str, ...], bool]] = [
        (
            name,
            sum((h.value for h in members), ZERO),
            tuple(h.symbol for h in sorted(members, key=lambda h: (-h.value, h.symbol))),
            False,
        )
        for name, members in grouped.items()
    ]
    named.append((CASH, cash, (), True))
    named.sort(key=lambda b: (-b[1], b[3], b[0]))
    found = shares([value for _, value, _, _ in named])
    weights: list[Decimal | None] = list(found) if found is not None else [None] * len(named)
    return [
        Bucket(name, value, weight, symbols, is_cash)
        for (name, value, symbols, is_cash), weight in zip(named, weights, strict=True)
    ]


def exposure_of(
    portfolio_id: str,
    currency: str,
    positions: Sequence[Position],
    cash: Decimal,
    profiles: Mapping[str, StockProfile],
    currencies: Mapping[str, str],
) -> Exposure:
    """The four breakdowns of `positions` (open, valued) and `cash`, unrounded figures in;
    `currencies` holds each listed symbol's trading currency."""
    shown_cash = rounded(cash, MONEY_PLACES)
    holdings = [
        Holding(
            p.symbol,
            rounded(p.market_value, MONEY_PLACES),
            profiles.get(p.symbol, StockProfile(p.symbol)),
            currencies.get(p.symbol, UNKNOWN),
        )
        for p in positions
    ]
    total = sum((h.value for h in holdings), shown_cash)
    return Exposure(
        portfolio_id=portfolio_id,
        currency=currency,
        total_value=total,
        sectors=breakdown(holdings, shown_cash, lambda h: h.profile.sector),
        countries=breakdown(holdings, shown_cash, lambda h: h.profile.country),
        asset_types=breakdown(holdings, shown_cash, lambda h: h.profile.asset_type),
        currencies=breakdown(holdings, shown_cash, lambda h: h.currency),
    )


class Exposures:
    def __init__(self, portfolios: Portfolios, market: MarketData) -> None:
        self._portfolios = portfolios
        self._market = market

    async def exposure(self, user_id: str, portfolio_id: str) -> Exposure:
        """The user's portfolio's exposure now (NotFound for another user's portfolio)."""
        portfolio_id = require_portfolio_id(portfolio_id)
        valued = await self._portfolios.get(user_id, portfolio_id)
        profiles = await profiles_of(self._market, (p.symbol for p in valued.positions))
        return exposure_of(
            portfolio_id,
            valued.portfolio.base_currency,
            valued.positions,
            valued.totals.cash,
            profiles,
            {symbol: listing.currency for symbol, listing in valued.listed.items()},
        )
