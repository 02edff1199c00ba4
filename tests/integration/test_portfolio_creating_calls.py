"""The portfolio service's creating calls and times at their edges, through the real server on
SQLite and PostgreSQL: a retry after a hang-up past the commit gets the first answer (it made
a second portfolio, a second buy), trades begin in 1900, a time outside the years 1-9999 is the
caller's error (each failed before; found by a review)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.events import EventHub
from tests.integration.portfolio_harness import Metadata, PortfolioService
from tests.rpc_errors import expect_error, violations
from tests.utc_days import timestamp


def keyed(who: Metadata, key: str) -> Metadata:
    return (*who, ("idempotency-key", key))


async def _hang_up_after_commit_then_retry(call: Any, request: Any, who: Metadata) -> Any:
    """The client gives up (its deadline) while the server works after its commit; then it
    retries with the same key, as the README tells it to."""
    with pytest.raises(grpc.aio.AioRpcError) as hung:
        await call(request, metadata=keyed(who, "retry-me"), timeout=0.5)
    assert hung.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(1.5)  # the server's handler has seen its cancellation by now
    return await call(request, metadata=keyed(who, "retry-me"))


@pytest.fixture
def slow_after_commit(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """A second's stall after the work committed (where the trades are published): the
    client's deadline passes there. A delay injected, not a result faked."""
    slow = {"on": True}
    published = EventHub.trades_recorded

    async def stalled(self: EventHub, *args: Any, **kwargs: Any) -> Any:
        if slow["on"]:
            await asyncio.sleep(1.0)
        return await published(self, *args, **kwargs)

    monkeypatch.setattr(EventHub, "trades_recorded", stalled)
    return slow


async def test_create_position_retried_with_its_key_after_a_hang_up_buys_once(
    portfolio_service: PortfolioService, slow_after_commit: dict[str, bool]
) -> None:
    """README: the same key and body returns the first answer (no second trade); a client
    hanging up right after the commit cannot let a retry record it again. CreatePosition's key
    was settled only after the handler returned: freed by the hang-up, the retry bought again."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    request = pb.CreatePositionRequest(portfolio_id=p.id, symbol="KO", quantity="1", price="60")

    async def call(req: Any, **kw: Any) -> Any:
        return await s.stub.CreatePosition(req, **kw)

    answer = await _hang_up_after_commit_then_retry(call, request, who)
    slow_after_commit["on"] = False
    assert (answer.position.symbol, answer.position.quantity) == ("KO", "1")
    assert answer.position.currency == "USD"
    assert await s.trade_count(who, p.id) == 1, "the retry with the same key bought again"


async def test_create_portfolio_retried_with_its_key_after_a_hang_up_creates_one(
    portfolio_service: PortfolioService, slow_after_commit: dict[str, bool]
) -> None:
    """The same for CreatePortfolio (the web app retries it with its key after a failure)."""
    s = portfolio_service
    who = await s.user()
    request = pb.CreatePortfolioRequest(name="Once", initial_cash="1000")

    async def call(req: Any, **kw: Any) -> Any:
        return await s.stub.CreatePortfolio(req, **kw)

    answer = await _hang_up_after_commit_then_retry(call, request, who)
    slow_after_commit["on"] = False
    listed = await s.stub.ListPortfolios(pb.ListPortfoliosRequest(), metadata=who)
    assert [x.id for x in listed.portfolios] == [answer.portfolio.id], "a second portfolio"
    assert listed.portfolios[0].cash == "1000.00"


async def test_a_trade_before_1900_is_refused_and_performance_from_1900_works(
    portfolio_service: PortfolioService,
) -> None:
    """CreateTrade took 0001-01-01T00:00:00Z (only the future was refused); GetPerformance of
    that portfolio then failed with INTERNAL on every range (range_start subtracts a day from
    date.min). Trades begin on 1900-01-01, and a portfolio that old is reported."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    refused = await expect_error(
        s.trade(who, p.id, "deposit", "100", executed_at=timestamp(datetime(1, 1, 1, tzinfo=UTC))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violations(refused) == [("executedAt", "must not be before 1900-01-01")]
    await s.trade(
        who, p.id, "deposit", "100", executed_at=timestamp(datetime(1900, 1, 1, tzinfo=UTC))
    )
    for range_ in ("1m", "all"):
        report = await s.stub.GetPerformance(
            pb.GetPerformanceRequest(portfolio_id=p.id, range=range_), metadata=who
        )
        assert Decimal(report.end_value) == 100


async def test_an_out_of_range_timestamp_is_invalid_not_a_server_error(
    portfolio_service: PortfolioService,
) -> None:
    """A Timestamp outside 0001..9999 (or with negative nanos) sent over gRPC is a caller's
    mistake; `Timestamp.ToDatetime` raises ValueError in the servicer, which answers INTERNAL."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    bad = Timestamp(seconds=253402300800)  # 10000-01-01
    calls = {
        "CreateTrade": s.stub.CreateTrade(
            pb.CreateTradeRequest(
                portfolio_id=p.id, side=pb.TRADE_SIDE_DEPOSIT, quantity="1", executed_at=bad
            ),
            metadata=who,
        ),
        "ListTrades": s.stub.ListTrades(
            pb.ListTradesRequest(portfolio_id=p.id, to=bad), metadata=who
        ),
    }
    for name, call in calls.items():
        error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
        field = "executedAt" if name == "CreateTrade" else "to"
        assert violations(error) == [(field, "must be a time in the years 1 to 9999")], name


async def test_create_position_weight_matches_list_positions(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(kind=pb.PORTFOLIO_KIND_TRACKING)
    await s.trade(who, p.id, "deposit", "10000")
    await s.trade(who, p.id, "buy", "40", "1", symbol="AAPL")  # AAPL bought (recorded) at 1 a share
    answer = await s.stub.CreatePosition(
        pb.CreatePositionRequest(portfolio_id=p.id, symbol="KO", quantity="10", price="60"),
        metadata=who,
    )
    listed = await s.stub.ListPositions(pb.ListPositionsRequest(portfolio_id=p.id), metadata=who)
    ko = next(x for x in listed.positions if x.symbol == "KO")
    assert (answer.position.price, answer.position.market_value) == (ko.price, ko.market_value)
    assert Decimal(answer.position.weight) == Decimal(ko.weight), (
        "CreatePosition weight",
        answer.position.weight,
        "ListPositions weight",
        ko.weight,
        [(x.symbol, x.price, x.market_value) for x in listed.positions],
    )
