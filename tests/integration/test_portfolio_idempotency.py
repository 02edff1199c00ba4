"""Idempotency keys on the portfolio service's creating RPCs, on SQLite and PostgreSQL: a retry
returns the first response and trades nothing twice."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import text
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.integration.portfolio_harness import Metadata, PortfolioService
from tests.rpc_errors import expect_error, reason, violations

# The transaction that last wrote a row (PostgreSQL's xmin), by what the row is.
WRITER = {
    "key": text("SELECT xmin::text FROM idempotency_keys WHERE key = :value"),
    "trade": text("SELECT xmin::text FROM trades WHERE id = :value"),
}


def keyed(who: Metadata, key: str) -> Metadata:
    return (*who, ("idempotency-key", key))


def buy(portfolio_id: str, quantity: str = "1") -> pb.CreateTradeRequest:
    return pb.CreateTradeRequest(
        portfolio_id=portfolio_id, side=pb.TRADE_SIDE_BUY, symbol="KO", quantity=quantity
    )


async def test_the_same_key_twice_records_one_trade_and_answers_the_same(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    first = await s.stub.CreateTrade(buy(p.id), metadata=keyed(who, "k-1"))
    again = await s.stub.CreateTrade(buy(p.id), metadata=keyed(who, "k-1"))
    assert again == first
    assert await s.trade_count(who, p.id) == 1
    other = await s.stub.CreateTrade(buy(p.id), metadata=keyed(who, "k-2"))
    assert other.trade.id != first.trade.id
    unkeyed = await s.stub.CreateTrade(buy(p.id), metadata=who)
    assert unkeyed.trade.id not in {first.trade.id, other.trade.id}
    assert await s.trade_count(who, p.id) == 3


async def test_the_same_key_with_another_request_is_refused(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.stub.CreateTrade(buy(p.id), metadata=keyed(who, "k-1"))
    error = await expect_error(
        s.stub.CreateTrade(buy(p.id, quantity="2"), metadata=keyed(who, "k-1")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason(error) == "IDEMPOTENCY_KEY_REUSED"
    assert [f for f, _ in violations(error)] == ["idempotencyKey"]
    # Another method with the key is another request too.
    error = await expect_error(
        s.stub.CreatePortfolio(pb.CreatePortfolioRequest(name="X"), metadata=keyed(who, "k-1")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason(error) == "IDEMPOTENCY_KEY_REUSED"
    assert await s.trade_count(who, p.id) == 1


async def test_concurrent_requests_with_one_key_record_one_trade(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    results = await asyncio.gather(
        *(s.stub.CreateTrade(buy(p.id), metadata=keyed(who, "race")) for _ in range(8)),
        return_exceptions=True,
    )
    answered = [r for r in results if isinstance(r, pb.CreateTradeResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert answered, results
    assert {a.trade.id for a in answered} == {answered[0].trade.id}
    assert {(e.code(), reason(e)) for e in refused} <= {
        (grpc.StatusCode.ABORTED, "IDEMPOTENCY_IN_PROGRESS")
    }
    assert await s.trade_count(who, p.id) == 1


async def test_a_failed_first_attempt_releases_the_key(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    sell = pb.CreateTradeRequest(
        portfolio_id=p.id, side=pb.TRADE_SIDE_SELL, symbol="KO", quantity="1", price="60"
    )
    await expect_error(
        s.stub.CreateTrade(sell, metadata=keyed(who, "sell-1")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await s.stub.CreateTrade(buy(p.id), metadata=who)
    retried = await s.stub.CreateTrade(sell, metadata=keyed(who, "sell-1"))
    assert retried.trade.side == pb.TRADE_SIDE_SELL
    assert await s.trade_count(who, p.id) == 2


async def test_keys_belong_to_their_user(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    ann, bob = await s.user(), await s.user()
    request = pb.CreatePortfolioRequest(name="Same body")
    hers = await s.stub.CreatePortfolio(request, metadata=keyed(ann, "shared"))
    his = await s.stub.CreatePortfolio(request, metadata=keyed(bob, "shared"))
    assert hers.portfolio.id != his.portfolio.id


async def test_portfolios_positions_and_imports_are_created_once_per_key(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    request = pb.CreatePortfolioRequest(name="Once", initial_cash="100")
    first = await s.stub.CreatePortfolio(request, metadata=keyed(who, "p"))
    assert await s.stub.CreatePortfolio(request, metadata=keyed(who, "p")) == first
    listed = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=who)
    assert len(listed.portfolios) == 1
    pid = first.portfolio.id

    position = pb.CreatePositionRequest(portfolio_id=pid, symbol="KO", quantity="1", price="60")
    made = await s.stub.CreatePosition(position, metadata=keyed(who, "pos"))
    assert await s.stub.CreatePosition(position, metadata=keyed(who, "pos")) == made

    csv = "date,side,symbol,quantity,price\n2024-01-02,buy,AAPL,1,100\n"
    imported = await s.stub.ImportTrades(
        pb.ImportTradesRequest(portfolio_id=pid, csv=csv), metadata=keyed(who, "imp")
    )
    again = await s.stub.ImportTrades(
        pb.ImportTradesRequest(portfolio_id=pid, csv=csv), metadata=keyed(who, "imp")
    )
    assert again == imported
    assert await s.trade_count(who, pid) == 3  # the deposit, the position's buy, one import


async def test_an_overlong_key_is_invalid(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who = await s.user()
    error = await expect_error(
        s.stub.CreatePortfolio(pb.CreatePortfolioRequest(name="X"), metadata=keyed(who, "k" * 256)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in violations(error)] == ["idempotencyKey"]


async def test_a_keyed_trade_and_its_stored_answer_commit_in_one_transaction(
    portfolio_service: PortfolioService,
) -> None:
    """No window between the trade's commit and its key's: a crash there, or a client hanging
    up there, could otherwise leave a recorded trade whose key a retry claims again. PostgreSQL
    names the transaction that wrote each row (`xmin`): the trade rows and the key's row share
    it, for a trade and for an import."""
    s = portfolio_service
    if not s.database_url.startswith("postgresql"):
        pytest.skip("xmin, the writing transaction of a row, is PostgreSQL's")
    who, p = await s.user_with_portfolio()
    trade = await s.stub.CreateTrade(buy(p.id), metadata=keyed(who, "one-tx"))
    csv = "date,side,symbol,quantity,price\n2024-01-02,buy,AAPL,1,100\n2024-01-03,buy,KO,2,60\n"
    imported = await s.stub.ImportTrades(
        pb.ImportTradesRequest(portfolio_id=p.id, csv=csv), metadata=keyed(who, "one-import")
    )
    db = s.database()
    try:
        async with db.reading() as session:

            async def writer(of: str, value: str) -> set[str]:
                rows = await session.execute(WRITER[of], {"value": value})
                return set(rows.scalars().all())

            key = await writer("key", "one-tx")
            assert len(key) == 1
            assert await writer("trade", trade.trade.id) == key
            key = await writer("key", "one-import")
            written = set().union(*[await writer("trade", t.id) for t in imported.trades])
            assert len(imported.trades) == 2
            assert written == key
    finally:
        await db.close()
