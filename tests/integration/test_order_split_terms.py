"""Split-adjusted orders: a matcher that still holds
an order's terms from before a split must not change the order on them, and edge cases of
`split_terms`. Each test states the rule it checks (README, "Stock splits")."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.portfolio.orders import OrderStatus
from tests.integration.order_harness import (
    BUY,
    LIMIT,
    SELL,
    STOP,
    STOP_LIMIT,
    Desk,
    placed_days_ago,
    record_split,
    terms,
)


async def test_a_matcher_holding_pre_split_terms_does_not_reject_the_adjusted_order(
    desk: Desk,
) -> None:
    # A buy stop of 10 at 500; a 1-for-4 makes it a buy stop of 2.5 at 2000. The leader still
    # holds 10 at 500: a tick at 1700 crosses that (not 2000), and 10 x 1700 is beyond the
    # 10,000 of cash. The order asks for 2.5 at 2000 now and must stay open, not be REJECTED on
    # terms it no longer has.
    order = await placed_days_ago(desk, 2, STOP, BUY, "10", stop_price="500")
    await desk.step("400")  # loads the index: the leader holds 10 at 500
    await record_split(desk, 1, 4)
    assert terms(await desk.order(order.id)) == ("2.5", None, "2000", "SPLIT_ADJUSTED")
    await desk.step("1700")
    after = await desk.order(order.id)
    assert (after.status, after.status_reason) == (OrderStatus.OPEN, "SPLIT_ADJUSTED")


async def test_a_matcher_holding_pre_split_terms_does_not_trigger_the_adjusted_stop_limit(
    desk: Desk,
) -> None:
    # A stop-limit sell of 40... placed as 10, stop 300, limit 290; a 4-for-1 makes it 40, stop
    # 75, limit 72.5. A tick at 100 reaches the old stop (300) but not the new one (75): the
    # stop-loss must not be triggered, and must not sell at 100 once the leader hears the
    # order's event.
    await desk.buy("40", "100")
    order = await placed_days_ago(
        desk, 2, STOP_LIMIT, SELL, "10", stop_price="300", limit_price="290"
    )
    await desk.step("400")  # loads the index: the leader holds stop 300, limit 290
    await record_split(desk, 4, 1)
    assert terms(await desk.order(order.id)) == ("40", "72.5", "75", "SPLIT_ADJUSTED")
    await desk.step("100")
    after = await desk.order(order.id)
    assert not after.triggered, "triggered at 100 by the stop of 300 it no longer has"
    await desk.matcher.load()  # the split's event (or the reload) reaches the leader
    await desk.step("100")  # over the stop of 75: nothing may fill
    final = await desk.order(order.id)
    assert final.status is OrderStatus.OPEN, (final.status, final.filled_price)
    assert await desk.trades_of(order.id) == []


# --- what held: races and edges ------------------------------------------------------------


async def _expect_terms(desk: Desk, order_id: str) -> None:
    """An open order asks for its placed terms times every split recorded after it."""
    from services.portfolio.orders import split_terms
    from services.portfolio.repository import SplitRepository

    found = await desk.order(order_id)
    async with desk.db.reading() as session:
        every = [r.split for r in await SplitRepository(session).of(desk.portfolio_id)]
    if found.status is OrderStatus.OPEN:
        want = split_terms(found, every)
        assert want is not None and found.terms == want, (found.terms, want)
        adjusted = want != found.placed_terms
        assert found.status_reason == ("SPLIT_ADJUSTED" if adjusted else "")
        assert (found.placed is not None) == adjusted


async def test_races_of_a_split_with_fills_cancels_and_other_splits_keep_the_terms(
    desk: Desk,
) -> None:
    import asyncio

    await desk.buy("100", "10")
    rounds = 8
    placed = []
    for i in range(rounds):
        order = await placed_days_ago(desk, 60, LIMIT, BUY, "1", limit_price="400")
        other = await placed_days_ago(desk, 60, LIMIT, SELL, "3", limit_price="1000")
        await desk.matcher.load()
        # Alternately 2-for-1 and 1-for-2, each on its own day; raced with a tick that
        # crosses the order's terms before the split, a cancel of another, and a second split.
        n, d = (2, 1) if i % 2 == 0 else (1, 2)
        results = await asyncio.gather(
            record_split(desk, n, d, days_ago=2 * i + 1),
            record_split(desk, d, n, days_ago=2 * i + 2),
            desk.step("399"),
            desk.orders.cancel("user-1", other.id),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        placed += [order.id, other.id]
        for order_id in placed:
            await _expect_terms(desk, order_id)
        filled = await desk.order(order.id)
        if filled.status is OrderStatus.FILLED:
            [trade] = await desk.trades_of(order.id)
            assert trade.trade.quantity == filled.quantity
            assert filled.limit_price is not None and trade.trade.price <= filled.limit_price


async def test_a_split_event_reindexes_the_order_at_its_new_level(desk: Desk) -> None:
    import asyncio

    order = await placed_days_ago(desk, 2, LIMIT, BUY, "10", limit_price="400")
    desk.matcher.start()
    try:
        await desk.step("500")  # loads the index: 10 at 400
        await record_split(desk, 4, 1)
        for _ in range(200):
            index = desk.matcher.index
            held = index.get(order.id) if index is not None else None
            if held is not None and held.limit_price == Decimal(100):
                break
            await asyncio.sleep(0.02)
        index = desk.matcher.index
        assert index is not None
        held = index.get(order.id)
        assert held is not None
        assert (held.quantity, held.limit_price) == (Decimal(40), Decimal(100))
        await desk.step("99")
        filled = await desk.order(order.id)
        assert (filled.status, filled.quantity) == (OrderStatus.FILLED, Decimal(40))
    finally:
        await desk.matcher.stop()


async def test_a_split_and_its_inverse_bring_the_order_back_to_its_placed_terms(
    desk: Desk,
) -> None:
    order = await placed_days_ago(
        desk, 5, STOP_LIMIT, BUY, "0.12345679", stop_price="123.456789", limit_price="0.000003"
    )
    await record_split(desk, 3, 2, days_ago=3)
    await _expect_terms(desk, order.id)
    await record_split(desk, 2, 3, days_ago=1)
    back = await desk.order(order.id)
    assert terms(back) == ("0.12345679", "0.000003", "123.456789", "")
    assert back.placed is None


async def test_huge_ratios_on_max_precision_terms(desk: Desk) -> None:
    big = await placed_days_ago(
        desk, 5, LIMIT, SELL, "999999999999.99999999", limit_price="999999999999.999999"
    )
    small = await placed_days_ago(desk, 5, LIMIT, BUY, "0.00000001", limit_price="0.000001")
    await record_split(desk, 1_000_000, 1, days_ago=3)
    assert terms(await desk.order(big.id)) == (
        "999999999999999999.99",
        "1000000",
        None,
        "SPLIT_ADJUSTED",
    )
    cancelled = await desk.order(small.id)  # 0.000001 / 1e6 is no price
    assert (cancelled.status, cancelled.status_reason) == (
        OrderStatus.CANCELLED,
        "CANCELLED_BY_SPLIT",
    )
    await record_split(desk, 1, 1_000_000, days_ago=2)
    back = await desk.order(big.id)
    assert terms(back) == ("999999999999.99999999", "999999999999.999999", None, "")
    await record_split(desk, 1, 1_000_000, days_ago=1)
    await _expect_terms(desk, big.id)


async def test_an_import_with_split_rows_racing_create_and_delete_split_keeps_the_terms(
    desk: Desk,
) -> None:
    import asyncio
    from datetime import timedelta

    from services.portfolio.imports import Imports

    imports = Imports(desk.trades, desk.hub, max_rows=100, clock=desk.clock, orders=desk.orders)
    header = "date,side,symbol,quantity,price,fees,notes\n"
    order = await placed_days_ago(desk, 60, LIMIT, BUY, "6", limit_price="400")
    gone = await record_split(desk, 3, 1, days_ago=40)
    for i in range(6):
        day = (desk.clock() - timedelta(days=2 * i + 1)).date().isoformat()
        text = (
            header
            + f"{day},split,aapl,{'2:1' if i % 2 else '1:2'},,,\n"
            + (f"{day}T12:00:00Z,deposit,,1,,,\n")
        )
        results = await asyncio.gather(
            imports.run("user-1", desk.portfolio_id, text, dry_run=False),
            record_split(desk, *((3, 2) if i % 2 else (2, 3)), days_ago=2 * i + 2),
            *([desk.splits.delete("user-1", desk.portfolio_id, gone)] if i == 0 else []),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
        await _expect_terms(desk, order.id)
    assert (await desk.order(order.id)).status is OrderStatus.OPEN


async def test_taking_back_the_split_that_cancelled_an_order_leaves_it_cancelled(
    desk: Desk,
) -> None:
    # Pins what the code does (an order ends once), which the README does not say next to
    # "deleting a split restores them exactly": a mistaken 1-for-1,000,000 (meant as a
    # 1,000,000-for-1) cancels the order for good; deleting the split leaves it cancelled.
    order = await placed_days_ago(desk, 2, LIMIT, BUY, "0.005", limit_price="10")
    mistaken = await record_split(desk, 1, 1_000_000)
    assert (await desk.order(order.id)).status_reason == "CANCELLED_BY_SPLIT"
    await desk.splits.delete("user-1", desk.portfolio_id, mistaken)
    after = await desk.order(order.id)
    assert (after.status, terms(after)) == (
        OrderStatus.CANCELLED,
        ("0.005", "10", None, "CANCELLED_BY_SPLIT"),
    )


async def test_a_day_order_whose_day_is_over_is_not_adjusted_by_a_split(desk: Desk) -> None:
    # Yesterday's DAY order, not swept yet (the sweep comes every few seconds): over at
    # midnight, it is no open order for a split of today to adjust or announce as
    # SPLIT_ADJUSTED (nit: the sweep then ends it as DAY_ENDED either way).
    from datetime import timedelta

    from services.portfolio.orders import TimeInForce

    ahead = desk.clock.ahead
    desk.clock.ahead = ahead - timedelta(days=1)
    try:
        day = await desk.place(LIMIT, BUY, "10", limit_price="400", time_in_force=TimeInForce.DAY)
    finally:
        desk.clock.ahead = ahead
    await record_split(desk, 4, 1, days_ago=0)
    found = await desk.order(day.id)
    assert (found.quantity, found.status_reason) == (Decimal(10), ""), terms(found)


async def test_a_lost_split_event_is_made_good_by_the_reload(desk: Desk) -> None:
    from services.portfolio.mock_market import MockMarket
    from services.portfolio.order_matcher import OrderMatcher

    now = [0.0]
    matcher = OrderMatcher(
        desk.orders, MockMarket(seed=7, interval=3600), desk.hub, monotonic=lambda: now[0]
    )
    order = await placed_days_ago(desk, 2, LIMIT, BUY, "10", limit_price="400")
    await desk.step("500", matcher)  # loads: 10 at 400; the split's event never comes
    await record_split(desk, 4, 1)
    await desk.step("399", matcher)  # the old terms cross: the conditional fill refuses
    await desk.step("99", matcher)  # not in the index any more until the reload
    assert (await desk.order(order.id)).status is OrderStatus.OPEN
    now[0] = 61.0
    await desk.step("99", matcher)
    filled = await desk.order(order.id)
    assert (filled.status, filled.quantity, filled.filled_price) == (
        OrderStatus.FILLED,
        Decimal(40),
        Decimal(99),
    )


async def test_a_cancel_racing_a_split_answers_the_terms_it_cancelled(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL (read committed): CancelOrder reads the order, a split commits, and the
    # cancel's conditional update still finds it open and cancels it. Its answer (and the
    # owner's `order` message) must state the order as stored, 40 at 100, not 10 at 400.
    from services.portfolio.order_store import OrderRepository

    if desk.db.dialect == "sqlite":
        pytest.skip("SQLite's writer lock serializes the two")
    order = await placed_days_ago(desk, 2, LIMIT, BUY, "10", limit_price="400")
    original = OrderRepository.change_open
    raced: list[str] = []

    async def change_open(self: OrderRepository, order_id: str, **kwargs: object) -> bool:
        if not raced and kwargs.get("status") == OrderStatus.CANCELLED.value:
            raced.append(await record_split(desk, 4, 1))
        return await original(self, order_id, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(OrderRepository, "change_open", change_open)
    answered = await desk.orders.cancel("user-1", order.id)
    stored = await desk.order(order.id)
    assert stored.status is OrderStatus.CANCELLED
    assert (answered.quantity, answered.limit_price) == (stored.quantity, stored.limit_price)


async def test_a_sell_never_asks_for_more_than_the_split_holding_after_two_splits(
    desk: Desk,
) -> None:
    # README: "shares rounded down, so a sell never asks for more than the split holding".
    # 10 held and a sell of 10 at 40; a 1-for-3 then a 3-for-2. The book rounds the holding
    # down at each split (3.33333333, then 4.99999999, the rest paid in cash); the order,
    # rounded once from its placed terms, asks for 5: its fill is refused, REJECTED.
    from datetime import timedelta

    from services.portfolio.domain import Side
    from services.portfolio.trades import TradeDraft

    back = desk.clock() - timedelta(days=6)
    for draft in (
        TradeDraft(side=Side.DEPOSIT, symbol="", quantity="1000", executed_at=back),
        TradeDraft(side=Side.BUY, symbol="AAPL", quantity="10", price="30", executed_at=back),
    ):
        await desk.trades.record("user-1", desk.portfolio_id, draft)
    order = await placed_days_ago(desk, 4, LIMIT, SELL, "10", limit_price="40")
    await record_split(desk, 1, 3, days_ago=3)
    await record_split(desk, 3, 2, days_ago=2)
    (held,) = await desk.trades.positions("user-1", desk.portfolio_id)
    asks = await desk.order(order.id)
    assert asks.quantity <= held.quantity, (f"{asks.quantity:f}", f"{held.quantity.normalize():f}")
    await desk.step("81")
    after = await desk.order(order.id)
    assert (after.status, after.status_reason) == (OrderStatus.FILLED, "SPLIT_ADJUSTED")


async def test_a_triggered_stop_limit_stays_triggered_at_its_split_limit(desk: Desk) -> None:
    order = await placed_days_ago(
        desk, 2, STOP_LIMIT, BUY, "10", stop_price="105", limit_price="106"
    )
    await desk.step("107")  # the stop is reached, the limit not: triggered, open
    assert (await desk.order(order.id)).triggered
    await record_split(desk, 2, 1)
    adjusted = await desk.order(order.id)
    assert adjusted.triggered and terms(adjusted) == ("20", "53", "52.5", "SPLIT_ADJUSTED")
    await desk.matcher.load()  # the split's event
    await desk.step("53.5")  # over the new limit: no fill
    assert (await desk.order(order.id)).status is OrderStatus.OPEN
    await desk.step("52.9")
    filled = await desk.order(order.id)
    assert (filled.status, filled.quantity, filled.filled_price) == (
        OrderStatus.FILLED,
        Decimal(20),
        Decimal("52.9"),
    )
