"""The Alpha Vantage client against a local fake that speaks the provider's wire format, on both
cache backends: parsing, caching, the per-minute and per-day budgets, stale quotes when the
budget is spent, every error shape, and the API key kept out of errors, logs and cache keys;
exchange rates (CURRENCY_EXCHANGE_RATE, FX_DAILY) parsed, cached, inside the same budget (a stale
rate served when it is spent), unknown pairs and codes NotFound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.portfolio.alpha_vantage import COOLDOWN_KEY, AlphaVantage, poll_gap
from services.portfolio.config import load_market_config
from services.portfolio.server import create_market_data
from services.runtime.cache import Cache
from services.runtime.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage, Mode
from tests.integration.alpha_vantage_harness import alpha_vantage_config

D = Decimal
NOW = datetime(2024, 1, 8, 21, 5, tzinfo=UTC)
# Expiry in both caches is real time: tests that need an expired quote wait this long.
TTL = "1"
PAST_TTL = 1.2

Client = Callable[..., contextlib.AbstractAsyncContextManager[AlphaVantage]]


@pytest.fixture
def client(fake: FakeAlphaVantage, cache: Cache) -> Client:
    """An AlphaVantage client aimed at the fake; keyword arguments are environment variables."""

    @contextlib.asynccontextmanager
    async def open_client(
        *, answer_within: float = 5.0, on: Cache | None = None, key: str = API_KEY, **environ: str
    ) -> AsyncIterator[AlphaVantage]:
        config = alpha_vantage_config(fake.url, key=key, **environ)
        source = AlphaVantage(config, on or cache, timeout=answer_within, clock=lambda: NOW)
        try:
            yield source
        finally:
            await source.close()

    return open_client


class RecordingCache:
    """A real cache that also remembers every key it was asked about and every value written."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner
        self.keys: list[str] = []
        self.values: list[bytes] = []

    async def get(self, key: str) -> bytes | None:
        self.keys.append(key)
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.keys.append(key)
        self.values.append(value)
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self.keys.append(key)
        await self.inner.delete(key)

    async def incr(self, key: str, ttl: float) -> tuple[int, float]:
        self.keys.append(key)
        return await self.inner.incr(key, ttl)

    async def counter(self, key: str) -> int:
        self.keys.append(key)
        return await self.inner.counter(key)

    async def publish(self, channel: str, message: bytes) -> None:
        await self.inner.publish(channel, message)

    def subscribe(self, channel: str) -> AsyncIterator[bytes]:
        return self.inner.subscribe(channel)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


# --- answers -----------------------------------------------------------------------------------


async def test_a_quote_is_parsed_exactly_from_global_quote(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        quote = await av.quote(" aapl ")
    # The fake's AAPL: price 185.56, previous close 181.18: change 4.38, 4.38 / 181.18 = 2.4175%.
    assert quote.symbol == "AAPL"
    assert (str(quote.price), str(quote.change), str(quote.change_percent)) == (
        "185.5600",
        "4.3800",
        "2.4175",
    )
    assert isinstance(quote.price, Decimal)
    assert (quote.time, quote.source, quote.stale) == (NOW, "alphavantage", False)
    [request] = fake.requests
    assert request.params == {"function": "GLOBAL_QUOTE", "symbol": "AAPL", "apikey": API_KEY}


async def test_a_negative_change_keeps_its_sign(client: Client, fake: FakeAlphaVantage) -> None:
    fake.set_price("MSFT", "360.0000")  # previous close 367.75
    async with client() as av:
        quote = await av.quote("MSFT")
    assert (quote.change, quote.change_percent) == (D("-7.7500"), D("-2.1074"))


async def test_a_second_quote_within_the_ttl_makes_no_request(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        first = await av.quote("IBM")
        fake.set_price("IBM", "170.0000")
        second = await av.quote("ibm")
    assert second == first
    assert len(fake.calls("GLOBAL_QUOTE")) == 1


async def test_replicas_share_cached_quotes_through_the_cache(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as one, client() as other:
        assert (await one.quote("IBM")).price == D("161.14")
        assert (await other.quote("IBM")).price == D("161.14")
    assert len(fake.calls()) == 1


async def test_concurrent_quotes_of_one_symbol_make_one_request(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        quotes = await asyncio.gather(*(av.quote("TSLA") for _ in range(10)))
    assert {q.price for q in quotes} == {D("240.45")}
    assert len(fake.calls()) == 1


async def test_an_unknown_symbol_is_not_found_and_not_asked_again_soon(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        for _ in range(3):
            with pytest.raises(NotFound, match="unknown symbol NOPE"):
                await av.quote("nope")
    assert len(fake.calls("GLOBAL_QUOTE")) == 1, "an empty Global Quote is remembered"


async def test_a_malformed_symbol_is_refused_before_any_request(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        with pytest.raises(InvalidArgument, match="symbol"):
            await av.quote("AAPL&function=OVERVIEW")
    assert fake.requests == []


async def test_search_is_parsed_and_ranked_by_match_score(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        found = await av.search("apple", 10)
        again = await av.search("  APPLE ", 1)
    # The fake answers APLE (score 5/26 = 0.1923) before AAPL (5/9 = 0.5556).
    assert [(s.symbol, s.name, s.exchange, s.currency) for s in found] == [
        ("AAPL", "Apple Inc", "United States", "USD"),
        ("APLE", "Apple Hospitality REIT Inc", "United States", "USD"),
    ]
    assert [s.symbol for s in again] == ["AAPL"]
    assert len(fake.calls("SYMBOL_SEARCH")) == 1, "searches are cached, case-insensitively"
    assert fake.requests[0].params["keywords"] == "apple"


async def test_search_with_nothing_to_look_for_asks_nothing(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        assert await av.search("   ", 10) == []
        assert await av.search("zzzzqq", 10) == []
        with pytest.raises(InvalidArgument, match="limit"):
            await av.search("ibm", 0)
    assert len(fake.requests) == 1


async def test_stock_details_come_from_symbol_search(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        tesco = await av.stock("tsco.lon")
        with pytest.raises(NotFound, match="unknown symbol TSC"):
            await av.stock("TSC")
    assert (tesco.symbol, tesco.name, tesco.exchange, tesco.currency) == (
        "TSCO.LON",
        "Tesco PLC",
        "United Kingdom",
        "GBX",
    )


async def test_daily_history_is_parsed_into_closes_within_the_range(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        closes = await av.daily_history("AAPL", date(2024, 1, 3), date(2024, 1, 5))
        everything = await av.daily_history("AAPL", date(2000, 1, 1), date(2030, 1, 1))
    assert closes == {
        date(2024, 1, 3): D("184.25"),
        date(2024, 1, 4): D("181.91"),
        date(2024, 1, 5): D("181.18"),
    }
    assert len(everything) == 5
    assert everything[date(2024, 1, 2)] == D("185.64")
    [request] = fake.calls()
    assert request.params["outputsize"] == "compact"


async def test_daily_history_of_an_unknown_symbol_is_not_found(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        with pytest.raises(NotFound, match="NOPE"):
            await av.daily_history("NOPE", date(2024, 1, 1), date(2024, 1, 31))
        with pytest.raises(InvalidArgument, match="must not be after"):
            await av.daily_history("AAPL", date(2024, 1, 31), date(2024, 1, 1))
    assert len(fake.calls("TIME_SERIES_DAILY")) == 1


# --- the provider's limit notices --------------------------------------------------------------


async def test_a_note_serves_the_last_cached_quote_marked_stale(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client(QUOTE_CACHE_TTL=TTL) as av:
        fresh = await av.quote("AAPL")
        await asyncio.sleep(PAST_TTL)
        fake.mode = "note"
        stale = await av.quote("AAPL")
        assert stale.stale is True
        assert (stale.price, stale.change, stale.time) == (fresh.price, fresh.change, fresh.time)
        assert len(fake.calls()) == 2
        with pytest.raises(ResourceExhausted) as caught:
            await av.quote("MSFT")
    assert 0 < caught.value.retry_after <= 60
    assert len(fake.calls()) == 2, "after a Note the provider is left alone for a minute"


async def test_after_a_limit_notice_the_provider_is_left_alone_even_if_the_cache_forgets(
    client: Client, fake: FakeAlphaVantage, cache: Cache
) -> None:
    fake.mode = "note"
    async with client() as av:
        with pytest.raises(ResourceExhausted):
            await av.quote("AAPL")
        await cache.delete(COOLDOWN_KEY)  # as when Redis is lost
        fake.mode = "ok"
        with pytest.raises(ResourceExhausted) as caught:
            await av.quote("AAPL")
    assert 0 < caught.value.retry_after <= 60
    assert len(fake.calls()) == 1


async def test_information_with_nothing_cached_is_resource_exhausted_with_retry_after(
    client: Client, fake: FakeAlphaVantage
) -> None:
    fake.mode = "information"
    async with client() as av:
        with pytest.raises(ResourceExhausted, match="MSFT") as caught:
            await av.quote("MSFT")
    assert caught.value.retry_after == 60
    assert caught.value.reason == "MARKET_DATA_LIMIT"


async def test_a_limit_notice_on_search_or_history_with_nothing_cached_is_resource_exhausted(
    client: Client, fake: FakeAlphaVantage
) -> None:
    fake.mode = "note"
    async with client() as av:
        with pytest.raises(ResourceExhausted):
            await av.search("ibm", 5)
        with pytest.raises(ResourceExhausted):
            await av.daily_history("AAPL", date(2024, 1, 1), date(2024, 1, 31))


# --- our own budget ----------------------------------------------------------------------------


async def test_per_minute_budget_stops_the_third_distinct_quote_before_any_request(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client(ALPHA_VANTAGE_PER_MINUTE="2", QUOTE_CACHE_TTL=TTL) as av:
        await av.quote("AAPL")
        await av.quote("MSFT")
        with pytest.raises(ResourceExhausted) as caught:
            await av.quote("IBM")
        assert len(fake.calls()) == 2
        assert 0 < caught.value.retry_after <= 60

        await asyncio.sleep(PAST_TTL)
        stale = await av.quote("AAPL")
    assert (stale.stale, stale.price) == (True, D("185.56"))
    assert len(fake.calls()) == 2


async def test_per_day_budget_stops_calls_for_the_rest_of_the_day(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client(ALPHA_VANTAGE_PER_MINUTE="0", ALPHA_VANTAGE_PER_DAY="2") as av:
        await av.quote("AAPL")
        await av.search("micro", 5)
        with pytest.raises(ResourceExhausted) as caught:
            await av.daily_history("AAPL", date(2024, 1, 1), date(2024, 1, 31))
    assert len(fake.calls()) == 2
    assert 3600 < caught.value.retry_after <= 86400


async def test_replicas_share_the_budget_through_the_cache(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with (
        client(ALPHA_VANTAGE_PER_MINUTE="2") as one,
        client(ALPHA_VANTAGE_PER_MINUTE="2") as other,
    ):
        await one.quote("AAPL")
        await other.quote("MSFT")
        with pytest.raises(ResourceExhausted):
            await one.quote("IBM")
    assert len(fake.calls()) == 2


def test_the_poller_spends_half_of_each_budget_spread_evenly() -> None:
    free = load_market_config({"ALPHA_VANTAGE_PER_MINUTE": "5", "ALPHA_VANTAGE_PER_DAY": "25"})
    assert poll_gap(free) == 86400 / 12.5  # 25 a day, half for polling: one call per 1.92 h
    premium = load_market_config({"ALPHA_VANTAGE_PER_MINUTE": "75", "ALPHA_VANTAGE_PER_DAY": "0"})
    assert poll_gap(premium) == 60 / 37.5
    unlimited = load_market_config({"ALPHA_VANTAGE_PER_MINUTE": "0", "ALPHA_VANTAGE_PER_DAY": "0"})
    assert poll_gap(unlimited) == 1.0


# --- failures ----------------------------------------------------------------------------------


async def test_http_500_is_unavailable(client: Client, fake: FakeAlphaVantage) -> None:
    fake.mode = "http_500"
    async with client() as av:
        with pytest.raises(Unavailable, match="HTTP 500"):
            await av.quote("AAPL")


async def test_a_provider_that_does_not_answer_in_time_is_unavailable(
    client: Client, fake: FakeAlphaVantage
) -> None:
    fake.mode = "slow"
    async with client(answer_within=0.2) as av:
        with pytest.raises(Unavailable, match="did not answer"):
            await av.quote("AAPL")


async def test_a_provider_that_cannot_be_reached_is_unavailable(cache: Cache) -> None:
    async with FakeAlphaVantage() as gone:
        url = gone.url
    config = alpha_vantage_config(url)
    source = AlphaVantage(config, cache, timeout=2)
    try:
        with pytest.raises(Unavailable, match="did not answer"):
            await source.quote("AAPL")
    finally:
        await source.close()


async def test_an_error_message_for_a_quote_is_not_found(
    client: Client, fake: FakeAlphaVantage
) -> None:
    fake.mode = "error_message"
    async with client() as av:
        with pytest.raises(NotFound, match="AAPL"):
            await av.quote("AAPL")
        with pytest.raises(InvalidArgument, match="q"):
            await av.search("apple", 5)


async def test_a_refused_key_is_unavailable_not_the_callers_fault(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client(key="NOT-THE-RIGHT-KEY") as av:
        with pytest.raises(Unavailable, match="refused our credentials"):
            await av.quote("AAPL")


# --- the key stays secret ----------------------------------------------------------------------


def _exception_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))


async def test_the_api_key_never_appears_in_errors_logs_cache_keys_or_values(
    client: Client, fake: FakeAlphaVantage, cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recording = RecordingCache(cache)
    errors: list[DomainError] = []
    answers: list[Any] = []

    async def attempt(call: Any) -> None:
        try:
            answers.append(await call)
        except DomainError as error:
            errors.append(error)

    budget = {"ALPHA_VANTAGE_PER_MINUTE": "12"}  # shared by every client on `recording`
    async with client(on=recording, answer_within=0.2, **budget) as av:
        await attempt(av.quote("AAPL"))
        await attempt(av.search("apple", 5))
        await attempt(av.daily_history("AAPL", date(2024, 1, 1), date(2024, 1, 31)))
        await attempt(av.quote("NOPE"))
        await attempt(av.daily_history("NOPE", date(2024, 1, 1), date(2024, 1, 31)))
        failing: list[tuple[Mode, str]] = [
            ("error_message", "MSFT"),
            ("http_500", "IBM"),
            ("slow", "TSLA"),
        ]
        for mode, symbol in failing:
            fake.mode = mode
            await attempt(av.quote(symbol))
        fake.mode = "ok"
        async with client(on=recording, key="WRONG-KEY-0000", **budget) as wrong:
            await attempt(wrong.quote("IBM"))
        answers.append(repr(av))
    limits: list[Mode] = ["note", "information"]
    for mode in limits:
        fake.mode = mode
        async with client(on=recording, **budget) as av:
            await attempt(av.quote("TSLA"))
        await recording.delete(COOLDOWN_KEY)  # the next client may ask the provider again
    fake.mode = "ok"
    async with client(on=recording, **budget) as av:
        for symbol in ("IBM", "TSLA", "APLE"):  # the 12th call, then the budget is spent
            await attempt(av.quote(symbol))

    assert [type(error).__name__ for error in errors] == [
        "NotFound",  # quote NOPE
        "NotFound",  # history NOPE
        "NotFound",  # Error Message
        "Unavailable",  # HTTP 500
        "Unavailable",  # too slow
        "Unavailable",  # wrong key
        "ResourceExhausted",  # Note
        "ResourceExhausted",  # Information
        "ResourceExhausted",  # TSLA: our own budget
        "ResourceExhausted",  # APLE: our own budget
    ]
    assert all(API_KEY not in _exception_text(error) for error in errors)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in repr(vars(record)) for record in caplog.records)
    assert all(API_KEY not in repr(answer) for answer in answers)
    assert recording.keys and all(API_KEY not in key for key in recording.keys)
    assert all(API_KEY.encode() not in value for value in recording.values)
    assert len(fake.requests) == 12
    assert all(r.params["apikey"] in (API_KEY, "WRONG-KEY-0000") for r in fake.requests)


async def test_the_factory_picks_alpha_vantage_and_never_logs_the_key(
    fake: FakeAlphaVantage, cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = alpha_vantage_config(fake.url)
    source = create_market_data(config, cache)
    try:
        assert isinstance(source, AlphaVantage)
        assert (await source.quote("IBM")).price == D("161.14")
    finally:
        await source.close()
    record = next(r for r in caplog.records if r.getMessage() == "market data from Alpha Vantage")
    assert record.provider == "alphavantage"  # type: ignore[attr-defined]
    assert API_KEY not in caplog.text + repr([vars(r) for r in caplog.records])
    assert API_KEY not in repr(config)


# --- ticks -------------------------------------------------------------------------------------


async def test_polling_refreshes_only_symbols_asked_for_recently_and_ticks_changes(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client(QUOTE_CACHE_TTL=TTL) as av:
        stream = av.ticks()
        first = await av.quote("AAPL")
        assert await asyncio.wait_for(anext(stream), 1) == first, "a first price is a change"
        assert await av.poll_once() is None, "nothing is due while the quote is fresh"

        fake.set_price("AAPL", "190.0000")
        await asyncio.sleep(PAST_TTL)
        polled = await av.poll_once()
        assert polled is not None
        assert (polled.symbol, polled.price) == ("AAPL", D("190.0000"))
        assert await asyncio.wait_for(anext(stream), 1) == polled

        await asyncio.sleep(PAST_TTL)
        unchanged = await av.poll_once()
        assert unchanged is not None and unchanged.price == polled.price
    assert [r.params["symbol"] for r in fake.calls("GLOBAL_QUOTE")] == ["AAPL"] * 3
    assert [q async for q in stream] == [], "an unchanged price is no tick; close ends the stream"


async def test_a_started_client_polls_in_the_background_and_close_cancels_it(
    fake: FakeAlphaVantage, cache: Cache
) -> None:
    config = alpha_vantage_config(fake.url, QUOTE_CACHE_TTL=TTL)
    source = AlphaVantage(config, cache, poll_every=0.05)
    stream = source.ticks()
    await source.quote("IBM")
    await anext(stream)
    fake.set_price("IBM", "163.0000")
    await source.start()
    try:
        tick = await asyncio.wait_for(anext(stream), 5)
        assert tick.price == D("163.0000")
    finally:
        await source.close()
    calls = len(fake.calls())
    await asyncio.sleep(0.2)
    assert len(fake.calls()) == calls, "no poll after close"


# --- exchange rates (CURRENCY_EXCHANGE_RATE, FX_DAILY) ---------------------------------------


async def test_a_rate_is_read_from_the_provider_once_then_from_the_cache(
    client: Client,
    fake: FakeAlphaVantage,
) -> None:
    async with client() as av:
        first = await av.fx_rate("eur", "usd")
        again = await av.fx_rate("EUR", "USD")
    assert (first.base, first.quote, first.rate, first.day) == (
        "EUR",
        "USD",
        D("1.0950"),
        date(2024, 1, 8),
    )
    assert again == first
    calls = fake.calls("CURRENCY_EXCHANGE_RATE")
    assert len(calls) == 1
    assert (calls[0].params["from_currency"], calls[0].params["to_currency"]) == ("EUR", "USD")


async def test_daily_rates_are_fx_daily_closes_within_the_range(
    client: Client,
    fake: FakeAlphaVantage,
) -> None:
    async with client() as av:
        closes = await av.fx_daily("USD", "JPY", date(2024, 1, 5), date(2024, 1, 31))
        await av.fx_daily("USD", "JPY", date(2024, 1, 1), date(2024, 1, 31))
    assert closes == {date(2024, 1, 5): D("144.63"), date(2024, 1, 8): D("144.21")}
    assert len(fake.calls("FX_DAILY")) == 1  # the second range is served from the cache


async def test_the_rates_spend_the_quotes_budget_and_a_spent_one_serves_the_last_rate(
    client: Client,
    fake: FakeAlphaVantage,
) -> None:
    async with client(ALPHA_VANTAGE_PER_MINUTE="2", QUOTE_CACHE_TTL=TTL) as av:
        await av.quote("IBM")
        first = await av.fx_rate("EUR", "USD")
        await asyncio.sleep(PAST_TTL)  # the fresh copy expires; the budget does not
        fake.fx_closes["EURUSD"]["2024-01-09"] = "1.1000"
        stale = await av.fx_rate("EUR", "USD")
    assert (stale.rate, stale.stale) == (first.rate, True)
    assert len(fake.calls("CURRENCY_EXCHANGE_RATE")) == 1


@pytest.mark.parametrize(("base", "quote"), [("GBP", "CHF"), ("XYZ", "USD")])
async def test_an_unknown_pair_or_code_is_not_found(
    client: Client,
    base: str,
    quote: str,
) -> None:
    async with client() as av:
        with pytest.raises(NotFound):
            await av.fx_rate(base, quote)
        with pytest.raises(NotFound):
            await av.fx_daily(base, quote, date(2024, 1, 1), date(2024, 1, 8))
