"""Order matching on a market stepped by hand, against a real database (SQLite and
PostgreSQL): each order type fills at the right tick and price, a stop-limit triggers first,
rules broken at execution reject the order with the reason, an order never fills twice (two
matchers racing, or a cancel racing a fill) and never fills without its trade or the reverse,
and DAY orders expire at the end of their UTC day (an injected clock)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.portfolio.domain import Side
from services.portfolio.market_data import Quote, TickFanout, TickStream
from services.portfolio.mock_market import MockMarket
from services.portfolio.order_matcher import OrderMatcher
from services.portfolio.orders import (
    Order,
    OrderDraft,
    OrderStatus,
    OrderType,
    TimeInForce,
    end_of_day,
)
from services.portfolio.portfolios import PortfolioDraft, Portfolios
from services.portfolio.prices import Prices
from services.portfolio.records import PortfolioKind
from services.portfolio.repository import PortfolioRepository, TradeRepository
from services.portfolio.trades import TradeDraft
from services.runtime.clock import utc_now
from services.runtime.errors import FailedPrecondition
from tests.integration.order_harness import (
    BUY,
    LIMIT,
    SELL,
    STOP,
    STOP_LIMIT,
    SYMBOL,
    USER,
    Desk,
    placed_days_ago,
    record_split,
    terms,
)
from tests.waiting import until, until_async


@pytest.mark.parametrize(
    ("type", "side", "prices", "ticks", "filled_at"),
    [
        # (order, the ticks in turn, the price it fills at: at the last tick)
        (LIMIT, BUY, {"limit_price": "100"}, ["101", "100.5", "99.5"], "99.5"),
        (LIMIT, BUY, {"limit_price": "100"}, ["101", "100"], "100"),
        (LIMIT, SELL, {"limit_price": "110"}, ["109", "109.99", "111.25"], "111.25"),
        (STOP, BUY, {"stop_price": "105"}, ["104", "104.99", "106"], "106"),
        (STOP, SELL, {"stop_price": "95"}, ["96", "95.01", "94"], "94"),
        # The stop is reached at 107 (above the limit: no fill), then 105.5 is within it.
        (
            STOP_LIMIT,
            BUY,
            {"stop_price": "105", "limit_price": "106"},
            ["104", "107", "105.5"],
            "105.5",
        ),
        # The stop is reached at 93 (below the limit of a sell: no fill), then 94.2 fills.
        (STOP_LIMIT, SELL, {"stop_price": "95", "limit_price": "94"}, ["96", "93", "94.2"], "94.2"),
        # Stop and limit both met by the tick that reaches the stop: filled at once.
        (STOP_LIMIT, SELL, {"stop_price": "95", "limit_price": "94"}, ["96", "94.5"], "94.5"),
    ],
)
async def test_each_type_fills_at_the_first_crossing_tick_at_its_price(
    desk: Desk,
    type: OrderType,
    side: Side,
    prices: dict[str, str],
    ticks: list[str],
    filled_at: str,
) -> None:
    if side is SELL:
        await desk.buy("10", "100")
    order = await desk.place(type, side, "10", **prices)
    for tick in ticks[:-1]:
        await desk.step(tick)
        waiting = await desk.order(order.id)
        assert waiting.status is OrderStatus.OPEN
        assert waiting.trade_id == ""
    if type is STOP_LIMIT and len(ticks) == 3:
        assert (await desk.order(order.id)).triggered is True
    await desk.step(ticks[-1])

    filled = await desk.order(order.id)
    assert filled.status is OrderStatus.FILLED
    assert filled.filled_price == Decimal(filled_at)
    (trade,) = await desk.trades_of(order.id)
    assert filled.trade_id == trade.trade.id
    assert trade.trade.price == Decimal(filled_at)
    assert trade.trade.side is side
    assert trade.trade.quantity == Decimal(10)
    assert trade.price_source == "mock"
    # Filled once: more crossing ticks record nothing more.
    await desk.step(ticks[-1])
    assert len(await desk.trades_of(order.id)) == 1


async def test_a_sell_whose_shares_were_sold_meanwhile_is_rejected_and_records_nothing(
    desk: Desk,
) -> None:
    await desk.buy("5", "100")
    order = await desk.place(LIMIT, SELL, "5", limit_price="110")
    await desk.step("105")
    # A concurrent sell empties the position before the market reaches the limit.
    draft = TradeDraft(side=SELL, symbol=SYMBOL, quantity="5", price="106")
    await desk.trades.record(USER, desk.portfolio_id, draft)
    await desk.step("111")

    rejected = await desk.order(order.id)
    assert rejected.status is OrderStatus.REJECTED
    assert rejected.status_reason == "INSUFFICIENT_SHARES"
    assert rejected.trade_id == "" and rejected.filled_price is None
    assert await desk.trades_of(order.id) == []


async def test_a_buy_beyond_the_cash_is_rejected_with_the_reason(desk: Desk) -> None:
    order = await desk.place(LIMIT, BUY, "1000", limit_price="100")  # 99,000 > 10,000
    await desk.step("99")
    rejected = await desk.order(order.id)
    assert rejected.status is OrderStatus.REJECTED
    assert rejected.status_reason == "INSUFFICIENT_CASH"
    assert await desk.trades_of(order.id) == []


async def test_a_fill_racing_a_cancel_rolls_back_its_trade(desk: Desk) -> None:
    order = await desk.place(LIMIT, BUY, "10", limit_price="100")
    cancelled = await desk.orders.cancel(USER, order.id)
    assert cancelled.status is OrderStatus.CANCELLED
    # A matcher that still holds the order (it read it before the cancel) tries to fill it:
    # the trade is appended, the FILLED mark finds the order cancelled, and both roll back.
    quote = Quote(SYMBOL, Decimal("99"), Decimal(0), Decimal(0), desk.clock(), "mock")
    assert await desk.orders.fill(order, quote) is None
    assert (await desk.order(order.id)).status is OrderStatus.CANCELLED
    assert await desk.trades_of(order.id) == []
    async with desk.db.reading() as session:
        assert await TradeRepository(session).of(desk.portfolio_id) != []  # the deposit only
        assert all(
            t.trade.side is Side.DEPOSIT
            for t in await TradeRepository(session).of(desk.portfolio_id)
        )


async def test_only_an_open_order_is_cancelled(desk: Desk) -> None:
    order = await desk.place(LIMIT, BUY, "1", limit_price="100")
    await desk.step("99")
    with pytest.raises(FailedPrecondition) as refused:
        await desk.orders.cancel(USER, order.id)
    assert refused.value.reason == "ORDER_NOT_OPEN"
    assert "filled" in refused.value.message
    assert (await desk.order(order.id)).status is OrderStatus.FILLED


async def test_two_matchers_racing_fill_each_order_once(desk: Desk) -> None:
    """Two replicas that both believe they lead (a lease changing hands) step the same tick."""
    placed = [await desk.place(LIMIT, BUY, "1", limit_price="100") for _ in range(5)]
    other = OrderMatcher(desk.orders, MockMarket(seed=7, interval=3600), desk.hub)
    await desk.matcher.load()
    await other.load()
    await asyncio.gather(desk.step("99"), desk.step("99", other))
    for order in placed:
        filled = await desk.order(order.id)
        assert filled.status is OrderStatus.FILLED
        (trade,) = await desk.trades_of(order.id)
        assert trade.trade.id == filled.trade_id
    assert desk.matcher.fills + other.fills == len(placed)


async def test_day_orders_expire_at_the_end_of_their_utc_day(desk: Desk) -> None:
    day = await desk.place(LIMIT, BUY, "1", limit_price="100")
    gtc = await desk.place(LIMIT, BUY, "1", limit_price="100", time_in_force=TimeInForce.GTC)
    assert day.time_in_force is TimeInForce.DAY
    assert day.expires_at == end_of_day(day.created_at)
    assert day.expires_at is not None and day.expires_at.tzinfo is not None
    await desk.matcher.load()
    assert await desk.orders.expire_due() == []
    # A second after midnight UTC.
    desk.clock.ahead = day.expires_at - utc_now() + timedelta(seconds=1)
    expired = await desk.orders.expire_due()
    assert [o.id for o in expired] == [day.id]
    found = await desk.order(day.id)
    assert found.status is OrderStatus.EXPIRED
    assert found.status_reason == "DAY_ENDED"
    assert (await desk.order(gtc.id)).status is OrderStatus.OPEN
    # The expired one does not fill; the GTC one does.
    await desk.step("99")
    assert await desk.trades_of(day.id) == []
    assert (await desk.order(gtc.id)).status is OrderStatus.FILLED


async def ticked_after_its_day(desk: Desk, day: Order, price: str) -> Order:
    """The DAY order `day`, once the leader's index held it (as on any step of its day) and a
    tick at `price` came a second after its midnight UTC, the sweep not run yet."""
    assert day.expires_at is not None
    await desk.matcher.load()
    desk.clock.ahead = day.expires_at - utc_now() + timedelta(seconds=1)
    await desk.step(price)
    return await desk.order(day.id)


async def test_a_day_order_ticked_after_its_day_expires_before_the_sweep_comes(
    desk: Desk,
) -> None:
    day = await desk.place(LIMIT, BUY, "1", limit_price="100")
    gtc = await desk.place(LIMIT, BUY, "1", limit_price="100", time_in_force=TimeInForce.GTC)
    found = await ticked_after_its_day(desk, day, "99")  # the first tick crosses the limit
    assert (found.status, found.status_reason) == (OrderStatus.EXPIRED, "DAY_ENDED")
    assert await desk.trades_of(day.id) == []
    assert (await desk.order(gtc.id)).status is OrderStatus.FILLED


async def test_a_new_leader_after_a_night_down_does_not_fill_yesterdays_day_orders(
    desk: Desk,
) -> None:
    day = await desk.place(LIMIT, BUY, "1", limit_price="100")
    assert day.expires_at is not None
    # Nine hours into the next day: the first step loads the open orders, then matches them.
    desk.clock.ahead = day.expires_at - utc_now() + timedelta(hours=9)
    await desk.step("99")
    assert (await desk.order(day.id)).status is OrderStatus.EXPIRED
    assert await desk.trades_of(day.id) == []


async def test_an_order_placed_after_the_index_loaded_reaches_it_through_its_event(
    desk: Desk,
) -> None:
    desk.matcher.start()
    try:
        await desk.step("150")  # loads the (empty) index
        order = await desk.place(LIMIT, BUY, "1", limit_price="100")
        for _ in range(100):
            if desk.matcher.index is not None and order.id in desk.matcher.index:
                break
            await asyncio.sleep(0.02)
        assert desk.matcher.index is not None and order.id in desk.matcher.index
        await desk.orders.cancel(USER, order.id)
        for _ in range(100):
            if order.id not in desk.matcher.index:
                break
            await asyncio.sleep(0.02)
        assert order.id not in desk.matcher.index
    finally:
        await desk.matcher.stop()


def test_end_of_day_is_the_next_utc_midnight() -> None:
    at = datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC)
    assert end_of_day(at) == datetime(2026, 12, 7, tzinfo=UTC)


class HandMarket:
    """A market stepped by hand through a real TickFanout, read as the server's matcher reads
    the shared market (OrderMatcher.start: `ticks(every=True)`)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.fanout = TickFanout()
        self._clock = clock

    def ticks(self, *, every: bool = False) -> TickStream:
        return self.fanout.subscribe(every=every)

    def step(self, price: str) -> None:
        quote = Quote(SYMBOL, Decimal(price), Decimal(0), Decimal(0), self._clock(), "mock")
        self.fanout.publish([quote])


@contextlib.asynccontextmanager
async def matching_by_hand(desk: Desk) -> AsyncIterator[tuple[HandMarket, OrderMatcher]]:
    """A matcher reading every step of a market stepped by hand, its index loaded at a first
    step to 100; stopped after."""
    market = HandMarket(desk.clock)
    matcher = OrderMatcher(desk.orders, market, desk.hub)
    matcher.start()
    try:
        market.step("100")
        await until(lambda: matcher.index is not None, "the index loaded")
        yield market, matcher
    finally:
        await matcher.stop()


async def test_a_stop_crossed_by_one_step_fills_even_when_the_next_step_comes_first(
    desk: Desk,
) -> None:
    # Every open order is checked against every step: two steps published while the matcher
    # was busy (a burst of fills, a slow database) are both seen, the first crossing fills.
    await desk.buy("10", "100")
    async with matching_by_hand(desk) as (market, matcher):
        stop = await desk.place(STOP, SELL, "10", stop_price="95")
        await until(lambda: matcher.index is not None and stop.id in matcher.index, "indexed")
        market.step("94")  # crosses the stop: it fills here, at 94
        market.step("96")  # back above, published before the matcher read the step before

        async def ended() -> bool:
            return (await desk.order(stop.id)).status != OrderStatus.OPEN

        await until_async(ended, "the stop filled")
        filled = await desk.order(stop.id)
        assert (filled.status, filled.filled_price) == (OrderStatus.FILLED, Decimal("94"))


async def test_a_day_stop_limit_reached_after_its_day_expires_rather_than_waiting(
    desk: Desk,
) -> None:
    # A tick after midnight expires a DAY order, never fills it or leaves it open for the
    # sweep: a stop-limit whose stop it reaches too, as a limit or a stop.
    day = await desk.place(STOP_LIMIT, BUY, "1", stop_price="105", limit_price="106")
    # 105.5 reaches the stop and is within the limit.
    found = await ticked_after_its_day(desk, day, "105.5")
    assert (found.status, found.status_reason) == (OrderStatus.EXPIRED, "DAY_ENDED")


async def test_an_order_placed_while_the_matcher_is_behind_never_fills_at_an_earlier_price(
    desk: Desk,
) -> None:
    # The every-step stream hands the matcher quotes published before an order was
    # placed; an order placed at 97 must not fill at 93, a price gone before it existed.
    if desk.db.dialect != "postgresql":
        pytest.skip("a row lock held by the test stands for the slow database")
    source = MockMarket(seed=7, interval=3600)
    other = await Portfolios(desk.db, Prices(desk.db, source), desk.hub).create(
        USER, PortfolioDraft(name="Other", kind=PortfolioKind.PAPER, initial_cash="10000")
    )
    try:
        async with matching_by_hand(desk) as (market, matcher):
            busy = await desk.orders.place(
                USER,
                OrderDraft(
                    portfolio_id=other.portfolio.id,
                    symbol=SYMBOL,
                    side=BUY,
                    type=LIMIT,
                    quantity="1",
                    limit_price="95",
                ),
            )
            await until(lambda: matcher.index is not None and busy.id in matcher.index, "indexed")
            async with desk.db.transaction() as session:
                # A slow database: the fill of `busy` waits on its portfolio's lock.
                await PortfolioRepository(session).lock(other.portfolio.id, USER)
                market.step("94")
                await until(
                    lambda: matcher.index is not None and busy.id not in matcher.index, "busy"
                )
                market.step("93")
                market.step("97")  # the market is at 97 when the next order is placed
                late = await desk.place(LIMIT, BUY, "1", limit_price="95")  # rests at 97
                sentinel = await desk.place(LIMIT, SELL, "1", limit_price="96")  # no shares
                await until(
                    lambda: matcher.index is not None and sentinel.id in matcher.index, "indexed"
                )
            market.step("97.5")

            async def caught_up() -> bool:
                return (await desk.order(sentinel.id)).status != OrderStatus.OPEN

            await until_async(caught_up, "the matcher caught up")
            found = await desk.order(late.id)
            assert (found.status, found.filled_price) == (OrderStatus.OPEN, None)
    finally:
        await source.close()


async def test_a_day_order_crossed_before_its_midnight_fills_though_the_matcher_reads_it_after(
    desk: Desk,
) -> None:
    # The matcher reads every step even when behind; a crossing at 23:59:59 read at
    # 00:00:01 happened within the order's day and must fill at its price, not expire it.
    day = await desk.place(LIMIT, BUY, "1", limit_price="100")
    assert day.expires_at is not None
    await desk.matcher.load()
    crossing = Quote(
        SYMBOL, Decimal("99"), Decimal(0), Decimal(0), day.expires_at - timedelta(seconds=1), "mock"
    )
    desk.clock.ahead = day.expires_at - utc_now() + timedelta(seconds=1)  # read after midnight
    await desk.matcher.on_step([crossing])
    found = await desk.order(day.id)
    assert (found.status, found.filled_price) == (OrderStatus.FILLED, Decimal("99"))


# --- splits ------------------------------------------------------------------------------------


async def test_a_split_adjusts_an_open_order_placed_before_it_and_a_tick_fills_it_so(
    desk: Desk,
) -> None:
    # A 4-for-1 makes a buy of 10 at 400 a buy of 40 at 100 (FINRA 5330): worth the same.
    order = await placed_days_ago(desk, 2, LIMIT, BUY, "10", limit_price="400")
    await record_split(desk, 4, 1)
    adjusted = await desk.order(order.id)
    assert terms(adjusted) == ("40", "100", None, "SPLIT_ADJUSTED")
    assert adjusted.status is OrderStatus.OPEN
    assert adjusted.placed is not None and adjusted.placed.quantity == Decimal(10)

    await desk.step("101")  # under the old limit, over the new one: no fill
    assert (await desk.order(order.id)).status is OrderStatus.OPEN
    await desk.step("99.5")
    filled = await desk.order(order.id)
    assert filled.status is OrderStatus.FILLED
    [trade] = await desk.trades_of(order.id)
    assert (trade.trade.quantity, trade.trade.price) == (Decimal(40), Decimal("99.5"))


async def test_taking_a_split_back_restores_the_orders_terms_exactly(desk: Desk) -> None:
    # A 1-for-3 leaves 3.33333333 of 10 (rounded down) and a stop of 90 for 30; taken back, the
    # order is 10 at 30 again, not 9.99999999.
    await desk.buy("10", "30")
    order = await placed_days_ago(desk, 3, STOP, SELL, "10", stop_price="30")
    reverse = await record_split(desk, 1, 3, days_ago=2)
    assert terms(await desk.order(order.id)) == ("3.33333333", None, "90", "SPLIT_ADJUSTED")
    forward = await record_split(desk, 3, 2, days_ago=1)
    # Shares as the holding: 3.33333333 x 3/2 down to 4.99999999; prices exact: 60.
    assert terms(await desk.order(order.id)) == ("4.99999999", None, "60", "SPLIT_ADJUSTED")

    await desk.splits.delete(USER, desk.portfolio_id, reverse)
    assert terms(await desk.order(order.id)) == ("15", None, "20", "SPLIT_ADJUSTED")
    await desk.splits.delete(USER, desk.portfolio_id, forward)
    restored = await desk.order(order.id)
    assert terms(restored) == ("10", None, "30", "")
    assert restored.placed is None


async def test_a_split_leaves_an_order_placed_on_its_day_alone(
    desk: Desk,
) -> None:
    today = await desk.place(LIMIT, BUY, "10", limit_price="100", time_in_force=TimeInForce.GTC)
    await record_split(desk, 4, 1, days_ago=0)  # from today's midnight: the order came after
    assert terms(await desk.order(today.id)) == ("10", "100", None, "")


async def test_an_order_a_split_leaves_no_share_of_is_cancelled_with_the_reason(
    desk: Desk,
) -> None:
    order = await placed_days_ago(desk, 2, LIMIT, BUY, "0.00000002", limit_price="10")
    await record_split(desk, 1, 3)
    ended = await desk.order(order.id)
    assert (ended.status, ended.status_reason) == (OrderStatus.CANCELLED, "CANCELLED_BY_SPLIT")
    assert (ended.quantity, ended.limit_price) == (Decimal("0.00000002"), Decimal(10))


async def test_a_matcher_still_holding_the_terms_before_a_split_does_not_fill_on_them(
    desk: Desk,
) -> None:
    # The leader loaded the order before the split (its event not heard yet): 399 crosses the
    # old limit of 400 but not the new one of 100, and nothing may fill at the old terms.
    order = await placed_days_ago(desk, 2, LIMIT, BUY, "10", limit_price="400")
    await desk.step("500")  # loads the index
    await record_split(desk, 4, 1)
    await desk.step("399")
    still = await desk.order(order.id)
    assert (still.status, terms(still)) == (OrderStatus.OPEN, ("40", "100", None, "SPLIT_ADJUSTED"))
    assert await desk.trades_of(order.id) == []
