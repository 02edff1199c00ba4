"""Splits from the market, recorded in every portfolio that held the stock: on each effective
date of the market's split calendar (split_calendar.py; the simulated market's schedule, Alpha
Vantage's SPLITS for the symbols portfolios hold or held), every portfolio, tracking or paper,
holding shares of the symbol at the start of that day gets the split recorded as CreateSplit
records one (splits.py: under its lock, its whole history replayed, cash in lieu, open orders
adjusted, its owner's sockets told), whether it still holds them or has sold them all since.

Once per deployment and once per split: the market leader runs it (with the revaluation and
the dividends), and each split it records is noted in `market_split_notes` (primary key:
portfolio, symbol, effective date) in the transaction that records it, so a second round, a
second leader or a retry records nothing more. The note stays when the owner deletes the split:
a split taken back is not recorded again. A portfolio that has a split of that symbol on that
day already (recorded by hand, or imported), or one of the same ratio within NEAR days of it
(recorded by hand on the announcement's day, or a day off), is left as it is: a split recorded
twice would multiply the holding twice. One whose history would not hold with the split (a
later sell of more shares than a reverse split leaves) is logged and left too, nothing
written, and tried again when its history changes. Effective dates of the last WINDOW days are
looked at in every portfolio (a leader that was down records them late), and the whole calendar
in a portfolio whose history changed since the last round (by its stored book), and in every
portfolio at a leader's first round and once a day (a provider that answers a symbol's splits
only some rounds later, within its budget, is caught up): a trade back-dated before an older
split (an import of years of history) has the split recorded too. Each round reads every
stored book and digests its text as stored; only a book whose text differs from what the last
round read is decoded (the symbols each traded are kept from round to round on the leader):
most rounds decode none.

The calendar is asked about the symbols held at some time over the days looked at: held now,
or bought or sold since the window's start (one sold since may have split before the sale,
and nobody may hold it now), and any symbol ever traded in a portfolio looked at in full. A
provider answers a few symbols a round within its budget (alpha_vantage.py), so a symbol held
only long ago is asked in the rounds that look at its portfolio in full, not in every round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.decoded_books import BookRound, DecodedBooks
from services.portfolio.dividends import held_at_ex_date
from services.portfolio.domain import Book, Side, TradedSymbols
from services.portfolio.market_data import SplitSource
from services.portfolio.orm import market_split_notes
from services.portfolio.records import Portfolio, SplitEffect
from services.portfolio.repository import (
    PortfolioRepository,
    SplitRepository,
    TradeRepository,
    splits_by_portfolio,
)
from services.portfolio.split_calendar import SplitCalendar, SplitRatio
from services.portfolio.splits import SplitDraft, Splits
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import AlreadyExists, DomainError

log = logging.getLogger(__name__)

WINDOW = timedelta(days=7)
NEAR = timedelta(days=7)
# The whole calendar, for a portfolio whose history changed: older than any trade.
HISTORY_START = date(1970, 1, 1)
# Every portfolio is looked at in full this often.
FULL_EVERY = timedelta(days=1)
BATCH = 200


class AlreadyNoted(Exception):
    """The split is recorded already (rolls back): its note is taken by another round or
    leader, or the owner recorded it by hand since the round's snapshot."""


class SplitApplier:
    def __init__(
        self,
        db: Database,
        market: object,
        splits: Splits,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`market`: a source with a `split_calendar` (market_data.SplitSource); without one,
        nothing is ever recorded. `splits`: what records a split (the one CreateSplit uses)."""
        self._db = db
        self._market = market
        self._splits = splits
        self._clock = clock
        # Splits a portfolio's history refused, logged once per process.
        self._refused: set[tuple[str, str, date]] = set()
        # The symbols each stored book traded, by the digest of its text as the last round
        # read it (decoded_books.py): a book whose text differs, or a portfolio not read yet,
        # changed its history since and is looked at in full; one whose text is the same is
        # not decoded again.
        self._books = DecodedBooks(lambda book: TradedSymbols.of(book.state.holdings))
        self._full_at: datetime | None = None  # when every portfolio was last looked at in full

    @property
    def decoded(self) -> int:
        """Stored books decoded so far: one per book new or changed since the round before."""
        return self._books.decoded

    async def apply_due(self) -> int:
        """Record every split due and not recorded yet; how many were."""
        now = self._clock()
        today = now.astimezone(UTC).date()
        if getattr(self._market, "split_calendar", None) is None:
            return 0
        everyone = self._full_at is None or now - self._full_at >= FULL_EVERY
        books = self._books.round()
        held, changed = await self._held_symbols(books, everyone, today - WINDOW)
        applied = await self._apply(today, held, changed)
        # Only now that every change was looked at: a round that failed looks again.
        books.finish()
        if everyone:
            self._full_at = now
        return applied

    async def _apply(self, today: date, held: set[str], changed: set[str]) -> int:
        if not held:
            return 0
        recent_start = today - WINDOW
        calendar = await self._calendar(HISTORY_START if changed else recent_start, today, held)
        recent = {
            symbol: found
            for symbol, days in calendar.items()
            if (found := {day: ratio for day, ratio in days.items() if day >= recent_start})
        }
        if not recent and not (changed and calendar):
            return 0  # most rounds: no split in the window, no history changed: nothing to read
        applied = 0
        after = ""
        while True:
            # One snapshot: the holdings are replayed from trades and splits that agree.
            async with self._db.snapshot() as session:
                batch = await PortfolioRepository(session).after(after, BATCH)
                # Every portfolio for a split in the window; else only those that changed.
                batch_checked = [p for p in batch if recent or p.id in changed]
                ids = [p.id for p in batch_checked]
                trades = await TradeRepository(session).of_many(ids)
                splits = await splits_by_portfolio(session, ids)
                noted = await _noted(session, ids)
            if not batch:
                return applied
            after = batch[-1].id
            for portfolio in batch_checked:
                due = calendar if portfolio.id in changed else recent
                history = [r.trade for r in trades[portfolio.id]]
                bought = {t.symbol for t in history if t.side is Side.BUY}
                recorded = [(s.symbol, s.day, (s.ratio, s.of)) for s in splits[portfolio.id]]
                for symbol in sorted(bought & due.keys()):
                    for day, ratio in sorted(due[symbol].items()):
                        if (portfolio.id, symbol, day) in noted:
                            continue
                        if _recorded_already(recorded, symbol, day, ratio):
                            continue
                        shares = held_at_ex_date(
                            history, splits[portfolio.id], symbol, day, portfolio.kind.policy
                        )
                        if shares > 0 and await self._record(portfolio, symbol, day, ratio):
                            applied += 1

    async def _calendar(self, start: date, today: date, held: set[str]) -> SplitCalendar:
        source = cast(SplitSource, self._market)
        try:
            found = await source.split_calendar(start, today, held)
        except DomainError as problem:
            log.info("split calendar not read", extra={"why": problem.reason})
            return {}
        return found

    async def _held_symbols(
        self, books: BookRound[TradedSymbols], everyone: bool, recent_start: date
    ) -> tuple[set[str], set[str]]:
        """Symbols some portfolio held over the days it is looked at (what a provider is asked
        about): since `recent_start`, or in all its history when it changed; from the stored
        books, read in `books` (a portfolio without one is replayed). And the portfolios whose
        book changed since the last round (`everyone`: all; one without a stored book always
        counts as changed)."""
        recent = datetime.combine(recent_start, time(), UTC)
        ever = datetime.combine(HISTORY_START, time(), UTC)
        held: set[str] = set()
        changed: set[str] = set()
        after = ""
        while True:
            async with self._db.snapshot() as session:
                repository = PortfolioRepository(session)
                batch = await repository.after(after, BATCH)
                stored = books.read(await repository.book_texts([p.id for p in batch]))
                missing = [p.id for p in batch if p.id not in stored]
                trades = await TradeRepository(session).of_many(missing) if missing else {}
                splits = await splits_by_portfolio(session, missing) if missing else {}
            if not batch:
                return held, changed
            after = batch[-1].id
            for portfolio in batch:
                traded = stored.get(portfolio.id)
                if traded is None:
                    changed.add(portfolio.id)
                    try:
                        traded = Book.replay(
                            [r.trade for r in trades[portfolio.id]],
                            splits=splits[portfolio.id],
                            policy=portfolio.kind.policy,
                        ).traded_symbols()
                    except DomainError:  # the revaluation logs a history that does not replay
                        continue
                elif everyone or portfolio.id in books.changed:
                    changed.add(portfolio.id)
                held.update(traded.since(ever if portfolio.id in changed else recent))

    async def _record(
        self, portfolio: Portfolio, symbol: str, day: date, ratio: SplitRatio
    ) -> bool:
        new, old = ratio
        draft = SplitDraft(symbol=symbol, date=day.isoformat(), numerator=new, denominator=old)

        async def note(session: AsyncSession, effect: SplitEffect) -> None:
            # Under the portfolio's lock, asked again: a split of the same ratio the owner
            # recorded a day off since the snapshot is the same split (CreateSplit refuses only
            # the same day).
            others = [
                (r.split.symbol, r.split.day, (r.split.ratio, r.split.of))
                for r in await SplitRepository(session).of(portfolio.id)
                if r.id != effect.recorded.id
            ]
            if _recorded_already(others, symbol, day, ratio):
                raise AlreadyNoted()
            if not await _note(session, portfolio.id, symbol, day, effect.recorded.id):
                raise AlreadyNoted()

        where = {"portfolioId": portfolio.id, "symbol": symbol, "date": day.isoformat()}
        try:
            effect = await self._splits.create(portfolio.user_id, portfolio.id, draft, settle=note)
        except AlreadyNoted:
            return False
        except AlreadyExists:  # recorded by hand (or by another leader) since the snapshot
            return False
        except DomainError as problem:
            key = (portfolio.id, symbol, day)
            if key not in self._refused:
                self._refused.add(key)
                log.warning("market split not recorded", extra={**where, "why": problem.message})
            return False
        log.info(
            "market split recorded",
            extra={
                **where,
                "ratio": f"{new}:{old}",
                "before": str(effect.quantity_before),
                "after": str(effect.quantity_after),
            },
        )
        return True


def _recorded_already(
    recorded: list[tuple[str, date, tuple[Decimal, int]]],
    symbol: str,
    day: date,
    ratio: SplitRatio,
) -> bool:
    """A split of `symbol` on `day`, or of the same ratio within NEAR days, is recorded."""
    new, old = ratio
    for other, other_day, (other_new, other_old) in recorded:
        if other != symbol:
            continue
        if other_day == day:
            return True
        # Compared as fractions: 10:1 is 10:1 however a portfolio stated it.
        same_ratio = other_new * old == Decimal(new) * other_old
        if same_ratio and abs(other_day - day) <= NEAR:
            return True
    return False


async def _noted(session: AsyncSession, portfolio_ids: list[str]) -> set[tuple[str, str, date]]:
    if not portfolio_ids:
        return set()
    query = select(market_split_notes).where(market_split_notes.c.portfolio_id.in_(portfolio_ids))
    rows = (await session.execute(query)).all()
    return {(r.portfolio_id, r.symbol, r.effective_date) for r in rows}


async def _note(
    session: AsyncSession, portfolio_id: str, symbol: str, day: date, split_id: str
) -> bool:
    """Note the split; False when it was noted already (by whoever got there first)."""
    dialect = session.bind.dialect.name if session.bind else ""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = (
        module.insert(market_split_notes)
        .values(portfolio_id=portfolio_id, symbol=symbol, effective_date=day, split_id=split_id)
        .on_conflict_do_nothing()
        .returning(market_split_notes.c.split_id)
    )
    # RETURNING, not rowcount: asyncpg does not report a row count for this statement.
    return (await session.execute(statement)).first() is not None
