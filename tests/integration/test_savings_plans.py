"""Savings plans on a real portfolio server, on SQLite and PostgreSQL: the RPCs (what is
refused and why, ownership, the cap, idempotent creation), and the runs the plan job makes
(services/portfolio/plan_runner.py) - a due plan buys once at the market price through the
trade path, however many jobs try at once (two runners, or two servers on one database); too
little cash, a pause, a date before the plan or too late skips it and writes nothing else.

The job is driven here by runners over the server's own database with a clock the test holds
(the servers' own jobs wait an hour, unless a test starts them faster)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.events import EventHub, Subscription
from services.portfolio.exchange import Exchange
from services.portfolio.mock_market import MockMarket
from services.portfolio.plan_runner import PlanRunner, RunCount
from services.portfolio.plans import Frequency, run_dates
from services.portfolio.prices import Prices
from services.portfolio.trades import Trades
from services.runtime.db import Database
from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    StartPortfolio,
)
from tests.rpc_errors import expect_error, fields, reason
from tests.utc_days import one_utc_day
from tests.waiting import until, until_async

D = Decimal


@contextlib.asynccontextmanager
async def runner_at(
    s: PortfolioService, clock: Callable[[], datetime]
) -> AsyncIterator[tuple[PlanRunner, Subscription]]:
    """A plan job over the server's database, at the test's clock (the market the server
    quotes: the same seed, held still), and the events it publishes."""
    db = Database(s.database_url)
    market = MockMarket(seed=7, interval=3600)
    hub = EventHub(None)
    events = hub.subscribe()
    exchange = Exchange(db, market, clock=clock)
    prices = Prices(db, market, exchange)
    trades = Trades(db, market, prices, hub, clock=clock, exchange=exchange)
    try:
        yield PlanRunner(db, market, trades, hub, interval=3600, clock=clock), events
    finally:
        await market.close()
        await db.close()


async def run_once(s: PortfolioService, at: datetime) -> RunCount:
    async with runner_at(s, lambda: at) as (runner, _):
        return await runner.run_due()


def create(portfolio_id: str, **changes: object) -> pb.CreatePlanRequest:
    fields_: dict[str, object] = {
        "portfolio_id": portfolio_id,
        "symbol": "KO",
        "amount": "500",
        "every": pb.PLAN_FREQUENCY_MONTH,
        "start_date": datetime.now(UTC).date().isoformat(),
        **changes,
    }
    return pb.CreatePlanRequest(**fields_)  # type: ignore[arg-type]


async def paper(s: PortfolioService, cash: str = "10000") -> tuple[Metadata, pb.Portfolio]:
    return await s.user_with_portfolio("Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash=cash)


async def new_plan(
    s: PortfolioService, who: Metadata, portfolio_id: str, **changes: object
) -> pb.Plan:
    reply: pb.CreatePlanResponse = await s.stub.CreatePlan(
        create(portfolio_id, **changes), metadata=who
    )
    return reply.plan


def created(plan: pb.Plan) -> datetime:
    """Just after the plan's creation, by the server's clock: its day is the plan's first."""
    return plan.created_at.ToDatetime(tzinfo=UTC) + timedelta(seconds=1)


async def runs(s: PortfolioService, who: Metadata, plan_id: str) -> list[pb.PlanRun]:
    reply = await s.stub.ListPlanRuns(pb.ListPlanRunsRequest(id=plan_id, limit=100), metadata=who)
    return list(reply.runs)


async def plan_trades(s: PortfolioService, who: Metadata, portfolio_id: str) -> list[pb.Trade]:
    reply = await s.stub.ListTrades(
        pb.ListTradesRequest(portfolio_id=portfolio_id, limit=100), metadata=who
    )
    return [t for t in reply.trades if t.notes.startswith("plan ")]


async def cash(s: PortfolioService, who: Metadata, portfolio_id: str) -> Decimal:
    reply = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=portfolio_id), metadata=who)
    return D(reply.portfolio.cash)


async def price_of(s: PortfolioService, who: Metadata, symbol: str) -> Decimal:
    reply = await s.stub.GetQuote(pb.GetQuoteRequest(symbol=symbol), metadata=who)
    return D(reply.quote.price)


# --- runs ----------------------------------------------------------------------------------------


@one_utc_day  # the plan starts today: its first run date is the day it was created
async def test_a_due_plan_buys_its_amount_once_at_the_market_price(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    plan = await new_plan(s, who, book.id, amount="500")
    assert (plan.next_run_date, plan.HasField("last_run")) == (plan.start_date, False)
    price = await price_of(s, who, "KO")

    async with runner_at(s, lambda: created(plan)) as (runner, events):
        assert await runner.run_due() == RunCount(done=1)
        assert await runner.run_due() == RunCount()  # the same day again: nothing

    (trade,) = await plan_trades(s, who, book.id)
    shares = (D(500) / price).quantize(D("0.00000001"), rounding=ROUND_DOWN)
    assert (trade.side, trade.symbol, trade.notes) == (pb.TRADE_SIDE_BUY, "KO", f"plan {plan.id}")
    assert (D(trade.quantity), D(trade.price)) == (shares, price)
    assert await cash(s, who, book.id) == (D(10000) - shares * price).quantize(D("0.01"))
    (run,) = await runs(s, who, plan.id)
    assert (run.date, run.status, run.trade_id) == (
        plan.start_date,
        pb.PLAN_RUN_STATUS_DONE,
        trade.id,
    )
    assert (D(run.quantity), D(run.price), run.reason) == (shares, price, "")
    # The owner's sockets hear of it as of any trade.
    published = await asyncio.wait_for(anext(events), 5)
    assert (published.user_id, published.trade.id) == (book.user_id, trade.id)

    shown = (await s.stub.GetPlan(pb.GetPlanRequest(id=plan.id), metadata=who)).plan
    assert shown.last_run == run
    start = date.fromisoformat(plan.start_date)
    assert (
        shown.next_run_date
        == run_dates(start, Frequency.MONTH, start, start + timedelta(days=31))[0].isoformat()
    )
    assert not run.trade_deleted

    # Its trade deleted, the run stays what the plan did that day, and says so; the day is
    # not bought again.
    await s.stub.DeleteTrade(pb.DeleteTradeRequest(id=trade.id), metadata=who)
    (after,) = await runs(s, who, plan.id)
    assert after.trade_deleted
    after.trade_deleted = False
    assert after == run
    last = (await s.stub.GetPlan(pb.GetPlanRequest(id=plan.id), metadata=who)).plan.last_run
    assert (last.trade_id, last.trade_deleted) == (trade.id, True)
    assert await run_once(s, created(plan)) == RunCount()


async def test_two_jobs_at_once_buy_each_due_date_once(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    plans: list[tuple[Metadata, str, pb.Plan]] = []
    for _ in range(3):
        who, book = await paper(s)
        for symbol in ("KO", "AAPL"):
            plans.append(
                (who, book.id, await new_plan(s, who, book.id, symbol=symbol, amount="300"))
            )
    at = max(created(p) for *_, p in plans)
    async with runner_at(s, lambda: at) as (first, _), runner_at(s, lambda: at) as (second, _):
        counts = await asyncio.gather(first.run_due(), second.run_due(), first.run_due())
    assert sum(c.done for c in counts) == len(plans)
    assert sum(c.skipped for c in counts) == 0
    for who, portfolio_id, plan in plans:
        bought = [
            t for t in await plan_trades(s, who, portfolio_id) if t.notes == f"plan {plan.id}"
        ]
        assert len(bought) == 1, plan.symbol
        (run,) = await runs(s, who, plan.id)
        assert (run.status, run.trade_id) == (pb.PLAN_RUN_STATUS_DONE, bought[0].id)
        assert await cash(s, who, portfolio_id) == D(10000) - sum(
            (D(t.quantity) * D(t.price) for t in await plan_trades(s, who, portfolio_id)), D(0)
        ).quantize(D("0.01"))


async def test_two_servers_on_one_database_buy_once_and_tell_the_owner(
    start_portfolio: StartPortfolio,
) -> None:
    # Both lead their own market (no shared cache): two plan jobs on one database, every 50 ms,
    # as two leaders would during a handover.
    fast = {"PORTFOLIO_PLAN_INTERVAL": "0.05", "PORTFOLIO_REVALUE_INTERVAL": "0.1"}
    async with start_portfolio(**fast) as a, start_portfolio(**fast) as b:
        heard: list[pb.StreamPortfolioEventsResponse] = []

        async def listen(server: PortfolioService) -> None:
            stream = server.stub.StreamPortfolioEvents(
                pb.StreamPortfolioEventsRequest(), metadata=server.service_token()
            )
            async for event in stream:
                heard.append(event)

        listeners = [asyncio.create_task(listen(x)) for x in (a, b)]
        try:
            who, book = await paper(a)
            # Both streams are open before the plan exists: each has told of a deposit.
            deposits = {(await x.trade(who, book.id, "deposit", "1")).id for x in (a, b)}
            await until(lambda: deposits <= {e.trade.id for e in heard}, "both streams")
            plan = await new_plan(a, who, book.id, amount="250")

            async def ran() -> bool:
                return len(await runs(b, who, plan.id)) == 1

            await until_async(ran, "the plan's run")
            await until(
                lambda: any(e.trade.notes == f"plan {plan.id}" for e in heard), "the trade event"
            )
            await until(
                lambda: any(e.portfolio_value.portfolio_id == book.id for e in heard),
                "the portfolio's value with its new position",
            )
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
        (trade,) = await plan_trades(a, who, book.id)
        (run,) = await runs(a, who, plan.id)
        assert (run.status, run.trade_id) == (pb.PLAN_RUN_STATUS_DONE, trade.id)
        # A third job, later the same day, finds nothing due.
        assert await run_once(a, created(plan)) == RunCount()
        assert len(await plan_trades(a, who, book.id)) == 1
        told = {e.trade.id for e in heard if e.trade.notes == f"plan {plan.id}"}
        assert told == {trade.id}
        assert all(e.user_id == book.user_id for e in heard if e.trade.id == trade.id)


async def test_too_little_cash_skips_the_run_and_writes_nothing_else(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s, cash="100")
    plan = await new_plan(s, who, book.id, amount="500")
    assert await run_once(s, created(plan)) == RunCount(skipped=1)
    (run,) = await runs(s, who, plan.id)
    assert (run.status, run.reason, run.trade_id) == (
        pb.PLAN_RUN_STATUS_SKIPPED,
        "INSUFFICIENT_CASH",
        "",
    )
    assert "cash" in run.message
    assert await cash(s, who, book.id) == D(100)
    assert await plan_trades(s, who, book.id) == []
    assert await s.trade_count(who, book.id) == 1  # the opening deposit alone
    # Cash brought in later does not buy the skipped date again.
    await s.trade(who, book.id, "deposit", "1000")
    assert await run_once(s, created(plan)) == RunCount()
    assert await plan_trades(s, who, book.id) == []


async def test_whole_shares_leave_the_rest_as_cash_and_less_than_one_share_is_skipped(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    price = await price_of(s, who, "KO")
    whole = await new_plan(
        s, who, book.id, amount=str((price * D("2.5")).quantize(D("0.01"))), fractional=False
    )
    tiny = await new_plan(s, who, book.id, amount="1", fractional=False)
    assert await run_once(s, created(tiny)) == RunCount(done=1, skipped=1)
    (trade,) = await plan_trades(s, who, book.id)
    assert (trade.notes, D(trade.quantity)) == (f"plan {whole.id}", D(2))
    assert await cash(s, who, book.id) == (D(10000) - 2 * price).quantize(D("0.01"))
    (run,) = await runs(s, who, tiny.id)
    assert (run.status, run.reason) == (pb.PLAN_RUN_STATUS_SKIPPED, "AMOUNT_BELOW_ONE_SHARE")


async def test_a_paused_plan_does_not_buy_and_resumed_it_buys_from_its_next_date(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    plan = await new_plan(s, who, book.id, every=pb.PLAN_FREQUENCY_WEEK, paused=True)
    assert (plan.paused, plan.next_run_date) == (True, "")
    assert await run_once(s, created(plan)) == RunCount(skipped=1)
    (run,) = await runs(s, who, plan.id)
    assert (run.status, run.reason) == (pb.PLAN_RUN_STATUS_SKIPPED, "PAUSED")

    resumed = await s.stub.UpdatePlan(pb.UpdatePlanRequest(id=plan.id, paused=False), metadata=who)
    next_week = (date.fromisoformat(plan.start_date) + timedelta(days=7)).isoformat()
    assert (resumed.plan.paused, resumed.plan.next_run_date) == (False, next_week)
    assert resumed.plan.amount == "500.00"  # the fields left out stay
    assert await run_once(s, created(plan)) == RunCount()  # the paused date stays skipped
    assert await run_once(s, created(plan) + timedelta(days=7)) == RunCount(done=1)
    (trade,) = await plan_trades(s, who, book.id)
    latest, first = await runs(s, who, plan.id)
    assert (latest.date, latest.trade_id, first.reason) == (next_week, trade.id, "PAUSED")


async def test_a_past_start_is_not_bought_at_todays_price_and_late_runs_are_missed(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    past = await new_plan(
        s, who, book.id, start_date=(datetime.now(UTC).date() - timedelta(days=45)).isoformat()
    )
    weekly = await new_plan(s, who, book.id, every=pb.PLAN_FREQUENCY_WEEK)
    # Back after five days down: this week's date is too late, the past ones were never due.
    assert await run_once(s, created(weekly) + timedelta(days=5)) == RunCount(skipped=3)
    skipped = await runs(s, who, past.id)
    start = date.fromisoformat(past.start_date)
    due = run_dates(start, Frequency.MONTH, None, created(past).date() + timedelta(days=5))
    assert len(due) == 2 and len(skipped) == 2  # 45 days back: two run dates before creation
    assert {r.reason for r in skipped} == {"BEFORE_PLAN"}
    assert all("before the plan was created" in r.message for r in skipped)
    (missed,) = await runs(s, who, weekly.id)
    assert (missed.date, missed.reason) == (weekly.start_date, "MISSED")
    assert await plan_trades(s, who, book.id) == []
    # Back within three days of the next date: it buys, once.
    at = created(weekly) + timedelta(days=9)
    assert await run_once(s, at) == RunCount(done=1)
    assert await run_once(s, at) == RunCount()
    (trade,) = await plan_trades(s, who, book.id)
    assert trade.notes == f"plan {weekly.id}"


# --- the RPCs --------------------------------------------------------------------------------


async def test_a_tracking_portfolio_refuses_a_plan_and_bad_input_names_its_field(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    tracking = await s.portfolio(who, "Real", kind=pb.PORTFOLIO_KIND_TRACKING)
    error = await expect_error(
        s.stub.CreatePlan(create(tracking.id), metadata=who), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "PLANS_NEED_PAPER_PORTFOLIO"
    assert "paper" in (error.details() or "")

    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"amount": "0"}, ["amount"]),
        ({"amount": "10.001"}, ["amount"]),
        ({"amount": ""}, ["amount"]),
        ({"every": pb.PLAN_FREQUENCY_UNSPECIFIED}, ["every"]),
        ({"start_date": "7 Dec 2026"}, ["startDate"]),  # the proto's rule
        ({"start_date": "2026-02-30"}, ["startDate"]),  # the service's
        ({"start_date": "2031-01-01"}, ["startDate"]),
        ({"symbol": "not a symbol"}, ["symbol"]),
    ]
    for changes, named in cases:
        error = await expect_error(
            s.stub.CreatePlan(create(book.id, **changes), metadata=who),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields(error) == named, changes
    error = await expect_error(
        s.stub.CreatePlan(create(book.id, symbol="ZZZZQ"), metadata=who), grpc.StatusCode.NOT_FOUND
    )
    assert "ZZZZQ" in (error.details() or "")
    plan = await new_plan(s, who, book.id)
    error = await expect_error(
        s.stub.UpdatePlan(pb.UpdatePlanRequest(id=plan.id, amount="-5"), metadata=who),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert fields(error) == ["amount"]
    listed = await s.stub.ListPlans(pb.ListPlansRequest(portfolio_id=book.id), metadata=who)
    assert [p.id for p in listed.plans] == [plan.id]
    assert listed.plans[0].amount == "500.00"


async def test_another_users_plans_do_not_exist_for_them(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    plan = await new_plan(s, who, book.id)
    other = await s.user()
    for call in (
        s.stub.GetPlan(pb.GetPlanRequest(id=plan.id), metadata=other),
        s.stub.UpdatePlan(pb.UpdatePlanRequest(id=plan.id, paused=True), metadata=other),
        s.stub.DeletePlan(pb.DeletePlanRequest(id=plan.id), metadata=other),
        s.stub.ListPlanRuns(pb.ListPlanRunsRequest(id=plan.id), metadata=other),
        s.stub.ListPlans(pb.ListPlansRequest(portfolio_id=book.id), metadata=other),
        s.stub.CreatePlan(create(book.id), metadata=other),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND)
    still = (await s.stub.GetPlan(pb.GetPlanRequest(id=plan.id), metadata=who)).plan
    assert (still.paused, still.id) == (False, plan.id)
    await s.stub.DeletePlan(pb.DeletePlanRequest(id=plan.id), metadata=who)
    await expect_error(
        s.stub.GetPlan(pb.GetPlanRequest(id=plan.id), metadata=who), grpc.StatusCode.NOT_FOUND
    )


async def test_a_portfolio_holds_at_most_50_plans_and_a_key_creates_one(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, book = await paper(s)
    keyed = (*who, ("idempotency-key", "plan-1"))
    first = await s.stub.CreatePlan(create(book.id), metadata=keyed)
    again = await s.stub.CreatePlan(create(book.id), metadata=keyed)
    assert again == first
    for _ in range(49):
        await new_plan(s, who, book.id, amount="10")
    error = await expect_error(
        s.stub.CreatePlan(create(book.id), metadata=who), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "TOO_MANY_PLANS"
    page = await s.stub.ListPlans(
        pb.ListPlansRequest(portfolio_id=book.id, limit=20, page=3), metadata=who
    )
    assert (len(page.plans), page.pagination.total, page.pagination.total_pages) == (10, 50, 3)
    await s.stub.DeletePlan(pb.DeletePlanRequest(id=first.plan.id), metadata=who)
    await new_plan(s, who, book.id)  # room again
