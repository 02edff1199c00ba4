"""The overview of all of a user's portfolios in one currency: totals, one row per portfolio,
the holdings by symbol across them and the rates used.

Numbers, stated once
--------------------
Every money figure is built from the figures a user already sees: each portfolio's figure as
GetPortfolio shows it (rounded half-even to the cent, in the portfolio's currency; a position's
as its row shows it) times that portfolio's rate into the overview's currency (today's, from
the same source that values holdings in other currencies), each product rounded half-even to
the cent. A total is the exact sum of those products, so a portfolio's row in the overview's
currency times nothing more than its listed rate reproduces it, and the rows' values add up
to the total value exactly. A gain is the difference of the figures shown beside it (total
value less total cost; a holding's market value less its cost basis), as everywhere else.
Figures summed in different groupings (holdings plus cash against the total value) can be
a cent apart per portfolio, as positions are against a portfolio's total. Weights are
fractions rounded to 6 places so that they add up to exactly 1 (largest remainder): the
portfolios' of the total value, the holdings' and the cash's of their own sum (the
allocation, as the performance report's).

Consistency
-----------
Every portfolio of the user is read in one snapshot (REPEATABLE READ on PostgreSQL, one read
transaction on SQLite): the overview is one moment of the database across all of them, as
GetPortfolio is of one. All are valued at one quote per symbol and one rate per currency, so
a symbol held in two portfolios has one price. Quotes and rates are those of the moment the
overview is made, not of the snapshot: a GetPortfolio made a moment later may see the market
moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from services.portfolio.currencies import ONE, FxRate, require_currency
from services.portfolio.exchange import Exchange
from services.portfolio.performance import AllocationSlice, allocation, shares
from services.portfolio.portfolios import Portfolios, Valued
from services.portfolio.records import DEFAULT_CURRENCY, PortfolioKind
from services.portfolio.wire_numbers import MONEY_PLACES, ZERO, ratio, rounded
from services.runtime.clock import utc_now


def cents(value: Decimal) -> Decimal:
    """Money as the wire shows it: half-even to the cent."""
    return rounded(value, MONEY_PLACES)


@dataclass(frozen=True)
class Figures:
    """A portfolio's money as GetPortfolio shows it (or those figures converted): to the cent."""

    total_value: Decimal
    cash: Decimal
    total_cost: Decimal
    cost_basis: Decimal
    realized_gain: Decimal
    unrealized_gain: Decimal
    dividends: Decimal
    fees: Decimal

    @staticmethod
    def shown(valued: Valued) -> Figures:
        t = valued.totals
        return Figures(
            total_value=cents(t.total_value),
            cash=cents(t.cash),
            total_cost=cents(t.total_cost),
            cost_basis=cents(t.cost_basis),
            realized_gain=cents(t.realized_gain),
            # GetPortfolio shows it as the market value less the cost basis, each rounded.
            unrealized_gain=cents(t.market_value) - cents(t.cost_basis),
            dividends=cents(t.dividends),
            fees=cents(t.fees),
        )

    def at(self, rate: Decimal) -> Figures:
        return Figures(*(cents(getattr(self, name) * rate) for name in _FIGURES))

    def plus(self, other: Figures) -> Figures:
        return Figures(*(getattr(self, name) + getattr(other, name) for name in _FIGURES))

    @property
    def total_gain_loss(self) -> Decimal:
        return self.total_value - self.total_cost

    @property
    def total_return(self) -> Decimal | None:
        """The gain as a fraction of the money put in; None when none was."""
        return ratio(self.total_gain_loss, self.total_cost)


_FIGURES = tuple(Figures.__dataclass_fields__)
NOTHING = Figures(ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO, ZERO)


@dataclass(frozen=True)
class PortfolioRow:
    id: str
    name: str
    kind: PortfolioKind
    currency: str
    local_value: Decimal  # in `currency`, as GetPortfolio shows it
    rate: Decimal  # into the overview's currency
    value: Decimal  # local_value x rate, to the cent
    weight: Decimal | None  # value / the total value (None when the total is 0)


@dataclass(frozen=True)
class Holding:
    symbol: str
    quantity: Decimal
    market_value: Decimal
    cost_basis: Decimal
    weight: Decimal | None  # as its allocation slice's (None when there is nothing to share)
    portfolio_count: int
    currency: str = ""  # the listing's; "" without a quote
    local_price: Decimal | None = None

    @property
    def unrealized_gain(self) -> Decimal:
        return self.market_value - self.cost_basis


@dataclass(frozen=True)
class Overview:
    currency: str
    totals: Figures
    portfolios: list[PortfolioRow]
    holdings: list[Holding]
    # The holdings' market values and the cash: weights of their sum, adding up to 1.
    allocation: list[AllocationSlice]
    rates: list[FxRate]
    as_of: datetime


def consolidate(
    currency: str, valued: Sequence[Valued], rates: Mapping[str, FxRate], as_of: datetime
) -> Overview:
    """The overview of `valued` in `currency`; `rates` holds the rate into `currency` of each
    portfolio currency other than it. Weights are fractions rounded so that they add up to
    exactly 1 (largest remainder), the portfolios' and the allocation's alike."""

    def rate_of(v: Valued) -> Decimal:
        own = v.portfolio.base_currency
        return ONE if own == currency else rates[own].rate

    converted = [Figures.shown(v).at(rate_of(v)) for v in valued]
    totals = NOTHING
    for figures in converted:
        totals = totals.plus(figures)
    found = shares([f.total_value for f in converted])
    weights: list[Decimal | None] = list(found) if found is not None else [None] * len(valued)
    rows = [
        PortfolioRow(
            id=v.portfolio.id,
            name=v.portfolio.name,
            kind=v.portfolio.kind,
            currency=v.portfolio.base_currency,
            local_value=cents(v.totals.total_value),
            rate=rate_of(v),
            value=figures.total_value,
            weight=share,
        )
        for v, figures, share in zip(valued, converted, weights, strict=True)
    ]
    held = _holdings(valued, rate_of)
    slices = allocation({h.symbol: h.market_value for h in held}, totals.cash)
    weight_of: dict[str, Decimal | None] = {s.name: s.weight for s in slices if not s.is_cash}
    holdings = [replace(h, weight=weight_of.get(h.symbol, ZERO if slices else None)) for h in held]
    used = sorted({v.portfolio.base_currency for v in valued} - {currency})
    return Overview(
        currency=currency,
        totals=totals,
        portfolios=rows,
        holdings=holdings,
        allocation=slices,
        rates=[rates[c] for c in used],
        as_of=as_of,
    )


def _holdings(valued: Sequence[Valued], rate_of: Callable[[Valued], Decimal]) -> list[Holding]:
    """Each symbol's open positions across the portfolios, by market value, highest first
    (unweighted)."""
    quantity: dict[str, Decimal] = {}
    value: dict[str, Decimal] = {}
    basis: dict[str, Decimal] = {}
    count: dict[str, int] = {}
    listing: dict[str, tuple[str, Decimal]] = {}
    for v in valued:
        rate = rate_of(v)
        for position in v.positions:
            symbol = position.symbol
            quantity[symbol] = quantity.get(symbol, ZERO) + position.quantity
            value[symbol] = value.get(symbol, ZERO) + cents(cents(position.market_value) * rate)
            basis[symbol] = basis.get(symbol, ZERO) + cents(cents(position.cost_basis) * rate)
            count[symbol] = count.get(symbol, 0) + 1
            listed = v.listed.get(symbol)
            if listed is not None:
                listing[symbol] = (listed.currency, listed.local_price)
    found = [
        Holding(
            symbol=symbol,
            quantity=quantity[symbol],
            market_value=value[symbol],
            cost_basis=basis[symbol],
            weight=None,
            portfolio_count=count[symbol],
            currency=listing[symbol][0] if symbol in listing else "",
            local_price=listing[symbol][1] if symbol in listing else None,
        )
        for symbol in quantity
    ]
    return sorted(found, key=lambda h: (-h.market_value, h.symbol))


class Overviews:
    def __init__(
        self,
        portfolios: Portfolios,
        exchange: Exchange,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._portfolios = portfolios
        self._exchange = exchange
        self._clock = clock

    async def overview(self, user_id: str, currency: str) -> Overview:
        """The user's own portfolios (an admin's too: only their own) in `currency` (absent:
        USD; one the service does not keep is a 422 naming `currency`). A user with none gets
        zeros and empty lists."""
        currency = require_currency(currency.strip() or DEFAULT_CURRENCY, "currency")
        valued = await self._portfolios.every(user_id)
        as_of = self._clock().astimezone(UTC)
        wanted = sorted({v.portfolio.base_currency for v in valued} - {currency})
        rates = {c: await self._exchange.rate(c, currency) for c in wanted}
        return consolidate(currency, valued, rates, as_of)
