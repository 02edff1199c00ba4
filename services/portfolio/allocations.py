"""Target allocations of a user's own portfolios, and the rebalancing they suggest: the
portfolio is valued as its positions are (portfolios.py), the targets not held are priced in
its currency as holdings are, and rebalancing.py decides the trades. Nothing is recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.portfolio.currencies import Valuation
from services.portfolio.domain import ZERO
from services.portfolio.portfolios import Portfolios
from services.portfolio.prices import Prices, converted
from services.portfolio.rebalancing import (
    Holding,
    Plan,
    Target,
    clean_targets,
    parse_costs,
    parse_extra_cash,
    plan,
)
from services.portfolio.records import portfolio_not_found, require_portfolio_id
from services.portfolio.repository import PortfolioRepository
from services.portfolio.target_store import TargetRepository
from services.runtime.db import Database


@dataclass(frozen=True)
class Targets:
    portfolio_id: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class Rebalance:
    """A plan for a portfolio, with its currency and each priced line's listing."""

    portfolio_id: str
    currency: str
    plan: Plan
    listed: Mapping[str, Valuation]


class Allocations:
    def __init__(self, db: Database, portfolios: Portfolios, prices: Prices) -> None:
        self._db = db
        self._portfolios = portfolios
        self._prices = prices

    async def targets(self, user_id: str, portfolio_id: str) -> Targets:
        portfolio_id = require_portfolio_id(portfolio_id)
        async with self._db.reading() as session:
            if await PortfolioRepository(session).get(portfolio_id, user_id) is None:
                raise portfolio_not_found(portfolio_id)
            return Targets(portfolio_id, await TargetRepository(session).of(portfolio_id))

    async def replace(
        self, user_id: str, portfolio_id: str, raw: Sequence[tuple[str, str]]
    ) -> Targets:
        """The whole list replaced by `raw` ((symbol, weight) pairs), checked first."""
        portfolio_id = require_portfolio_id(portfolio_id)
        targets = clean_targets(raw)
        async with self._db.transaction() as session:
            # Locked: two replacements at once leave one list or the other, never a mix.
            if await PortfolioRepository(session).lock(portfolio_id, user_id) is None:
                raise portfolio_not_found(portfolio_id)
            await TargetRepository(session).replace(portfolio_id, targets)
        return Targets(portfolio_id, targets)

    async def rebalance(
        self,
        user_id: str,
        portfolio_id: str,
        *,
        cash: str = "",
        fractional: bool = False,
        fee_per_trade: str = "",
        fee_percent: str = "",
        min_trade_value: str = "",
    ) -> Rebalance:
        portfolio_id = require_portfolio_id(portfolio_id)
        extra = parse_extra_cash(cash)
        costs = parse_costs(fee_per_trade, fee_percent, min_trade_value)
        targets = (await self.targets(user_id, portfolio_id)).targets
        valued = await self._portfolios.get(user_id, portfolio_id)
        currency = valued.portfolio.base_currency
        held = {p.symbol for p in valued.positions}
        missing = {t.symbol for t in targets} - held
        listed = {**valued.listed, **await self._prices.listings(missing, currency)}
        prices = converted(listed)
        holdings = {
            p.symbol: Holding(p.symbol, p.quantity, p.market_value, prices.get(p.symbol))
            for p in valued.positions
        }
        # A target not held yet is a holding of nothing, at its price.
        holdings.update({s: Holding(s, ZERO, ZERO, prices.get(s)) for s in missing})
        suggested = plan(
            targets,
            holdings,
            valued.totals.cash,
            extra_cash=extra,
            fractional=fractional,
            costs=costs,
        )
        return Rebalance(portfolio_id, currency, suggested, listed)
