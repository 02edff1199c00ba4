"""Deleting a trade (DeleteTrade, services/portfolio/trade_deletion.py) through the real server,
on SQLite and PostgreSQL: the book left is the one a history without the trade gives; a deletion
a later trade would not survive is refused naming it, with nothing changed; another user's trade
is as absent as none; an order's fill stays; two deletes of one trade, and a delete racing a
sell of the shares it gave, never both win; a dividend the market paid and its owner deleted is
not paid again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.records import PortfolioKind
from tests.integration.portfolio_harness import PortfolioService, StartPortfolio, collecting
from tests.integration.trade_history import (
    HISTORY,
    TYPO,
    a_filled_order,
    days_ago,
    delete,
    dividend_payer,
    figures,
    outcome,
    paper_bought_jnj,
    portfolio_locked,
    recorded,
    replayed_book,
    rewrite_and_sell_at_once,
    rewrite_with_a_sell_sent_midway,
    sold_out,
    stored_book,
    trades_of,
    waiting_for_locks,
)
from tests.rpc_errors import error_metadata, expect_error, reason
from tests.utc_days import timestamp
from tests.waiting import until


async def test_deleting_a_buy_leaves_the_book_a_history_without_it_gives(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, user_id = await s.account()
    mistaken = await s.portfolio(who, "With the typo")
    right = await s.portfolio(who, "Without it")
    made = await recorded(s, who, mistaken.id, HISTORY)
    kept = await recorded(s, who, right.id, [r for i, r in enumerate(HISTORY) if i != TYPO])
    assert await figures(s, who, mistaken.id) != await figures(s, who, right.id)

    async with collecting(s) as events:
        answer = await delete(s, who, made[TYPO].id)
        await until(lambda: any(e.HasField("portfolio_value") for e in events), "a value")
    assert answer.portfolio_id == mistaken.id
    # Cash, realized gain (the sell's FIFO lots are the 10 at 100 and 2 of the 5 at 110 now),
    # positions and lots: as if the typo had never been recorded.
    assert await figures(s, who, mistaken.id) == await figures(s, who, right.id)
    got, held = await figures(s, who, mistaken.id)
    assert got[2:5] == ("4291.50", "930.00", "220.00")  # cash, cost basis, realized gain
    assert held[0][:3] == ("AAPL", "3", "330.00")
    assert [t.id for t in await trades_of(s, who, mistaken.id)] == [
        t.id for i, t in reversed(list(enumerate(made))) if i != TYPO
    ]
    assert await stored_book(s, mistaken.id) == await replayed_book(
        s, mistaken.id, PortfolioKind.TRACKING
    )
    # Its owner's sockets hear of it: the trade as it was, and the value it leaves.
    (gone,) = [e for e in events if e.HasField("trade_deleted")]
    assert (gone.user_id, gone.trade_deleted) == (user_id, made[TYPO])
    (value,) = [e.portfolio_value for e in events if e.HasField("portfolio_value")]
    assert (value.portfolio_id, value.total_value) == (mistaken.id, got[0])

    # The last trade taken back, the book's last sequence goes back with it, and the next trade
    # records as usual.
    await delete(s, who, made[-1].id)
    await delete(s, who, kept[-1].id)
    assert await figures(s, who, mistaken.id) == await figures(s, who, right.id)
    assert await stored_book(s, mistaken.id) == await replayed_book(
        s, mistaken.id, PortfolioKind.TRACKING
    )
    again = await s.trade(who, mistaken.id, "buy", "1", "300", symbol="MSFT")
    assert (await trades_of(s, who, mistaken.id))[0].id == again.id
    assert await stored_book(s, mistaken.id) == await replayed_book(
        s, mistaken.id, PortfolioKind.TRACKING
    )

    # Deleted is gone: a second delete is a 404, as for an id that never was.
    twice = await expect_error(delete(s, who, made[TYPO].id), grpc.StatusCode.NOT_FOUND)
    never = await expect_error(delete(s, who, "no-such-trade"), grpc.StatusCode.NOT_FOUND)
    assert reason(twice) == reason(never) == "TRADE_NOT_FOUND"
    assert twice.details() == f"trade {made[TYPO].id!r} not found"


async def test_a_buy_a_later_sell_needs_is_refused_naming_the_sell_and_nothing_changes(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p, buy, sell, book, before = await sold_out(s)

    refused = await expect_error(delete(s, who, buy.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(refused) == "INSUFFICIENT_SHARES"
    assert refused.details() == (
        f"deleting the buy of 10 AAPL on {days_ago(6).isoformat()} would leave the sell of 10"
        f" AAPL on {days_ago(2).isoformat()} impossible: cannot sell 10 AAPL: only 0 held"
        " (short by 10)"
    )
    assert error_metadata(refused)["tradeId"] == sell.id
    assert [t.id for t in await trades_of(s, who, p.id)] == [sell.id, buy.id]
    assert await stored_book(s, p.id) == book
    assert await figures(s, who, p.id) == before

    # The sell first, then the buy: both go, and the portfolio is empty again.
    await delete(s, who, sell.id)
    await delete(s, who, buy.id)
    assert await trades_of(s, who, p.id) == []
    got, held = await figures(s, who, p.id)
    assert (got[2], got[4], held) == ("0.00", "0.00", [])


async def test_a_paper_portfolios_deposit_its_later_buy_spent_is_refused_by_its_cash_rule(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    paper = await s.portfolio(who, "Paper", kind=pb.PORTFOLIO_KIND_PAPER)
    tracking = await s.portfolio(who, "Real", kind=pb.PORTFOLIO_KIND_TRACKING)
    rows = [("deposit", "", "1000", "1", 5), ("buy", "KO", "5", "100", 3)]
    paper_deposit, paper_buy = await recorded(s, who, paper.id, rows)
    tracking_deposit, _ = await recorded(s, who, tracking.id, rows)
    book = await stored_book(s, paper.id)

    refused = await expect_error(
        delete(s, who, paper_deposit.id), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(refused) == "INSUFFICIENT_CASH"
    assert refused.details() == (
        f"deleting the deposit of 1000.00 on {days_ago(5).isoformat()} would leave the buy of 5"
        f" KO on {days_ago(3).isoformat()} impossible: cannot buy 5 KO: needs 500.00 in cash,"
        " only 0.00 available (short by 500.00)"
    )
    assert error_metadata(refused)["tradeId"] == paper_buy.id
    assert len(await trades_of(s, who, paper.id)) == 2
    assert await stored_book(s, paper.id) == book

    # A tracking portfolio records what happened: the buy was paid with money brought in.
    await delete(s, who, tracking_deposit.id)
    got = await s.read(who, tracking.id)
    assert (got.cash, got.total_cost) == ("0.00", "500.00")


async def test_another_users_trade_is_not_found_as_one_that_never_was_and_stays(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    (trade,) = await recorded(s, who, p.id, [("buy", "KO", "3", "60", 1)])
    book = await stored_book(s, p.id)
    other = await s.user()
    await s.portfolio(other)

    hidden = await expect_error(delete(s, other, trade.id), grpc.StatusCode.NOT_FOUND)
    never = await expect_error(delete(s, other, trade.id[::-1]), grpc.StatusCode.NOT_FOUND)
    assert reason(hidden) == reason(never) == "TRADE_NOT_FOUND"
    assert hidden.details() == (never.details() or "").replace(trade.id[::-1], trade.id)
    assert [t.id for t in await trades_of(s, who, p.id)] == [trade.id]
    assert await stored_book(s, p.id) == book

    blank = await expect_error(delete(s, who, "  "), grpc.StatusCode.INVALID_ARGUMENT)
    assert "id" in (blank.details() or "")


async def test_an_orders_fill_is_refused_and_the_order_stays_filled(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(MOCK_UPDATE_INTERVAL="20") as s:
        who, paper, filled = await a_filled_order(s)
        assert filled.trade_id

        refused = await expect_error(
            delete(s, who, filled.trade_id), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert reason(refused) == "TRADE_IS_ORDER_FILL"
        assert f"is the fill of order {filled.id}" in (refused.details() or "")
        assert filled.trade_id in [t.id for t in await trades_of(s, who, paper.id)]
        again = (await s.stub.GetOrder(pb.GetOrderRequest(id=filled.id), metadata=who)).order
        assert (again.status, again.trade_id) == (pb.ORDER_STATUS_FILLED, filled.trade_id)


async def test_two_deletes_of_one_trade_one_deletes_the_other_is_not_found(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    trades = await recorded(s, who, p.id, [("buy", "KO", str(n), "60", 3) for n in (1, 2, 3)])
    # At once: SQLite's writers queue; PostgreSQL's both find the trade, then queue on the lock.
    first = await asyncio.gather(*(outcome(delete(s, who, trades[0].id)) for _ in range(2)))
    assert sorted(c.name for c in first) == ["NOT_FOUND", "OK"]
    if s.database_url.startswith("postgresql"):
        # Both past their first read before either holds the lock: the second reads again.
        async with portfolio_locked(s, p.id):
            calls = [asyncio.ensure_future(delete(s, who, trades[1].id)) for _ in range(2)]
            await waiting_for_locks(s, 2)
        second = [await outcome(c) for c in calls]
        assert sorted(c.name for c in second) == ["NOT_FOUND", "OK"]
    left = [t.id for t in await trades_of(s, who, p.id)]
    assert trades[0].id not in left and trades[2].id in left
    assert await stored_book(s, p.id) == await replayed_book(s, p.id, PortfolioKind.TRACKING)


async def test_a_delete_and_a_sell_of_the_shares_it_gave_never_both_succeed(
    portfolio_service: PortfolioService, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()

    def deleting(trade_id: str) -> Awaitable[Any]:
        return delete(s, who, trade_id)

    deleted, sold, _ = await rewrite_with_a_sell_sent_midway(s, who, p.id, deleting, monkeypatch)
    assert (deleted, sold) == (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)
    assert await trades_of(s, who, p.id) == []

    for left in await rewrite_and_sell_at_once(s, who, p.id, deleting):
        assert left in ([], [(pb.TRADE_SIDE_BUY, "10"), (pb.TRADE_SIDE_SELL, "10")]), left


async def test_a_dividend_the_market_paid_and_its_owner_deleted_is_not_paid_again(
    portfolio_service: PortfolioService,
) -> None:
    # JNJ goes ex-dividend on 2024-05-15 in the simulated market (seed 7), 1.24 a share.
    s = portfolio_service
    who = await s.user()
    paper, _ = await paper_bought_jnj(s, who, "10")
    async with dividend_payer(s) as payer:
        assert await payer.pay_due() == 1
        (dividend,) = [
            t for t in await trades_of(s, who, paper.id) if t.side == pb.TRADE_SIDE_DIVIDEND
        ]
        assert (dividend.symbol, dividend.amount) == ("JNJ", "12.40")

        await delete(s, who, dividend.id)
        got = await s.read(who, paper.id)
        assert (got.cash, got.dividends) == ("18500.00", "0.00")
        # The next rounds see it paid (and taken back): nothing is paid twice, silently or not.
        assert await payer.pay_due() == 0
        assert await payer.pay_due() == 0
        assert [t.side for t in await trades_of(s, who, paper.id)] == [
            pb.TRADE_SIDE_BUY,
            pb.TRADE_SIDE_DEPOSIT,
        ]
        # Wanted back, it is recorded by hand, once.
        await s.trade(
            who,
            paper.id,
            "dividend",
            "10",
            "1.24",
            symbol="JNJ",
            executed_at=timestamp(datetime(2024, 5, 15, tzinfo=UTC)),
        )
        assert await payer.pay_due() == 0
        got = await s.read(who, paper.id)
        assert (got.cash, got.dividends) == ("18512.40", "12.40")


async def test_deleting_a_buy_before_an_ex_date_recomputes_the_dividend_the_market_paid(
    portfolio_service: PortfolioService,
) -> None:
    # JNJ goes ex-dividend on 2024-05-15 in the simulated market (seed 7), 1.24 a share.
    s = portfolio_service
    who, user_id = await s.account()
    paper, made = await paper_bought_jnj(
        s,
        who,
        "10",
        [
            ("buy", "JNJ", "5", "150", datetime(2024, 5, 2, 15, tzinfo=UTC)),
            # The user's own figure (a dividend of another broker's): never recomputed.
            ("dividend", "JNJ", "10", "1", datetime(2024, 5, 10, tzinfo=UTC)),
        ],
    )
    first_buy, typo, users = made[1], made[2], made[3]
    async with dividend_payer(s) as payer:
        assert await payer.pay_due() == 1
        (paid,) = [t for t in await trades_of(s, who, paper.id) if t.notes == "dividend"]
        assert (paid.quantity, paid.price, paid.amount) == ("15", "1.24", "18.60")

        async with collecting(s) as events:
            answer = await delete(s, who, typo.id)
            await until(lambda: any(e.HasField("portfolio_value") for e in events), "a value")
        # Paid on the 10 shares held at the ex-date without the typo; the rest as it was.
        left = {t.id: t for t in await trades_of(s, who, paper.id)}
        assert (left[paid.id].quantity, left[paid.id].amount) == ("10", "12.40")
        assert left[users.id] == users
        (adjusted,) = answer.adjusted_dividends
        assert (adjusted.id, adjusted.quantity, adjusted.price, adjusted.amount) == (
            paid.id,
            "10",
            "1.24",
            "12.40",
        )
        assert list(answer.removed_dividends) == []
        assert left[paid.id] == adjusted
        got = await s.read(who, paper.id)
        assert (got.cash, got.dividends) == ("18522.40", "22.40")
        assert await stored_book(s, paper.id) == await replayed_book(
            s, paper.id, PortfolioKind.PAPER
        )
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds == ["trade_deleted", "trade_updated", "portfolio_value"]
        assert (events[0].trade_deleted, events[1].trade_updated) == (typo, adjusted)
        assert {e.user_id for e in events} == {user_id}
        assert await payer.pay_due() == 0

        # The last buy goes too: a dividend on no shares goes with it, its payout still noted.
        answer = await delete(s, who, first_buy.id)
        assert list(answer.adjusted_dividends) == []
        assert list(answer.removed_dividends) == [adjusted]
        assert sorted(t.id for t in await trades_of(s, who, paper.id)) == sorted(
            [made[0].id, users.id]
        )
        assert await payer.pay_due() == 0
        got = await s.read(who, paper.id)
        assert (got.cash, got.dividends) == ("20010.00", "10.00")
        assert await stored_book(s, paper.id) == await replayed_book(
            s, paper.id, PortfolioKind.PAPER
        )
