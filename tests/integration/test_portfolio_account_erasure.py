"""A deleted account's data in the portfolio service: erased by the service's follower of the
users service's deletions soon after, on SQLite and PostgreSQL, every table of it (portfolios,
trades, orders, savings plans, targets, watchlists, alerts, kept Idempotency-Key responses),
while another user's stays whole; erasing twice is harmless."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from stockfolio.portfolio.v1 import portfolio_pb2 as pb
from stockfolio.users.v1 import users_pb2

from services.portfolio.erasure import AccountErasure
from services.portfolio.orm import (
    alerts,
    idempotency_keys,
    orders,
    portfolio_targets,
    portfolios,
    savings_plans,
    trades,
    watchlists,
)
from services.runtime.db import Database
from tests.integration.portfolio_harness import PASSWORD, Metadata, PortfolioService, StartPortfolio
from tests.waiting import until_async

# By owner; the rest by the owner's portfolios.
BY_OWNER = (portfolios, orders, savings_plans, watchlists, alerts, idempotency_keys)
BY_PORTFOLIO = (trades, portfolio_targets)


async def holdings(s: PortfolioService, who: Metadata) -> None:
    """Something in every kind of row the service keeps for a user."""
    made = await s.stub.CreatePortfolio(
        pb.CreatePortfolioRequest(name="Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="10000"),
        metadata=(*who, ("idempotency-key", "first-portfolio")),
    )
    portfolio_id = made.portfolio.id
    await s.trade(who, portfolio_id, "buy", "2", symbol="KO")
    await s.stub.CreateOrder(
        pb.CreateOrderRequest(
            portfolio_id=portfolio_id,
            symbol="KO",
            side=pb.TRADE_SIDE_BUY,
            type=pb.ORDER_TYPE_LIMIT,
            quantity="1",
            limit_price="1",
            time_in_force=pb.TIME_IN_FORCE_GTC,
        ),
        metadata=who,
    )
    await s.stub.CreatePlan(
        pb.CreatePlanRequest(
            portfolio_id=portfolio_id,
            symbol="KO",
            amount="100",
            every=pb.PLAN_FREQUENCY_MONTH,
            start_date=datetime.now(UTC).date().isoformat(),
        ),
        metadata=who,
    )
    await s.stub.UpdatePortfolioTargets(
        pb.UpdatePortfolioTargetsRequest(
            portfolio_id=portfolio_id, targets=[pb.AllocationTarget(symbol="KO", weight="50")]
        ),
        metadata=who,
    )
    await s.stub.CreateWatchlist(
        pb.CreateWatchlistRequest(name="Mine", symbols=["KO"]), metadata=who
    )
    await s.stub.CreateAlert(
        pb.CreateAlertRequest(symbol="KO", condition=pb.ALERT_CONDITION_ABOVE, price="999"),
        metadata=who,
    )


async def rows_of(db: Database, user_id: str) -> dict[str, int]:
    """How many rows of each table are `user_id`'s."""
    counted: dict[str, int] = {}
    async with db.reading() as session:
        owned = select(portfolios.c.id).where(portfolios.c.user_id == user_id)
        for table in BY_OWNER:
            query = select(func.count()).select_from(table).where(table.c.user_id == user_id)
            counted[table.name] = int((await session.execute(query)).scalar_one())
        for kids in BY_PORTFOLIO:
            query = select(func.count()).select_from(kids).where(kids.c.portfolio_id.in_(owned))
            counted[kids.name] = int((await session.execute(query)).scalar_one())
    return counted


def every_table(counted: dict[str, int]) -> bool:
    return all(counted.values())


async def delete_account(s: PortfolioService, who: Metadata, user_id: str) -> None:
    await s.users.DeleteUser(
        users_pb2.DeleteUserRequest(id=user_id, current_password=PASSWORD), metadata=who
    )


async def test_a_deleted_accounts_portfolio_data_is_erased_and_another_users_kept(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(ACCOUNT_PURGE_INTERVAL="0.1") as s:
        await s.account()  # the first account: the admin, who stays
        ann, ann_id = await s.account()
        bob, bob_id = await s.account()
        await holdings(s, ann)
        await holdings(s, bob)
        db = Database(s.database_url)
        try:
            assert every_table(await rows_of(db, ann_id))
            kept = await rows_of(db, bob_id)
            assert every_table(kept), kept
            await delete_account(s, ann, ann_id)

            async def erased() -> bool:
                return not any((await rows_of(db, ann_id)).values())

            await until_async(erased, "the deleted account's rows erased", within=20)
            assert await rows_of(db, bob_id) == kept
            listed = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=bob)
            assert [p.name for p in listed.portfolios] == ["Paper"]
            # Again (the follower's cursor lost, or a second replica): nothing left, no error.
            await AccountErasure(db, _ignore).erase(ann_id)
            assert await rows_of(db, bob_id) == kept
        finally:
            await db.close()


async def _ignore(alert_id: str) -> None:
    del alert_id
