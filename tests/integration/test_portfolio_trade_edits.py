"""Editing a trade (UpdateTrade, services/portfolio/trade_edits.py) through the real server, on
SQLite and PostgreSQL: only the fields given change, and the book left is the one a history with
the right figures gives; an edit the trade itself or a later trade would not survive is refused
naming it, with nothing changed; side, symbol and portfolio stay; bad values are refused as
CreateTrade refuses them; another user's trade is as absent as none; an order's fill stays; two
edits of one trade both land; an edit racing a sell that needs the shares never both win; the
dividends the market paid after it are recomputed, and one edited by hand is the user's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.records import PortfolioKind
from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    StartPortfolio,
    collecting,
    rate,
)
from tests.integration.trade_history import (
    HISTORY,
    TYPO,
    a_filled_order,
    days_ago,
    delete,
    dividend_payer,
    figures,
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
from tests.utc_days import noon, timestamp
from tests.utc_days import stamp as in_the_afternoon
from tests.waiting import until


async def edit(
    s: PortfolioService, who: Metadata, trade_id: str, **fields: Any
) -> pb.UpdateTradeResponse:
    reply: pb.UpdateTradeResponse = await s.stub.UpdateTrade(
        pb.UpdateTradeRequest(id=trade_id, **fields), metadata=who
    )
    return reply


async def test_editing_a_buy_leaves_the_book_a_history_with_the_right_figures_gives(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, user_id = await s.account()
    mistaken = await s.portfolio(who, "With the typo")
    right = await s.portfolio(who, "Right")
    made = await recorded(s, who, mistaken.id, HISTORY)
    fixed = list(HISTORY)
    fixed[TYPO] = ("buy", "AAPL", "10", "105", fixed[TYPO][4])
    await recorded(s, who, right.id, fixed)
    assert await figures(s, who, mistaken.id) != await figures(s, who, right.id)

    async with collecting(s) as events:
        answer = await edit(s, who, made[TYPO].id, quantity="10")
        await until(lambda: any(e.HasField("portfolio_value") for e in events), "a value")
    # Only the quantity changed: the same trade (id, time, price, notes, when recorded).
    expected = pb.Trade()
    expected.CopyFrom(made[TYPO])
    expected.quantity, expected.amount = "10", "1050.00"
    assert answer.trade == expected
    assert (list(answer.adjusted_dividends), list(answer.removed_dividends)) == ([], [])
    assert await figures(s, who, mistaken.id) == await figures(s, who, right.id)
    listed = await trades_of(s, who, mistaken.id)
    assert [t.id for t in listed] == [t.id for t in reversed(made)]
    assert listed[len(made) - 1 - TYPO] == expected
    assert await stored_book(s, mistaken.id) == await replayed_book(
        s, mistaken.id, PortfolioKind.TRACKING
    )
    assert [e.WhichOneof("event") for e in events] == ["trade_updated", "portfolio_value"]
    assert (events[0].user_id, events[0].trade_updated) == (user_id, expected)

    # Everything an edit may change at once: the sell moved a day, repriced, with fees and a
    # note; the book is again what the history with those figures gives.
    sell = made[4]
    moved = noon(days_ago(6))
    answer = await edit(
        s, who, sell.id, quantity="11", price="121.5", fees="1.25", executed_at=moved, notes="fix"
    )
    assert (
        answer.trade.quantity,
        answer.trade.price,
        answer.trade.fees,
        answer.trade.executed_at,
        answer.trade.notes,
        answer.trade.side,
        answer.trade.symbol,
    ) == ("11", "121.50", "1.25", moved, "fix", pb.TRADE_SIDE_SELL, "AAPL")
    again = await s.portfolio(who, "Right again")
    fixed[4] = ("sell", "AAPL", "11", "121.5", 6)
    rows = await recorded(s, who, again.id, fixed)
    await edit(s, who, rows[4].id, fees="1.25")
    assert await figures(s, who, mistaken.id) == await figures(s, who, again.id)
    got, held = await figures(s, who, mistaken.id)
    # Realized: 11 sold at 121.50 less 1.25 of fees, their cost the 10 at 100 and 1 at 105.
    assert (got[4], held[0][:3]) == ("230.25", ("AAPL", "14", "1495.00"))
    book = await stored_book(s, mistaken.id)
    assert book == await replayed_book(s, mistaken.id, PortfolioKind.TRACKING)

    # The same edit twice: the same trade, the same book.
    twice = await edit(
        s, who, sell.id, quantity="11", price="121.5", fees="1.25", executed_at=moved, notes="fix"
    )
    assert twice.trade == answer.trade
    assert await stored_book(s, mistaken.id) == book
    assert await figures(s, who, mistaken.id) == (got, held)


async def test_an_edit_the_trade_or_a_later_one_would_not_survive_is_refused_naming_it(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p, buy, sell, book, before = await sold_out(s)
    listed = await trades_of(s, who, p.id)
    bought_on, sold_on = days_ago(6).isoformat(), days_ago(2).isoformat()

    lowered = await expect_error(
        edit(s, who, buy.id, quantity="5"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(lowered) == "INSUFFICIENT_SHARES"
    assert lowered.details() == (
        f"editing the buy of 10 AAPL on {bought_on} into the buy of 5 AAPL on {bought_on} would"
        f" leave the sell of 10 AAPL on {sold_on} impossible: cannot sell 10 AAPL: only 5 held"
        " (short by 5)"
    )
    assert error_metadata(lowered)["tradeId"] == sell.id

    raised = await expect_error(
        edit(s, who, sell.id, quantity="20"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(raised) == "INSUFFICIENT_SHARES"
    assert raised.details() == (
        f"editing the sell of 10 AAPL on {sold_on} into the sell of 20 AAPL on {sold_on} would"
        " make it impossible: cannot sell 20 AAPL: only 10 held (short by 10)"
    )
    assert error_metadata(raised)["tradeId"] == sell.id

    # A sell moved before the buy that gave its shares.
    early = noon(days_ago(8))
    moved = await expect_error(
        edit(s, who, sell.id, executed_at=early), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(moved) == "INSUFFICIENT_SHARES"
    assert error_metadata(moved)["tradeId"] == sell.id
    assert await trades_of(s, who, p.id) == listed
    assert await stored_book(s, p.id) == book
    assert await figures(s, who, p.id) == before

    # A paper portfolio's deposit lowered below what its later buy spent.
    paper = await s.portfolio(who, "Paper", kind=pb.PORTFOLIO_KIND_PAPER)
    deposit, paper_buy = await recorded(
        s, who, paper.id, [("deposit", "", "1000", "1", 5), ("buy", "KO", "5", "100", 3)]
    )
    paper_book = await stored_book(s, paper.id)
    short = await expect_error(
        edit(s, who, deposit.id, quantity="100"), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(short) == "INSUFFICIENT_CASH"
    assert short.details() == (
        f"editing the deposit of 1000.00 on {days_ago(5).isoformat()} into the deposit of 100.00"
        f" on {days_ago(5).isoformat()} would leave the buy of 5 KO on"
        f" {days_ago(3).isoformat()} impossible: cannot buy 5 KO: needs 500.00 in cash, only"
        " 100.00 available (short by 400.00)"
    )
    assert error_metadata(short)["tradeId"] == paper_buy.id
    assert await stored_book(s, paper.id) == paper_book
    assert [t.quantity for t in await trades_of(s, who, paper.id)] == ["5", "1000"]


async def test_side_symbol_and_portfolio_stay_and_bad_values_are_refused_as_create_refuses(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    other = await s.portfolio(who, "Other")
    (buy,) = await recorded(s, who, p.id, [("buy", "KO", "3", "60", 1)])
    book = await stored_book(s, p.id)

    for fields, field in (
        ({"side": pb.TRADE_SIDE_SELL}, "side"),
        ({"symbol": "PEP"}, "symbol"),
        ({"portfolio_id": other.id}, "portfolioId"),
    ):
        refused = await expect_error(
            edit(s, who, buy.id, quantity="4", **fields), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert refused.details() == (
            "a trade's side, symbol and portfolio stay as recorded: "
            f"{field} cannot be changed: delete the trade and record it anew"
        )
    # The values it has already are no change.
    same = await edit(
        s, who, buy.id, side=pb.TRADE_SIDE_BUY, symbol=" ko ", portfolio_id=p.id, notes="kept"
    )
    assert (same.trade.side, same.trade.symbol, same.trade.notes) == (
        pb.TRADE_SIDE_BUY,
        "KO",
        "kept",
    )
    book = await stored_book(s, p.id)

    # The values CreateTrade refuses, refused alike.
    for fields, field in (
        ({"quantity": "0"}, "quantity"),
        ({"price": "-1"}, "price"),
        ({"fees": "abc"}, "fees"),
        ({"price": ""}, "price"),
        ({"notes": "x" * 1001}, "notes"),
    ):
        bad = await expect_error(edit(s, who, buy.id, **fields), grpc.StatusCode.INVALID_ARGUMENT)
        assert field in (bad.details() or ""), (fields, bad.details())
    future = timestamp(datetime.now(UTC) + timedelta(days=2))
    late = await expect_error(
        edit(s, who, buy.id, executed_at=future), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert late.details() == "invalid trade: executedAt must not be in the future"
    assert await stored_book(s, p.id) == book

    # Another user's trade is as absent as one that never was.
    stranger = await s.user()
    hidden = await expect_error(edit(s, stranger, buy.id, quantity="1"), grpc.StatusCode.NOT_FOUND)
    never = await expect_error(
        edit(s, stranger, buy.id[::-1], quantity="1"), grpc.StatusCode.NOT_FOUND
    )
    assert reason(hidden) == reason(never) == "TRADE_NOT_FOUND"
    assert hidden.details() == (never.details() or "").replace(buy.id[::-1], buy.id)
    assert [t.quantity for t in await trades_of(s, who, p.id)] == ["3"]
    assert await stored_book(s, p.id) == book


async def test_an_orders_fill_is_refused_and_stays_as_filled(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(MOCK_UPDATE_INTERVAL="20") as s:
        who, paper, filled = await a_filled_order(s)
        before = {t.id: t for t in await trades_of(s, who, paper.id)}[filled.trade_id]

        refused = await expect_error(
            edit(s, who, filled.trade_id, quantity="1"), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert reason(refused) == "TRADE_IS_ORDER_FILL"
        assert (refused.details() or "").endswith(
            f"is the fill of order {filled.id}, which says it filled: an order's fill cannot be"
            " edited"
        )
        assert {t.id: t for t in await trades_of(s, who, paper.id)}[filled.trade_id] == before


async def test_two_edits_of_one_trade_at_once_both_land(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    (buy,) = await recorded(s, who, p.id, [("buy", "KO", "3", "60", 3)])
    for n in range(4):
        quantity, notes = str(4 + n), f"edit {n}"
        calls = [edit(s, who, buy.id, quantity=quantity), edit(s, who, buy.id, notes=notes)]
        if n % 2:
            calls.reverse()
        await asyncio.gather(*calls)
        (now,) = await trades_of(s, who, p.id)
        assert (now.quantity, now.notes) == (quantity, notes)
        assert await stored_book(s, p.id) == await replayed_book(s, p.id, PortfolioKind.TRACKING)
    if s.database_url.startswith("postgresql"):
        # Both past their first read before either holds the lock: the second reads again
        # under it, finds the first's edit, and works its own out on top of it.
        async with portfolio_locked(s, p.id):
            pending = [
                asyncio.ensure_future(edit(s, who, buy.id, price="61")),
                asyncio.ensure_future(edit(s, who, buy.id, fees="2")),
            ]
            await waiting_for_locks(s, 2)
        results = await asyncio.gather(*pending)
        (now,) = await trades_of(s, who, p.id)
        assert (now.quantity, now.price, now.fees) == ("7", "61.00", "2.00")
        assert {r.trade.price for r in results} >= {"61.00"}
        assert await stored_book(s, p.id) == await replayed_book(s, p.id, PortfolioKind.TRACKING)


async def test_an_edit_and_a_sell_of_the_shares_it_takes_away_never_both_succeed(
    portfolio_service: PortfolioService, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()

    def editing(trade_id: str) -> Awaitable[Any]:
        return edit(s, who, trade_id, quantity="5")

    edited, sold, buy_id = await rewrite_with_a_sell_sent_midway(s, who, p.id, editing, monkeypatch)
    assert (edited, sold) == (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)
    assert [t.quantity for t in await trades_of(s, who, p.id)] == ["5"]
    await delete(s, who, buy_id)

    for left in await rewrite_and_sell_at_once(s, who, p.id, editing):
        assert left in (
            [(pb.TRADE_SIDE_BUY, "5")],
            [(pb.TRADE_SIDE_BUY, "10"), (pb.TRADE_SIDE_SELL, "10")],
        ), left


async def test_an_edit_before_an_ex_date_recomputes_the_dividend_the_market_paid(
    portfolio_service: PortfolioService,
) -> None:
    # JNJ goes ex-dividend on 2024-05-15 in the simulated market (seed 7), 1.24 a share.
    s = portfolio_service
    who, user_id = await s.account()
    paper, (deposit, buy) = await paper_bought_jnj(s, who, "15")
    async with dividend_payer(s) as payer:
        assert await payer.pay_due() == 1
        (paid,) = [t for t in await trades_of(s, who, paper.id) if t.notes == "dividend"]
        assert (paid.quantity, paid.amount) == ("15", "18.60")

        async with collecting(s) as events:
            answer = await edit(s, who, buy.id, quantity="10")
            await until(lambda: any(e.HasField("portfolio_value") for e in events), "a value")
        listed = {t.id: t for t in await trades_of(s, who, paper.id)}
        assert (listed[paid.id].quantity, listed[paid.id].amount) == ("10", "12.40")
        assert list(answer.adjusted_dividends) == [listed[paid.id]]
        assert list(answer.removed_dividends) == []
        assert [e.WhichOneof("event") for e in events] == [
            "trade_updated",
            "trade_updated",
            "portfolio_value",
        ]
        assert [e.trade_updated.id for e in events[:2]] == [buy.id, paid.id]
        assert {e.user_id for e in events} == {user_id}
        got = await s.read(who, paper.id)
        assert (got.cash, got.dividends) == ("18512.40", "12.40")
        assert await stored_book(s, paper.id) == await replayed_book(
            s, paper.id, PortfolioKind.PAPER
        )

        # Moved after the ex-date, the buy held no shares then: the dividend goes.
        moved = await edit(
            s, who, buy.id, executed_at=timestamp(datetime(2024, 5, 15, 10, tzinfo=UTC))
        )
        assert list(moved.removed_dividends) == [listed[paid.id]]
        assert paid.id not in {t.id for t in await trades_of(s, who, paper.id)}
        assert await payer.pay_due() == 0  # its payout is still noted
        assert await stored_book(s, paper.id) == await replayed_book(
            s, paper.id, PortfolioKind.PAPER
        )
        assert deposit.id in {t.id for t in await trades_of(s, who, paper.id)}


async def test_a_market_paid_dividend_edited_by_hand_is_the_users_figure_from_then_on(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    paper, made = await paper_bought_jnj(
        s,
        who,
        "10",
        [
            ("buy", "JNJ", "5", "150", datetime(2024, 5, 2, 15, tzinfo=UTC)),
            ("buy", "JNJ", "2", "150", datetime(2024, 5, 3, 15, tzinfo=UTC)),
        ],
    )
    async with dividend_payer(s) as payer:
        assert await payer.pay_due() == 1
        (paid,) = [t for t in await trades_of(s, who, paper.id) if t.notes == "dividend"]
        assert paid.amount == "21.08"
        # A note leaves it the payer's: a deletion before its ex-date still recomputes it.
        await edit(s, who, paid.id, notes="dividend (checked)")
        gone = await delete(s, who, made[3].id)
        assert [(t.id, t.amount, t.notes) for t in gone.adjusted_dividends] == [
            (paid.id, "18.60", "dividend (checked)")
        ]
        # The broker's per-share figure makes it the user's: never recomputed again.
        answer = await edit(s, who, paid.id, price="1.2")
        assert (answer.trade.quantity, answer.trade.amount) == ("15", "18.00")
        gone = await delete(s, who, made[2].id)
        assert (list(gone.adjusted_dividends), list(gone.removed_dividends)) == ([], [])
        listed = {t.id: t for t in await trades_of(s, who, paper.id)}
        assert listed[paid.id] == answer.trade
        assert await payer.pay_due() == 0  # and its payout is still noted: not paid again
        assert sorted(listed) == sorted([made[0].id, made[1].id, paid.id])
        assert await stored_book(s, paper.id) == await replayed_book(
            s, paper.id, PortfolioKind.PAPER
        )


async def test_a_foreign_trade_is_edited_in_its_own_currency_at_its_days_rate(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    friday, tuesday = date(2024, 3, 15), date(2024, 3, 12)
    bought = await s.trade(
        who, p.id, "buy", "2", "150", symbol="AAPL", executed_at=in_the_afternoon(friday)
    )
    assert (bought.currency, Decimal(bought.fx_rate)) == ("USD", rate("USD", "EUR", friday))

    async def cost() -> Decimal:
        got = await s.read(who, p.id)
        return Decimal(got.cost_basis)

    # A new price in dollars, as the trade shows it; the same day keeps the day's rate.
    repriced = (await edit(s, who, bought.id, price="160")).trade
    assert (repriced.currency, repriced.fx_rate, Decimal(repriced.price)) == (
        "USD",
        bought.fx_rate,
        Decimal(160),
    )
    assert await cost() == (2 * 160 * rate("USD", "EUR", friday)).quantize(Decimal("0.01"))
    # Moved to another day: that day's rate, as a trade recorded then.
    moved = (await edit(s, who, bought.id, executed_at=in_the_afternoon(tuesday))).trade
    assert (moved.currency, Decimal(moved.fx_rate), Decimal(moved.price)) == (
        "USD",
        rate("USD", "EUR", tuesday),
        Decimal(160),
    )
    assert await cost() == (2 * 160 * rate("USD", "EUR", tuesday)).quantize(Decimal("0.01"))
    assert await stored_book(s, p.id) == await replayed_book(s, p.id, PortfolioKind.TRACKING)
    # The same edit again: the same trade.
    assert (await edit(s, who, bought.id, executed_at=in_the_afternoon(tuesday))).trade == moved
