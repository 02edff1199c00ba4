"""The order RPCs on a real portfolio server, on SQLite and PostgreSQL: what is refused and why,
idempotent creation, ownership, the open-order limit, fills on the moving simulated market, and
with two replicas on one Redis each order filled exactly once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    StartPortfolio,
    order,
    wait_for_status,
)
from tests.rpc_errors import expect_error, fields, reason


async def order_trades(s: PortfolioService, who: Metadata, portfolio_id: str) -> list[pb.Trade]:
    reply = await s.stub.ListTrades(
        pb.ListTradesRequest(portfolio_id=portfolio_id, limit=100), metadata=who
    )
    return [t for t in reply.trades if t.order_id]


async def test_bad_orders_are_refused_naming_the_field_or_the_reason(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, paper = await s.user_with_portfolio(
        "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
    )
    tracking = await s.portfolio(who, "Real", kind=pb.PORTFOLIO_KIND_TRACKING)

    error = await expect_error(
        s.stub.CreateOrder(order(tracking.id), metadata=who), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "ORDERS_NEED_PAPER_PORTFOLIO"
    assert "paper" in (error.details() or "")

    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"limit_price": ""}, ["limitPrice"]),
        ({"type": pb.ORDER_TYPE_STOP, "limit_price": ""}, ["stopPrice"]),
        ({"type": pb.ORDER_TYPE_STOP_LIMIT, "limit_price": ""}, ["limitPrice", "stopPrice"]),
        ({"type": pb.ORDER_TYPE_STOP, "stop_price": "40"}, ["limitPrice"]),  # a limit too many
        ({"limit_price": "50.1234567"}, ["limitPrice"]),  # 7 places: the proto rule
        ({"type": pb.ORDER_TYPE_STOP, "limit_price": "", "stop_price": "1.0000001"}, ["stopPrice"]),
    ]
    for changes, named in cases:
        error = await expect_error(
            s.stub.CreateOrder(order(paper.id, **changes), metadata=who),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert sorted(fields(error)) == named, changes

    error = await expect_error(
        s.stub.CreateOrder(order(paper.id, symbol="ZZZZQ"), metadata=who),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "ZZZZQ" in (error.details() or "")
    listed = await s.stub.ListOrders(pb.ListOrdersRequest(portfolio_id=paper.id), metadata=who)
    assert list(listed.orders) == []


async def test_another_users_orders_do_not_exist_for_them(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, paper = await s.user_with_portfolio(
        "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
    )
    mine = (await s.stub.CreateOrder(order(paper.id), metadata=who)).order
    other = await s.user()
    for call in (
        s.stub.GetOrder(pb.GetOrderRequest(id=mine.id), metadata=other),
        s.stub.CancelOrder(pb.CancelOrderRequest(id=mine.id), metadata=other),
        s.stub.ListOrders(pb.ListOrdersRequest(portfolio_id=paper.id), metadata=other),
        s.stub.CreateOrder(order(paper.id), metadata=other),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND)
    theirs = await s.stub.ListOrders(pb.ListOrdersRequest(), metadata=other)
    assert list(theirs.orders) == []
    still = (await s.stub.GetOrder(pb.GetOrderRequest(id=mine.id), metadata=who)).order
    assert still.status == pb.ORDER_STATUS_OPEN


async def test_the_same_key_places_one_order(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, paper = await s.user_with_portfolio(
        "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
    )
    keyed = (*who, ("idempotency-key", "order-1"))
    # No time in force: the default, DAY (open as it is answered, whatever the hour).
    unsaid = order(paper.id, time_in_force=pb.TIME_IN_FORCE_UNSPECIFIED)
    first = await s.stub.CreateOrder(unsaid, metadata=keyed)
    again = await s.stub.CreateOrder(unsaid, metadata=keyed)
    assert again == first
    assert first.order.status == pb.ORDER_STATUS_OPEN
    assert first.order.time_in_force == pb.TIME_IN_FORCE_DAY
    assert first.order.limit_price == "50.00"
    listed = await s.stub.ListOrders(pb.ListOrdersRequest(portfolio_id=paper.id), metadata=who)
    assert [o.id for o in listed.orders] == [first.order.id]
    assert listed.pagination.total == 1


async def test_a_portfolio_holds_at_most_100_open_orders(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, paper = await s.user_with_portfolio(
        "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
    )
    placed = [
        (await s.stub.CreateOrder(order(paper.id, quantity="1"), metadata=who)).order
        for _ in range(100)
    ]
    error = await expect_error(
        s.stub.CreateOrder(order(paper.id), metadata=who), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(error) == "TOO_MANY_OPEN_ORDERS"
    cancelled = await s.stub.CancelOrder(pb.CancelOrderRequest(id=placed[0].id), metadata=who)
    assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED
    await s.stub.CreateOrder(order(paper.id), metadata=who)  # room again
    open_ = await s.stub.ListOrders(
        pb.ListOrdersRequest(portfolio_id=paper.id, status=pb.ORDER_STATUS_OPEN, limit=1),
        metadata=who,
    )
    assert open_.pagination.total == 100


async def test_orders_fill_on_the_moving_market_at_the_ticks_price(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(MOCK_UPDATE_INTERVAL="20") as s:
        who, paper = await s.user_with_portfolio(
            "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
        )
        await s.trade(who, paper.id, "buy", "10", symbol="KO")
        price = Decimal(
            (await s.stub.GetQuote(pb.GetQuoteRequest(symbol="KO"), metadata=who)).quote.price
        )
        far_above, far_below = str(price * 2), str((price / 2).quantize(Decimal("0.01")))
        placed = {
            "limit buy": order(paper.id, limit_price=far_above),
            "limit sell": order(
                paper.id, side=pb.TRADE_SIDE_SELL, quantity="2", limit_price=far_below
            ),
            "stop buy": order(
                paper.id, type=pb.ORDER_TYPE_STOP, limit_price="", stop_price=far_below
            ),
            "stop sell": order(
                paper.id,
                side=pb.TRADE_SIDE_SELL,
                quantity="2",
                type=pb.ORDER_TYPE_STOP,
                limit_price="",
                stop_price=far_above,
            ),
            "stop-limit buy": order(
                paper.id, type=pb.ORDER_TYPE_STOP_LIMIT, stop_price=far_below, limit_price=far_above
            ),
        }
        ids = {
            name: (await s.stub.CreateOrder(request, metadata=who)).order.id
            for name, request in placed.items()
        }
        for name, order_id in ids.items():
            filled = await wait_for_status(s, who, order_id, pb.ORDER_STATUS_FILLED)
            assert filled.status == pb.ORDER_STATUS_FILLED, name
            assert filled.trade_id and filled.filled_price, name
            assert filled.HasField("filled_at")
        trades = {t.order_id: t for t in await order_trades(s, who, paper.id)}
        assert set(trades) == set(ids.values())
        for name, order_id in ids.items():
            filled = (await s.stub.GetOrder(pb.GetOrderRequest(id=order_id), metadata=who)).order
            trade = trades[order_id]
            assert trade.id == filled.trade_id
            assert Decimal(trade.price) == Decimal(filled.filled_price)
            assert trade.price_source == "mock"
            fill = Decimal(trade.price)
            # Within the order's terms: a limit at or better, a stop at or beyond.
            if name == "limit buy" or name == "stop-limit buy":
                assert fill <= Decimal(far_above)
            if name == "limit sell":
                assert fill >= Decimal(far_below)
            if name == "stop buy":
                assert fill >= Decimal(far_below)
            if name == "stop sell":
                assert fill <= Decimal(far_above)
        # A filled order is no longer cancellable, and says why.
        error = await expect_error(
            s.stub.CancelOrder(pb.CancelOrderRequest(id=ids["limit buy"]), metadata=who),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason(error) == "ORDER_NOT_OPEN"
        assert "filled" in (error.details() or "")


async def test_with_two_replicas_each_order_fills_exactly_once(
    start_portfolio: StartPortfolio, redis_url: str
) -> None:
    shared = {"REDIS_URL": redis_url, "MOCK_UPDATE_INTERVAL": "20"}
    async with start_portfolio(**shared) as first, start_portfolio(**shared) as second:
        who, paper = await first.user_with_portfolio(
            "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
        )
        quote = await first.stub.GetQuote(pb.GetQuoteRequest(symbol="KO"), metadata=who)
        far_above = str(Decimal(quote.quote.price) * 2)
        ids = []
        # Placed on both replicas, whichever leads: each reaches the leader's index.
        for i in range(10):
            replica = (first, second)[i % 2]
            reply = await replica.stub.CreateOrder(
                order(paper.id, quantity="1", limit_price=far_above), metadata=who
            )
            ids.append(reply.order.id)
        for order_id in ids:
            filled = await wait_for_status(first, who, order_id, pb.ORDER_STATUS_FILLED)
            assert filled.status == pb.ORDER_STATUS_FILLED
        await asyncio.sleep(0.5)  # more ticks cross the same limits: nothing more fills
        trades = await order_trades(second, who, paper.id)
        assert sorted(t.order_id for t in trades) == sorted(ids)
        assert len({t.id for t in trades}) == len(ids)


async def test_orders_that_break_a_rule_at_execution_are_rejected_with_the_reason(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(MOCK_UPDATE_INTERVAL="20") as s:
        who, paper = await s.user_with_portfolio(
            "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="1000"
        )
        await s.trade(who, paper.id, "buy", "2", symbol="KO")
        reply = await s.stub.GetQuote(pb.GetQuoteRequest(symbol="KO"), metadata=who)
        price = Decimal(reply.quote.price)
        # Placing checks neither shares nor cash: the fill does, at the tick that crosses.
        oversell = await s.stub.CreateOrder(
            order(
                paper.id,
                side=pb.TRADE_SIDE_SELL,
                quantity="5",
                limit_price=str((price / 2).quantize(Decimal("0.01"))),
            ),
            metadata=who,
        )
        overspend = await s.stub.CreateOrder(
            order(paper.id, quantity="1000", limit_price=str(price * 2)), metadata=who
        )
        for placed, why in ((oversell, "INSUFFICIENT_SHARES"), (overspend, "INSUFFICIENT_CASH")):
            ended = await wait_for_status(s, who, placed.order.id, pb.ORDER_STATUS_REJECTED)
            assert ended.status == pb.ORDER_STATUS_REJECTED
            assert ended.status_reason == why
            assert ended.trade_id == "" and ended.filled_price == ""
        assert await order_trades(s, who, paper.id) == []
        positions = await s.stub.ListPositions(
            pb.ListPositionsRequest(portfolio_id=paper.id), metadata=who
        )
        assert [(p.symbol, p.quantity) for p in positions.positions] == [("KO", "2")]
