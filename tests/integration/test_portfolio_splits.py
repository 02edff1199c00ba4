"""Stock splits a portfolio records (services/portfolio/splits.py) through the real server, on
SQLite and PostgreSQL: shares multiplied at the same cost, trades before and after a split in
their place, refusals that leave nothing written, performance across a split with unadjusted
closes, and a retried create."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import grpc
from sqlalchemy import update
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio import orm
from tests.integration.portfolio_harness import (
    PortfolioService,
    collecting,
    export,
    holding,
    split,
    splits_of,
    store_closes,
)
from tests.rpc_errors import expect_error
from tests.utc_days import noon, one_utc_day, utc_today
from tests.waiting import until

Metadata = tuple[tuple[str, str], ...]


@one_utc_day
async def test_a_split_multiplies_the_shares_at_their_cost_and_every_trade_sees_it(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    day = {n: today - timedelta(days=n) for n in (10, 8, 5)}
    await s.trade(who, p.id, "buy", "10", "500", symbol="NVDA", executed_at=noon(day[10]))

    made = await split(s, who, p.id, "nvda", day[5].isoformat(), 10, 1)
    assert (made.symbol, made.date, made.numerator, made.denominator) == (
        "NVDA",
        day[5].isoformat(),
        10,
        1,
    )
    assert (made.quantity_before, made.quantity_after, made.cash_in_lieu) == ("10", "100", "0.00")
    held = await holding(s, who, p.id, "NVDA")
    assert (held.quantity, held.cost_basis, held.average_cost) == ("100", "5000.00", "50.00")

    # A sell after the split sells split shares; its gain is against the split cost (50).
    await s.trade(who, p.id, "sell", "60", "55", symbol="NVDA")
    held = await holding(s, who, p.id, "NVDA")
    assert (held.quantity, held.realized_gain) == ("40", "300.00")

    # A buy dated before the split, recorded after it, is split too (its lot: 50 at 52).
    await s.trade(who, p.id, "buy", "5", "520", symbol="NVDA", executed_at=noon(day[8]))
    held = await holding(s, who, p.id, "NVDA")
    assert (held.quantity, held.cost_basis) == ("90", "4600.00")
    assert [(lot.quantity, lot.unit_cost) for lot in held.lots] == [
        ("40", "50.00"),
        ("50", "52.00"),
    ]

    (listed,) = await splits_of(s, who, p.id)
    assert (listed.id, listed.quantity_before, listed.quantity_after) == (made.id, "15", "150")

    # The sell needs the split: taking it back is refused, and nothing changes.
    refused = await expect_error(
        s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id=made.id), metadata=who),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "the sell of 60 NVDA" in (refused.details() or "")
    assert [x.id for x in await splits_of(s, who, p.id)] == [made.id]
    assert (await holding(s, who, p.id, "NVDA")).quantity == "90"


@one_utc_day
async def test_a_reverse_split_that_a_later_sell_outruns_is_refused_with_nothing_written(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    await s.trade(
        who, p.id, "buy", "100", "10", symbol="GE", executed_at=noon(today - timedelta(9))
    )
    await s.trade(
        who, p.id, "sell", "50", "11", symbol="GE", executed_at=noon(today - timedelta(2))
    )

    refused = await expect_error(
        split(s, who, p.id, "GE", (today - timedelta(5)).isoformat(), 1, 10),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "the sell of 50 GE" in (refused.details() or "")
    assert await splits_of(s, who, p.id) == []
    assert (await holding(s, who, p.id, "GE")).quantity == "50"

    # 1-for-3 is exact where a decimal ratio (0.33333333) is not: 99 shares are 33.
    await s.trade(who, p.id, "buy", "49", "10", symbol="GE", executed_at=noon(today - timedelta(1)))
    made = await split(s, who, p.id, "GE", today.isoformat(), 1, 3)
    assert (made.quantity_before, made.quantity_after, made.cash_in_lieu) == ("99", "33", "0.00")
    held = await holding(s, who, p.id, "GE")
    assert (held.quantity, held.cost_basis) == ("33", "990.00")

    # Taken back, the holding is as it was.
    await s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id=made.id), metadata=who)
    assert (await holding(s, who, p.id, "GE")).quantity == "99"
    assert await splits_of(s, who, p.id) == []


@one_utc_day
async def test_the_fraction_a_split_leaves_below_the_scale_is_paid_in_cash(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    yesterday = noon(today - timedelta(days=1))
    await s.trade(who, p.id, "buy", "0.00000001", "90", symbol="AAPL", executed_at=yesterday)
    await s.trade(who, p.id, "buy", "1", "90", symbol="AAPL", executed_at=yesterday)
    # 1.00000001 shares 2-for-3: 0.66666667333... ; 0.66666667 kept, the rest paid at 135.
    made = await split(s, who, p.id, "AAPL", today.isoformat(), 2, 3, "135")
    assert (made.quantity_before, made.quantity_after) == ("1.00000001", "0.66666667")
    assert made.price == "135.00"
    # 0.0000000033... x 135 is well below a cent: shown as 0.00, and the cash holds it exactly.
    assert made.cash_in_lieu == "0.00"


async def test_refusals_name_the_field_and_another_users_portfolio_is_not_found(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    await split(s, who, p.id, "MSFT", today.isoformat(), 2, 1)

    twice = await expect_error(
        split(s, who, p.id, "MSFT", today.isoformat(), 3, 1), grpc.StatusCode.ALREADY_EXISTS
    )
    assert "recorded already" in (twice.details() or "")
    ahead = await expect_error(
        split(s, who, p.id, "MSFT", (today + timedelta(days=2)).isoformat(), 2, 1),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "date" in (ahead.details() or "")
    same = await expect_error(
        split(s, who, p.id, "KO", today.isoformat(), 4, 4), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "differ" in (same.details() or "")
    nonsense = await expect_error(
        split(s, who, p.id, "KO", "2026-02-30", 2, 1), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "date" in (nonsense.details() or "")

    other = await s.user()
    await expect_error(
        split(s, other, p.id, "KO", today.isoformat(), 2, 1), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        s.stub.ListSplits(pb.ListSplitsRequest(portfolio_id=p.id), metadata=other),
        grpc.StatusCode.NOT_FOUND,
    )
    (only,) = await splits_of(s, who, p.id)
    await expect_error(
        s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id=only.id), metadata=other),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_error(
        s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id="nope"), metadata=who),
        grpc.StatusCode.NOT_FOUND,
    )
    assert [x.id for x in await splits_of(s, who, p.id)] == [only.id]


async def test_a_retried_create_with_its_key_records_one_split(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    keyed = (*who, ("idempotency-key", "split-1"))
    request = pb.CreateSplitRequest(
        portfolio_id=p.id, symbol="TSLA", date=utc_today().isoformat(), numerator=3, denominator=1
    )
    first = (await s.stub.CreateSplit(request, metadata=keyed)).split
    again = (await s.stub.CreateSplit(request, metadata=keyed)).split
    assert again == first
    assert [x.id for x in await splits_of(s, who, p.id)] == [first.id]


@one_utc_day  # the closes stored up to today end the series: the server's day
async def test_performance_runs_through_a_split_on_unadjusted_closes(
    portfolio_service: PortfolioService,
) -> None:
    """Closes as markets print them (500 before a 10-for-1, about 50 after): the value is
    continuous across the split, and so is the return."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    d0, d1, d2 = (today - timedelta(days=n) for n in (3, 2, 1))
    await store_closes(s, "AMD", {d0: "500", d1: "510", d2: "52", today: "53"})
    await s.trade(who, p.id, "buy", "10", "500", symbol="AMD", executed_at=noon(d0))
    await split(s, who, p.id, "AMD", d2.isoformat(), 10, 1)

    report = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all"), metadata=who
    )
    assert [(v.date, v.value) for v in report.series][1:] == [
        (d0.isoformat(), "5000.00"),
        (d1.isoformat(), "5100.00"),
        (d2.isoformat(), "5200.00"),
        (today.isoformat(), "5300.00"),
    ]
    assert report.time_weighted_return == "0.060000"
    assert report.end_value == "5300.00"


async def test_the_export_holds_the_split_positions_and_the_json_one_the_splits(
    portfolio_service: PortfolioService,
) -> None:
    """Positions in both formats are after the split (a split after the last trade included);
    the JSON document lists the splits as CreateSplit takes them, to record them again."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "3", "600", symbol="MSFT", executed_at=noon(date(2024, 3, 1)))
    await s.trade(who, p.id, "buy", "1", "700", symbol="MSFT", executed_at=noon(date(2024, 7, 1)))
    await split(s, who, p.id, "MSFT", "2024-06-03", 3, 2, "310")
    await split(s, who, p.id, "MSFT", "2024-09-02", 2, 1)

    document = json.loads(b"".join(c.data for c in await export(s, who, p.id, "json")))
    assert document["splits"] == [
        {
            "symbol": "MSFT",
            "date": "2024-06-03",
            "numerator": 3,
            "denominator": 2,
            "price": "310.00",
        },
        {"symbol": "MSFT", "date": "2024-09-02", "numerator": 2, "denominator": 1, "price": ""},
    ]
    (held,) = document["positions"]
    # 3 x 1.5 = 4.5, + 1 = 5.5, x 2 = 11 shares; cost 1,800 + 700.
    assert (held["quantity"], held["costBasis"]) == ("11", "2500.00")
    text = b"".join(c.data for c in await export(s, who, p.id, "csv")).decode()
    positions = list(csv.reader(io.StringIO(text.split("\r\n\r\n")[1])))
    assert positions[1][:2] == ["MSFT", "11"]


def last_friday_before(day: date) -> date:
    while day.weekday() != 4:
        day -= timedelta(days=1)
    return day


@one_utc_day
async def test_a_split_on_a_day_without_a_close_does_not_multiply_the_value(
    portfolio_service: PortfolioService,
) -> None:
    """A 10-for-1 on a Saturday (no close that day; the market printed 510 on the Friday before
    it and 52 from the Monday on): the weekend is worth what Friday was, not ten times as much
    (found by the review: the Friday's close was carried to 100 shares)."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    friday = last_friday_before(today - timedelta(days=4))
    saturday, sunday, monday = (friday + timedelta(days=n) for n in (1, 2, 3))
    closes = {friday: "510"}
    day = monday
    while day <= today:
        closes[day] = "52"  # the simulated market's own closes overridden
        day += timedelta(days=1)
    await store_closes(s, "AMD", closes)
    await s.trade(who, p.id, "buy", "10", "510", symbol="AMD", executed_at=noon(friday))
    await split(s, who, p.id, "AMD", saturday.isoformat(), 10, 1)

    report = await s.stub.GetPerformance(
        pb.GetPerformanceRequest(portfolio_id=p.id, range="all"), metadata=who
    )
    values = {v.date: v.value for v in report.series}
    days = (friday, saturday, sunday, monday)
    assert [values[d.isoformat()] for d in days] == ["5100.00", "5100.00", "5100.00", "5200.00"]


@one_utc_day
async def test_a_split_and_its_deletion_publish_the_portfolios_new_value(
    portfolio_service: PortfolioService,
) -> None:
    """The owner's sockets hear the value with the new quantities at once, not at the
    revaluer's next round (an hour away here)."""
    s = portfolio_service
    who, user_id = await s.account()
    p = await s.portfolio(who)
    yesterday = noon(utc_today() - timedelta(days=1))
    await s.trade(who, p.id, "buy", "2", "60", symbol="KO", executed_at=yesterday)
    async with collecting(s) as events:
        made = await split(s, who, p.id, "KO", utc_today().isoformat(), 3, 1)
        await until(lambda: any(e.HasField("portfolio_value") for e in events), "a value")
        await s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id=made.id), metadata=who)
        await until(lambda: len([e for e in events if e.HasField("portfolio_value")]) == 2, "2")
    values = [(e.user_id, e.portfolio_value) for e in events if e.HasField("portfolio_value")]
    # 6 KO, then 2 again, at the market's 62.40, bought for 120 brought in.
    assert [(who_, v.portfolio_id, v.total_value, v.total_gain_loss) for who_, v in values] == [
        (user_id, p.id, "374.40", "254.40"),
        (user_id, p.id, "124.80", "4.80"),
    ]


async def order_placed_two_days_ago(
    s: PortfolioService,
) -> tuple[Metadata, pb.Portfolio, pb.Order]:
    """A paper portfolio's open order placed before yesterday (backdated in its row: a test
    cannot wait a day): a split dated yesterday adjusts it."""
    who, p = await s.user_with_portfolio(
        "Paper", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="100000"
    )
    request = pb.CreateOrderRequest(
        portfolio_id=p.id,
        symbol="KO",
        side=pb.TRADE_SIDE_BUY,
        type=pb.ORDER_TYPE_LIMIT,
        quantity="10",
        limit_price="30",
        time_in_force=pb.TIME_IN_FORCE_GTC,
    )
    placed = (await s.stub.CreateOrder(request, metadata=who)).order
    db = s.database()
    try:
        async with db.transaction() as session:
            two_days_ago = datetime.now(UTC) - timedelta(days=2)
            await session.execute(
                update(orm.orders)
                .where(orm.orders.c.id == placed.id)
                .values(created_at=two_days_ago)
            )
    finally:
        await db.close()
    return who, p, placed


def order_terms(order: pb.Order) -> tuple[str, str, int, str]:
    return (order.quantity, order.limit_price, order.status, order.status_reason)


async def adjusted_3_for_2(
    s: PortfolioService,
    who: Metadata,
    order_id: str,
    events: list[pb.StreamPortfolioEventsResponse],
) -> None:
    """The buy of 10 at 30, as its owner hears it and as GetOrder reads it: 15 at 20."""
    await until(lambda: any(e.HasField("order") for e in events), "the order's event")
    heard = next(e.order for e in events if e.HasField("order"))
    found = (await s.stub.GetOrder(pb.GetOrderRequest(id=order_id), metadata=who)).order
    for order in (heard, found):
        assert order_terms(order) == ("15", "20.00", pb.ORDER_STATUS_OPEN, "SPLIT_ADJUSTED")


@one_utc_day
async def test_a_split_adjusts_the_portfolios_open_orders_and_tells_their_owner(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p, placed = await order_placed_two_days_ago(s)
    async with collecting(s) as events:
        made = await split(s, who, p.id, "KO", (utc_today() - timedelta(days=1)).isoformat(), 3, 2)
        await adjusted_3_for_2(s, who, placed.id, events)

    await s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id=made.id), metadata=who)
    found = (await s.stub.GetOrder(pb.GetOrderRequest(id=placed.id), metadata=who)).order
    assert order_terms(found) == ("10", "30.00", pb.ORDER_STATUS_OPEN, "")


@one_utc_day
async def test_a_split_imported_from_a_csv_adjusts_the_open_orders_as_one_recorded_does(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p, placed = await order_placed_two_days_ago(s)
    yesterday = (utc_today() - timedelta(days=1)).isoformat()
    csv_text = f"date,side,symbol,quantity,price\n{yesterday},split,KO,3:2,\n"
    async with collecting(s) as events:
        await s.stub.ImportTrades(
            pb.ImportTradesRequest(portfolio_id=p.id, csv=csv_text), metadata=who
        )
        await adjusted_3_for_2(s, who, placed.id, events)
