"""The simulated market: a seeded walk that stays positive and in cents, a deterministic history,
search, unknown symbols, ticks fanned out without waiting on anyone; and the config and factory
that choose it."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.portfolio.alpha_vantage import AlphaVantage
from services.portfolio.config import MarketConfig, load_market_config
from services.portfolio.market_data import Quote
from services.portfolio.mock_market import LISTINGS, MockMarket, PriceWalk
from services.portfolio.server import create_market_data
from services.runtime.config import ConfigError
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.local_cache import InProcessCache

OPENED = datetime(2024, 3, 14, 14, 30, tzinfo=UTC)  # a Thursday
CENT = Decimal("0.01")


def market(seed: int = 42, **options: object) -> MockMarket:
    return MockMarket(seed=seed, clock=lambda: OPENED, **options)  # type: ignore[arg-type]


def prices_after(m: MockMarket, steps: int) -> list[dict[str, Decimal]]:
    path = []
    for _ in range(steps):
        m.step()
        path.append({s.symbol: m._quotes[s.symbol].price for s in LISTINGS})
    return path


# --- the walk ----------------------------------------------------------------------------------


def test_the_same_seed_walks_the_same_prices_and_another_seed_does_not() -> None:
    first, second, other = market(7), market(7), market(8)
    assert prices_after(first, 200) == prices_after(second, 200)
    assert prices_after(market(7), 200) != prices_after(other, 200)


async def test_the_walk_follows_the_step_count_not_the_clock() -> None:
    ticks = iter(OPENED + timedelta(seconds=n * 7.3) for n in range(1000))
    timed = MockMarket(seed=3, clock=lambda: next(ticks))
    steady = market(3)
    for _ in range(50):
        timed.step()
        steady.step()
    for listing in LISTINGS:
        assert (await timed.quote(listing.symbol)).price == (
            await steady.quote(listing.symbol)
        ).price


def test_a_walk_stays_positive_and_in_cents_over_100k_steps() -> None:
    # Three times Tesla's volatility, from a low price: the hardest case for positivity.
    walk = PriceWalk(Decimal("1.50"), 1.65, random.Random("positivity"))
    lowest = Decimal("Infinity")
    for _ in range(100_000):
        price = walk.step()
        assert price == price.quantize(CENT)
        lowest = min(lowest, price)
    assert lowest >= CENT


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    start=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000"), places=2),
    volatility=st.floats(min_value=0.01, max_value=3.0),
)
def test_any_walk_stays_at_or_above_one_cent_and_quantized(
    seed: int, start: Decimal, volatility: float
) -> None:
    walk = PriceWalk(start, volatility, random.Random(seed))
    for _ in range(2_000):
        price = walk.step()
        assert price >= CENT
        assert price.as_tuple().exponent == -2


async def test_quotes_are_in_cents_and_their_change_is_measured_from_the_open() -> None:
    m = market()
    opening = {s.symbol: (await m.quote(s.symbol)).price for s in LISTINGS}
    assert opening["AAPL"] == Decimal("189.50")
    for _ in range(500):
        m.step()
    for listing in LISTINGS:
        quote = await m.quote(listing.symbol)
        assert quote.price.as_tuple().exponent == -2
        assert quote.price > 0
        assert quote.change == quote.price - opening[listing.symbol]
        expected = (quote.change * 100 / opening[listing.symbol]).quantize(Decimal("0.0001"))
        assert quote.change_percent == expected
        assert (quote.source, quote.stale, quote.time) == ("mock", False, OPENED)


def test_a_step_returns_only_the_quotes_whose_price_changed() -> None:
    m = market()
    before = dict(m._quotes)
    changed = m.step()
    assert changed, "some of forty prices move in a simulated minute"
    assert all(q.price != before[q.symbol].price for q in changed)
    unchanged = {s.symbol for s in LISTINGS} - {q.symbol for q in changed}
    assert all(m._quotes[s] == before[s] for s in unchanged)


# --- history -----------------------------------------------------------------------------------


async def test_history_is_deterministic_from_the_seed_and_ends_at_the_open() -> None:
    start, end = date(2023, 1, 1), date(2024, 3, 14)
    first = await market(5).daily_history("AAPL", start, end)
    again = await market(5).daily_history("aapl", start, end)
    other = await market(6).daily_history("AAPL", start, end)
    assert first == again
    assert first != other
    assert all(day.weekday() < 5 for day in first), "no closes on weekends"
    assert first[date(2024, 3, 13)] == Decimal("189.50"), "the open is the previous close"
    assert first[date(2024, 3, 14)] == Decimal("189.50"), "today is the current price"
    assert all(close >= CENT and close.as_tuple().exponent == -2 for close in first.values())
    assert min(first) == date(2023, 1, 2)


async def test_history_reaches_five_years_back_and_filters_to_the_range() -> None:
    m = market()
    everything = await m.daily_history("SPY", date(2000, 1, 1), date(2030, 1, 1))
    assert min(everything) <= date(2019, 3, 20)
    week = await m.daily_history("SPY", date(2024, 3, 4), date(2024, 3, 10))
    assert sorted(week) == [date(2024, 3, day) for day in (4, 5, 6, 7, 8)]
    assert all(week[day] == everything[day] for day in week)
    with pytest.raises(InvalidArgument, match="must not be after"):
        await m.daily_history("SPY", date(2024, 3, 10), date(2024, 3, 4))


async def test_todays_close_in_the_history_follows_the_walk() -> None:
    m = market()
    for _ in range(30):
        m.step()
    today = await m.daily_history("NVDA", OPENED.date(), OPENED.date())
    assert today == {OPENED.date(): (await m.quote("NVDA")).price}


async def test_a_day_the_market_lived_through_keeps_its_last_price_as_its_close() -> None:
    # Running past midnight: the opening day's close is its last price, not the next day's
    # live one (which had been stored as the opening day's close for good).
    now = [OPENED]
    m = MockMarket(seed=42, clock=lambda: now[0])
    for _ in range(20):
        m.step()
    thursday_close = (await m.quote("NVDA")).price
    now[0] = OPENED + timedelta(hours=12)  # 02:30 on Friday
    for _ in range(20):
        m.step()
    friday = (await m.quote("NVDA")).price
    assert friday != thursday_close, "twenty ticks move a price"
    days = await m.daily_history("NVDA", OPENED.date(), OPENED.date() + timedelta(days=1))
    assert days == {OPENED.date(): thursday_close, OPENED.date() + timedelta(days=1): friday}


# --- search and lookups ------------------------------------------------------------------------


async def test_search_finds_by_symbol_prefix_and_name_substring_case_insensitively() -> None:
    m = market()
    # A symbol prefix first, then names containing it ("Cisco SysteMS", "Meta PlatforMS").
    assert [s.symbol for s in await m.search("ms", 5)] == ["MSFT", "CSCO", "META"]
    assert [s.symbol for s in await m.search("COCA", 5)] == ["KO"]
    assert "MSFT" in [s.symbol for s in await m.search("crosoft", 5)]
    brk = await m.search("brk", 5)
    assert [s.symbol for s in brk] == ["BRK.B"]
    assert brk[0].name == "Berkshire Hathaway Inc. Class B"
    assert (brk[0].exchange, brk[0].currency) == ("NYSE", "USD")


async def test_search_ranks_exact_symbol_then_symbol_prefix_then_name_and_honours_limit() -> None:
    m = market()
    # T exactly, TSLA by prefix, then names with a word starting with t ("The Boeing Company"),
    # shorter symbols first.
    assert [s.symbol for s in await m.search("t", 5)] == ["T", "TSLA", "BA", "HD", "KO"]
    apple = [s.symbol for s in await m.search("apple", 10)]
    assert apple == ["AAPL"]
    assert await m.search("no such company", 10) == []
    everything = await m.search("", 100)
    assert [s.symbol for s in everything] == sorted(s.symbol for s in LISTINGS)
    with pytest.raises(InvalidArgument, match="limit"):
        await m.search("a", 0)


async def test_unknown_symbols_are_not_found_and_named() -> None:
    m = market()
    with pytest.raises(NotFound, match="ZZZZ"):
        await m.quote("zzzz")
    with pytest.raises(NotFound, match="ZZZZ"):
        await m.stock("ZZZZ")
    with pytest.raises(NotFound, match="ZZZZ"):
        await m.daily_history("ZZZZ", date(2024, 1, 1), date(2024, 1, 31))
    with pytest.raises(InvalidArgument, match="symbol"):
        await m.quote("not a symbol!")


async def test_stock_gives_the_listing() -> None:
    info = await market().stock(" spy ")
    assert (info.symbol, info.name, info.exchange, info.currency) == (
        "SPY",
        "SPDR S&P 500 ETF Trust",
        "NYSE Arca",
        "USD",
    )


# --- ticks -------------------------------------------------------------------------------------


async def test_ticks_reach_two_subscribers() -> None:
    m = market()
    first, second = m.ticks(), m.ticks()
    changed = m.step()
    for stream in (first, second):
        received = [await asyncio.wait_for(anext(stream), 1) for _ in changed]
        assert received == changed
    await m.close()
    assert [q async for q in first] == []
    assert [q async for q in second] == []


async def test_a_slow_subscriber_keeps_the_latest_prices_and_does_not_block_the_walk() -> None:
    m = market()
    slow, quick = m.ticks(), m.ticks()
    seen: list[Quote] = []
    for _ in range(2_000):
        seen.extend(m.step())
        while len(seen) > 0:
            assert await anext(quick) == seen.pop(0)
    assert m.steps == 2_000
    pending = []
    await m.close()
    async for quote in slow:
        pending.append(quote)
    assert len(pending) == len({q.symbol for q in pending}) <= len(LISTINGS)
    assert {q.symbol: q for q in pending} == {
        q.symbol: q for q in [await m.quote(q.symbol) for q in pending]
    }, "the slow subscriber gets each symbol's latest quote"
    assert slow.dropped > 0


async def test_started_market_ticks_on_its_interval_and_close_stops_it() -> None:
    m = MockMarket(seed=1, interval=0.01)
    stream = m.ticks()
    await m.start()
    first = await asyncio.wait_for(anext(stream), 2)
    assert first.source == "mock"
    assert first.time.tzinfo is not None
    await m.close()
    steps = m.steps
    await asyncio.sleep(0.05)
    assert m.steps == steps, "no step after close"
    async for _ in stream:
        pass  # ends instead of waiting forever


async def test_a_dropped_subscriber_stops_receiving() -> None:
    m = market()
    stream = m.ticks()
    await stream.aclose()
    m.step()
    assert [q async for q in stream] == []
    assert m._fanout.subscribers == 0


# --- config and factory ------------------------------------------------------------------------


def test_market_config_defaults() -> None:
    config = load_market_config({})
    assert config == MarketConfig(
        use_mock_prices=True,
        mock_update_interval_ms=1000,
        mock_seed=42,
        alpha_vantage_api_key=None,
        alpha_vantage_url="https://www.alphavantage.co/query",
        alpha_vantage_per_minute=5,
        alpha_vantage_per_day=25,
        quote_cache_ttl=60.0,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USE_MOCK_PRICES", "perhaps"),
        ("MOCK_UPDATE_INTERVAL", "fast"),
        ("MOCK_UPDATE_INTERVAL", "5"),
        ("MOCK_SEED", "-1"),
        ("ALPHA_VANTAGE_URL", "ftp://example.com/query"),
        ("ALPHA_VANTAGE_URL", "https://example.com/query?apikey=SECRET"),
        ("ALPHA_VANTAGE_URL", "https://me:SECRET@example.com/query"),
        ("ALPHA_VANTAGE_PER_MINUTE", "five"),
        ("ALPHA_VANTAGE_PER_DAY", "-3"),
        ("QUOTE_CACHE_TTL", "0"),
    ],
)
def test_a_bad_market_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        load_market_config({name: value})
    assert "SECRET" not in str(caught.value)


async def test_the_factory_picks_the_mock_by_default_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.portfolio.server")
    source = create_market_data(
        load_market_config({"MOCK_SEED": "9", "MOCK_UPDATE_INTERVAL": "250"}), InProcessCache()
    )
    try:
        assert isinstance(source, MockMarket)
        assert source._interval == 0.25
        record = next(r for r in caplog.records if r.getMessage() == "market data simulated")
        assert (record.provider, record.seed, record.intervalMs) == ("mock", 9, 250)  # type: ignore[attr-defined]
    finally:
        await source.close()


async def test_a_key_alone_selects_alpha_vantage() -> None:
    source = create_market_data(
        load_market_config({"ALPHA_VANTAGE_API_KEY": "SOME-KEY"}), InProcessCache()
    )
    try:
        assert isinstance(source, AlphaVantage)
    finally:
        await source.close()


async def test_use_mock_prices_true_keeps_the_mock_beside_a_key_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = "KEY-THAT-MUST-NOT-BE-LOGGED"
    source = create_market_data(
        load_market_config({"ALPHA_VANTAGE_API_KEY": key, "USE_MOCK_PRICES": "true"}),
        InProcessCache(),
    )
    try:
        assert isinstance(source, MockMarket)
        record = next(r for r in caplog.records if r.getMessage() == "market data simulated")
        assert "unset USE_MOCK_PRICES" in record.reason  # type: ignore[attr-defined]
        assert key not in caplog.text
        assert all(key not in str(r.__dict__) for r in caplog.records)
    finally:
        await source.close()


async def test_use_mock_prices_false_without_a_key_falls_back_to_the_mock_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = create_market_data(load_market_config({"USE_MOCK_PRICES": "false"}), InProcessCache())
    try:
        assert isinstance(source, MockMarket)
        warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
        assert "ALPHA_VANTAGE_API_KEY is not set" in warning.reason  # type: ignore[attr-defined]
    finally:
        await source.close()
