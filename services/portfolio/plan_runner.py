"""The savings-plan job: every `interval` seconds (PORTFOLIO_PLAN_INTERVAL), on the replica that
leads the market only, each plan's due run dates (plans.due_runs) are bought or recorded as
skipped.

Exactly once per plan and date, stated once:

* A buy goes through `Trades.record_sized`, the path CreateTrade takes: the portfolio locked,
  its book's cash checked, all or nothing. Inside that transaction, just before it commits, the
  plan is read again (still there, not paused, same amount) and the run is noted under its
  (plan, date) key; when the key is taken (another leader, another round) or the plan changed,
  the whole transaction rolls back, trade included. So a date is bought at most once, and
  never without its run nor the reverse, whatever crashes or races.
* A skip is its run noted alone, under the same key: whichever comes first stands.
* A market that cannot price the symbol now (down, out of calls) leaves the date unnoted: it
  is tried again at the next check, until it is CATCH_UP_DAYS late and skipped as MISSED.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.domain import Side, Trade, new_trade
from services.portfolio.events import EventHub
from services.portfolio.market_data import MarketData
from services.portfolio.plan_store import PlanRepository
from services.portfolio.plans import Due, Plan, PlanRun, RunStatus, Skip, due_runs, shares_for
from services.portfolio.records import PORTFOLIO_NOT_FOUND, RecordedTrade
from services.portfolio.trades import Trades
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BATCH = 200


class _RunSettled(Exception):
    """Rolls a run's transaction back: its date was noted first elsewhere, or the plan was
    paused, changed or deleted since it was read."""


@dataclass
class RunCount:
    """What one check did."""

    done: int = 0
    skipped: int = 0


@dataclass(eq=False)
class PlanRunner:
    db: Database
    market: MarketData
    trades: Trades
    hub: EventHub
    _: KW_ONLY
    interval: float
    leading: Callable[[], bool] = lambda: True
    clock: Callable[[], datetime] = utc_now
    _task: asyncio.Task[None] | None = field(init=False, default=None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run_forever(), name="savings-plans")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def run_due(self) -> RunCount:
        """Act on every plan's due run dates; what was done and skipped here."""
        today = self.clock().astimezone(UTC).date()
        count = RunCount()
        after = ""
        while True:
            async with self.db.reading() as session:
                plans = PlanRepository(session)
                batch = await plans.after(after, BATCH)
                last = await plans.last_runs([p.id for p in batch])
            if not batch:
                return count
            after = batch[-1].id
            for plan in batch:
                latest = last.get(plan.id)
                for due in due_runs(plan, latest.day if latest else None, today):
                    try:
                        status = await self._run(plan, due)
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # one plan's failure (a database hiccup) stops only it
                        log.exception("savings plan run failed", extra={"planId": plan.id})
                        break
                    if status is RunStatus.DONE:
                        count.done += 1
                    elif status is RunStatus.SKIPPED:
                        count.skipped += 1
                    else:
                        break  # not noted now: the later dates wait behind it

    async def _run(self, plan: Plan, due: Due) -> RunStatus | None:
        """Buy or skip one due date; what was noted here (None: nothing, tried again later or
        done elsewhere)."""
        if due.skip is not None:
            return await self._skip(plan, due.day, due.skip)
        try:
            quote = await self.market.quote(plan.symbol)
        except NotFound as missing:
            return await self._skip(plan, due.day, Skip(missing.reason, missing.message))
        except (Unavailable, ResourceExhausted) as later:
            log.info(
                "savings plan waits for a price", extra={"planId": plan.id, "why": later.reason}
            )
            return None
        now = self.clock()
        trade = new_trade(
            Side.BUY,
            plan.symbol,
            Decimal(1),
            quote.price,
            Decimal(0),
            now,
            now=now,
            notes=plan.notes,
        )

        def size(priced: Trade) -> Trade:
            quantity = shares_for(plan.amount, priced.price, fractional=plan.fractional)
            return replace(priced, quantity=quantity)

        noted: PlanRun | None = None

        async def settle(session: AsyncSession, recorded: Sequence[RecordedTrade]) -> None:
            nonlocal noted
            plans = PlanRepository(session)
            current = await plans.get(plan.id)
            if current is None or current.paused or current.amount != plan.amount:
                raise _RunSettled
            one = recorded[0].trade
            run = PlanRun(
                plan.id,
                due.day,
                RunStatus.DONE,
                now,
                one.id,
                quantity=one.quantity,
                price=one.price,
            )
            if not await plans.note_run(run):
                raise _RunSettled
            noted = run

        try:
            recorded = await self.trades.record_sized(
                plan.user_id,
                plan.portfolio_id,
                trade,
                source=quote.source,
                size=size,
                settle=settle,
            )
        except _RunSettled:
            return None
        except NotFound as missing:
            if missing.reason == PORTFOLIO_NOT_FOUND:
                return None  # deleted, its plans with it
            # NO_EXCHANGE_RATE, the listing gone.
            return await self._skip(plan, due.day, Skip(missing.reason, missing.message))
        except (Unavailable, ResourceExhausted) as later:
            log.info("savings plan waits", extra={"planId": plan.id, "why": later.reason})
            return None
        except (FailedPrecondition, InvalidArgument) as refused:
            # INSUFFICIENT_CASH, AMOUNT_BELOW_ONE_SHARE, a currency we do not convert.
            return await self._skip(plan, due.day, Skip(refused.reason, refused.message))
        assert noted is not None
        log.info(
            "savings plan bought",
            extra={"planId": plan.id, "date": due.day.isoformat(), "tradeId": noted.trade_id},
        )
        await self.hub.trades_recorded(plan.user_id, [recorded])
        return RunStatus.DONE

    async def _skip(self, plan: Plan, day: date, skip: Skip) -> RunStatus | None:
        run = PlanRun(
            plan.id, day, RunStatus.SKIPPED, self.clock(), reason=skip.reason, message=skip.message
        )
        try:
            async with self.db.transaction() as session:
                noted = await PlanRepository(session).note_run(run)
        except IntegrityError:
            return None  # the plan was deleted meanwhile (its key refers to nothing)
        if noted:
            log.info(
                "savings plan run skipped",
                extra={"planId": plan.id, "date": day.isoformat(), "why": skip.reason},
            )
        return RunStatus.SKIPPED if noted else None

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if self.leading():
                    await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed round (database down) must not end the job
                log.exception("savings plans check failed")
