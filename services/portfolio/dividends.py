"""Dividends paid to paper portfolios: on each ex-date of the market's dividend calendar (the
simulated market has one), every paper portfolio holding the symbol at the close before it
receives a DIVIDEND trade of (shares held) x (dividend per share), in the stock's currency,
converted at the ex-date's rate into the portfolio's, published as the usual trade event.

Once per deployment and once per dividend: the market leader runs it (with the revaluation),
and each payout is noted in `dividend_payouts` (primary key: portfolio, symbol, ex-date) in the
transaction that records its trade, so a second round, a second leader or a retry pays nothing.
The note stays when its owner deletes the dividend's trade (trade_deletion.py): a dividend taken
back is not paid again. The note's trade is how a market-paid dividend is told from one a user
recorded: when a trade deleted or edited before its ex-date changes the shares held then
(history_rewrite.py), it is recomputed by the same two functions that paid it, `held_at_ex_date`
and `payout`; a user's figure is never changed.
Ex-dates of the last WINDOW days are looked at: a leader that was down pays them late.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.domain import Book, CashPolicy, Side, Split, Trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.market_data import MarketData
from services.portfolio.orm import dividend_payouts
from services.portfolio.records import PortfolioKind, RecordedTrade
from services.portfolio.repository import (
    PortfolioRepository,
    TradeRepository,
    splits_by_portfolio,
)
from services.portfolio.trades import Trades
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import DomainError

log = logging.getLogger(__name__)

WINDOW = timedelta(days=7)
BATCH = 200


class AlreadyPaid(Exception):
    """The payout's key is taken: another round or leader paid it first (rolls back)."""


@dataclass(frozen=True, eq=False)
class DividendPayer:
    db: Database
    market: MarketData
    trades: Trades
    hub: EventHub
    exchange: Exchange | None = None
    _: KW_ONLY
    clock: Callable[[], datetime] = utc_now

    async def pay_due(self) -> int:
        """Pay every dividend due in the window and not paid yet; how many were paid."""
        today = self.clock().astimezone(UTC).date()
        calendar = await self._calendar(today)
        if not calendar:  # most days: no ex-date in the window, nothing to read
            return 0
        paid = 0
        after = ""
        while True:
            # One snapshot: the holdings are replayed from trades and splits that agree.
            async with self.db.snapshot() as session:
                batch = await PortfolioRepository(session).after(after, BATCH)
                papers = [p for p in batch if p.kind is PortfolioKind.PAPER]
                trades = await TradeRepository(session).of_many([p.id for p in papers])
                splits = await splits_by_portfolio(session, [p.id for p in papers])
                done = await _paid(session, [p.id for p in papers])
            if not batch:
                return paid
            after = batch[-1].id
            for portfolio in papers:
                history = [r.trade for r in trades[portfolio.id]]
                bought = {t.symbol for t in history if t.side is Side.BUY}
                # A dividend the portfolio holds already (imported with its trades from an
                # export, or recorded by hand) is not paid again.
                held_dividends = {(t.symbol, t.day) for t in history if t.side is Side.DIVIDEND}
                for symbol in sorted(bought & calendar.keys()):
                    for ex_date, per_share in sorted(calendar[symbol].items()):
                        if (portfolio.id, symbol, ex_date) in done:
                            continue
                        if (symbol, ex_date) in held_dividends:
                            continue
                        held = held_at_ex_date(
                            history, splits[portfolio.id], symbol, ex_date, portfolio.kind.policy
                        )
                        if held > 0 and await self._pay(
                            portfolio.user_id, portfolio.id, symbol, ex_date, held, per_share
                        ):
                            paid += 1

    async def _calendar(self, today: date) -> dict[str, dict[date, Decimal]]:
        """Ex-dates of the window per symbol, from a market with a calendar (else none)."""
        calendar = getattr(self.market, "dividend_calendar", None)
        if calendar is None:
            return {}
        try:
            found: dict[str, dict[date, Decimal]] = await calendar(today - WINDOW, today)
        except DomainError:
            return {}
        return found

    async def _pay(
        self,
        user_id: str,
        portfolio_id: str,
        symbol: str,
        ex_date: date,
        held: Decimal,
        per_share: Decimal,
    ) -> bool:
        trade = payout(symbol, ex_date, held, per_share)
        fx = None
        currency = None
        if self.exchange is not None:
            currency = await self.exchange.portfolio_currency(user_id, portfolio_id)
            trade, fx = await self.exchange.trade_in(trade, currency)

        async def note(session: AsyncSession, recorded: Any) -> None:
            inserted = await _note_payout(session, portfolio_id, symbol, ex_date, recorded)
            if not inserted:
                raise AlreadyPaid()

        try:
            _, recorded = await self.trades.append(
                user_id, portfolio_id, [trade], settle=note, conversions=[fx], currency=currency
            )
        except AlreadyPaid:
            return False
        except DomainError as problem:
            log.info(
                "dividend not paid",
                extra={"portfolioId": portfolio_id, "symbol": symbol, "why": problem.message},
            )
            return False
        await self.hub.trades_recorded(user_id, recorded)
        return True


def payout(symbol: str, ex_date: date, held: Decimal, per_share: Decimal) -> Trade:
    """The dividend `held` shares receive: paid as of the start of the ex-date (holders at the
    close before it), `held` x `per_share` (in the portfolio's currency once converted)."""
    at = datetime.combine(ex_date, time(0, 0), tzinfo=UTC)
    return Trade(Side.DIVIDEND, symbol, held, per_share, Decimal(0), at, notes="dividend")


def held_at_ex_date(
    history: Sequence[Trade],
    splits: Sequence[Split],
    symbol: str,
    ex_date: date,
    policy: CashPolicy,
) -> Decimal:
    """Shares held at the start of the ex-date: a split effective that day counts (the
    dividend is per share as they trade that day)."""
    start = datetime.combine(ex_date, time(0, 0), tzinfo=UTC)
    before = [t for t in history if t.executed_at < start]
    split = [s for s in splits if s.effective_at <= start]
    try:
        return Book.replay(before, splits=split, policy=policy).quantity(symbol)
    except DomainError:
        return Decimal(0)


async def market_paid(session: AsyncSession, portfolio_id: str) -> set[str]:
    """The ids of the portfolio's dividend trades the payer recorded (and no one made the
    user's own since: `make_users`)."""
    query = select(dividend_payouts.c.trade_id).where(
        dividend_payouts.c.portfolio_id == portfolio_id, dividend_payouts.c.trade_id != ""
    )
    return set((await session.execute(query)).scalars().all())


async def make_users(session: AsyncSession, portfolio_id: str, trade_id: str) -> None:
    """The dividend trade is the user's figure from now on (edited by hand): never recomputed.
    Its payout stays noted, so the dividend is not paid again."""
    await session.execute(
        update(dividend_payouts)
        .where(
            dividend_payouts.c.portfolio_id == portfolio_id,
            dividend_payouts.c.trade_id == trade_id,
        )
        .values(trade_id="")
    )


async def _paid(session: AsyncSession, portfolio_ids: list[str]) -> set[tuple[str, str, date]]:
    if not portfolio_ids:
        return set()
    query = select(dividend_payouts).where(dividend_payouts.c.portfolio_id.in_(portfolio_ids))
    rows = (await session.execute(query)).all()
    return {(r.portfolio_id, r.symbol, r.ex_date) for r in rows}


async def _note_payout(
    session: AsyncSession,
    portfolio_id: str,
    symbol: str,
    ex_date: date,
    recorded: list[RecordedTrade],
) -> bool:
    """Note the payout; False when it was noted already (by whoever got there first)."""
    dialect = session.bind.dialect.name if session.bind else ""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = (
        module.insert(dividend_payouts)
        .values(
            portfolio_id=portfolio_id, symbol=symbol, ex_date=ex_date, trade_id=recorded[0].trade.id
        )
        .on_conflict_do_nothing()
        .returning(dividend_payouts.c.trade_id)
    )
    # RETURNING, not rowcount: asyncpg does not report a row count for this statement.
    return (await session.execute(statement)).first() is not None
