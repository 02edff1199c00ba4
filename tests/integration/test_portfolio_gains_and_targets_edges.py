"""Review attacks on the realized-gains report and on targets/rebalancing, through the real
portfolio server on SQLite and PostgreSQL: odd histories whose rows must add up to the
portfolio's realized gain page by page, period and term boundaries, garbage query values, and
targets under concurrency, deletion, many tiny weights and huge extra cash."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.orm import portfolio_targets
from tests.integration.portfolio_harness import (
    PortfolioService,
    realized,
    realized_gain,
    rebalance,
    set_targets,
    split,
)
from tests.rpc_errors import expect_error, fields
from tests.utc_days import noon, timestamp

D = Decimal
Metadata = tuple[tuple[str, str], ...]


def at(day: date, clock: time) -> Timestamp:
    return timestamp(datetime.combine(day, clock, UTC))


async def all_rows(
    s: PortfolioService, who: Metadata, portfolio_id: str, **fields: object
) -> tuple[list[pb.RealizedGain], pb.ListRealizedGainsResponse]:
    rows: list[pb.RealizedGain] = []
    page = 1
    while True:
        reply = await realized(s, who, portfolio_id, page=page, limit=3, **fields)
        rows += reply.gains
        if page * 3 >= reply.pagination.total:
            return rows, reply
        page += 1


async def test_an_odd_history_adds_up_page_by_page_to_the_portfolios_realized_gain(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    base = date(2024, 1, 10)
    await s.trade(who, p.id, "deposit", "100000", executed_at=noon(base))
    await s.trade(
        who, p.id, "buy", "10.5", "100.333", symbol="AAPL", fees="1.17", executed_at=noon(base)
    )
    await s.trade(
        who,
        p.id,
        "buy",
        "7.25",
        "111.11",
        symbol="AAPL",
        fees="0.99",
        executed_at=noon(base + timedelta(days=40)),
    )
    for n, (qty, price) in enumerate([("0.3333", "120.01"), ("1.1", "99.99"), ("2.05", "130.7")]):
        await s.trade(
            who,
            p.id,
            "sell",
            qty,
            price,
            symbol="AAPL",
            fees="0.33",
            executed_at=noon(base + timedelta(days=60 + n)),
        )
    await s.trade(
        who,
        p.id,
        "dividend",
        "5",
        "0.24",
        symbol="AAPL",
        fees="0.1",
        executed_at=noon(base + timedelta(days=70)),
    )
    # A split recorded and deleted again changes nothing.
    gone = await split(s, who, p.id, "AAPL", (base + timedelta(days=75)).isoformat(), 7, 3)
    await s.stub.DeleteSplit(pb.DeleteSplitRequest(portfolio_id=p.id, id=gone.id), metadata=who)
    # A reverse split (1 for 3) with cash in lieu, then more partial sells.
    await split(s, who, p.id, "AAPL", (base + timedelta(days=80)).isoformat(), 1, 3, "300.5")
    # A back-dated buy before the earlier sales changes which lots they closed.
    await s.trade(
        who,
        p.id,
        "buy",
        "3.3",
        "90.07",
        symbol="AAPL",
        fees="2",
        executed_at=noon(base - timedelta(days=5)),
    )
    await s.trade(
        who,
        p.id,
        "sell",
        "1.23456789",
        "333.33",
        symbol="AAPL",
        fees="0.5",
        executed_at=noon(base + timedelta(days=400)),
    )
    for method in (pb.COST_METHOD_FIFO, pb.COST_METHOD_AVERAGE):
        rows, last = await all_rows(s, who, p.id, cost_method=method)
        assert len(rows) == last.pagination.total
        exact = sum((D(r.gain) for r in rows), D(0))
        # Each row is rounded once; the totals are the exact sum rounded once.
        assert abs(exact - D(last.totals.total)) <= D("0.01") * len(rows) / 2
        positions = await s.stub.ListPositions(
            pb.ListPositionsRequest(portfolio_id=p.id, include_closed=True, cost_method=method),
            metadata=who,
        )
        held = sum((D(x.realized_gain) for x in positions.positions), D(0))
        assert D(last.totals.total) == held, method
        if method == pb.COST_METHOD_FIFO:
            assert last.totals.total == await realized_gain(s, who, p.id)
            assert D(last.totals.short_term) + D(last.totals.long_term) == D(last.totals.total)


async def test_period_boundaries_take_the_whole_to_day_and_from_equal_to(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    day = date(2024, 3, 1)
    await s.trade(
        who, p.id, "buy", "10", "100", symbol="AAPL", executed_at=noon(day - timedelta(days=365))
    )
    await s.trade(
        who, p.id, "sell", "1", "110", symbol="AAPL", executed_at=at(day, time(23, 59, 59))
    )
    await s.trade(
        who,
        p.id,
        "sell",
        "1",
        "120",
        symbol="AAPL",
        executed_at=at(day + timedelta(days=1), time(0, 0, 0)),
    )
    only = await realized(s, who, p.id, **{"from": day.isoformat(), "to": day.isoformat()})
    assert [(g.sold_on, g.gain) for g in only.gains] == [(day.isoformat(), "10.00")]
    assert only.pagination.total == 1
    upto = await realized(s, who, p.id, to=day.isoformat())
    assert [g.gain for g in upto.gains] == ["10.00"]
    # Bought 2023-03-02; sold 2024-03-01 (2024 is a leap year), 365 days: not more than a year
    # (the IRS's rule), short-term; sold on the anniversary, 366 days: still short-term.
    assert (only.gains[0].holding_days, only.gains[0].term) == (365, "short")
    after = await realized(s, who, p.id, **{"from": (day + timedelta(days=1)).isoformat()})
    assert [(g.gain, g.holding_days, g.term) for g in after.gains] == [("20.00", 366, "short")]
    wide = await realized(s, who, p.id, **{"from": "0001-01-01", "to": "9999-12-31"})
    assert wide.totals.total == "30.00"


async def test_garbage_query_values_are_refused_or_answered_never_internal(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "2", "100", symbol="AAPL")
    await s.trade(who, p.id, "sell", "1", "110", symbol="AAPL")
    far = await realized(s, who, p.id, page=2**31 - 1, limit=100)
    assert (list(far.gains), far.pagination.total) == ([], 1)
    for given, field in [
        ({"from": "0000-01-01"}, "from"),
        ({"to": "10000-01-01"}, "to"),
        ({"from": "x" * 5000}, "from"),
        ({"page": -1}, "page"),
        ({"limit": -5}, "limit"),
        ({"from": "9999-12-31", "to": "0001-01-01"}, "from"),
    ]:
        error = await expect_error(
            s.stub.ListRealizedGains(
                pb.ListRealizedGainsRequest(portfolio_id=p.id, **given),  # type: ignore[arg-type]
                metadata=who,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert fields(error) == [field], given


async def sixty_forty(s: PortfolioService) -> tuple[Metadata, str]:
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "deposit", "10000")
    await s.trade(who, p.id, "buy", "30", "189.50", symbol="AAPL")
    await s.trade(who, p.id, "buy", "5", "415.30", symbol="MSFT")
    return who, p.id


async def test_concurrent_target_puts_leave_one_whole_list(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    lists = [[(f"S{n}X{i}", "1") for i in range(30)] for n in range(6)]
    replies = await asyncio.gather(
        *(set_targets(s, who, p.id, *pairs) for pairs in lists), return_exceptions=True
    )
    assert [r for r in replies if isinstance(r, BaseException)] == []
    kept = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=who
    )
    got = [(t.symbol, t.weight) for t in kept.targets]
    assert got in lists
    assert kept.cash_weight == "70"


async def test_deleting_a_portfolio_deletes_its_targets(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await set_targets(s, who, p.id, ("AAPL", "50"), ("MSFT", "25"))
    await s.stub.DeletePortfolio(pb.DeletePortfolioRequest(id=p.id), metadata=who)
    db = s.database()
    try:
        async with db.reading() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(portfolio_targets)
                .where(portfolio_targets.c.portfolio_id == p.id)
            )
    finally:
        await db.close()
    assert left == 0
    await expect_error(
        s.stub.GetPortfolioTargets(pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=who),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_hundred_tiny_targets_and_huge_extra_cash_never_overspend(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await sixty_forty(s)
    pairs = [("AAPL", "50"), ("MSFT", "49.9902"), ("KO", "0.0001")] + [
        (f"ZZ{i}", "0.0001") for i in range(97)
    ]
    kept = await set_targets(s, who, p, *pairs)
    assert kept.cash_weight == "0"
    read = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p), metadata=who
    )
    assert [(t.symbol, t.weight) for t in read.targets] == pairs
    assert read.cash_weight == "0"
    for cash in ("", "999999999999.99999999", "0.00000001"):
        for fractional in (False, True):
            reply = await rebalance(s, who, p, cash=cash, fractional=fractional)
            assert D(reply.cash_after) >= 0, (cash, fractional, reply.cash_after)
            for line in reply.lines:
                if line.side == pb.TRADE_SIDE_SELL:
                    assert D(line.trade_quantity) <= D(line.quantity)
            assert len(reply.lines) == 100
    error = await expect_error(
        set_targets(s, who, p, *pairs, ("ONEMORE", "0.0001")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert fields(error) == ["targets"]


async def test_bad_targets_name_their_field(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    for pairs, field in [
        ([("AAPL", "1e2")], "targets[0].weight"),
        ([("AAPL", "NaN")], "targets[0].weight"),
        ([("AAPL", "0.00001")], "targets[0].weight"),
        ([("AAPL", "50"), ("MSFT", "50.0001")], "targets"),
        ([("AAPL", "50"), ("", "1")], "targets[1].symbol"),
        ([("AAPL", "50"), ("A" * 40, "1")], "targets[1].symbol"),
        ([("AAPL", "-0")], "targets[0].weight"),
    ]:
        error = await expect_error(
            set_targets(s, who, p.id, *pairs), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert fields(error) == [field], pairs
    for cash in ("-1", "1e20", "1000000000000", "abc"):
        error = await expect_error(
            rebalance(s, who, p.id, cash=cash), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert fields(error) == ["cash"], cash
