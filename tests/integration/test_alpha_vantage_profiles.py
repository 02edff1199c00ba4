"""Stock profiles from Alpha Vantage's OVERVIEW against the local fake, on both cache backends:
parsed and named as we show them, asked once and kept for a week, an unknown symbol (`{}`) not
asked again soon, and a profile the provider's limit withholds is Unknown until a later call,
once the limit has passed, fills it in."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from services.portfolio.alpha_vantage import PROFILE_TTL, AlphaVantage
from services.portfolio.profiles import UNKNOWN, StockProfile, profiles_of
from services.runtime.cache import Cache
from services.runtime.errors import NotFound, ResourceExhausted
from tests.fakes.alpha_vantage import FakeAlphaVantage
from tests.integration.alpha_vantage_harness import alpha_vantage_config

AAPL = StockProfile("AAPL", "Technology", "Electronic Computers", "United States", "Stock")


class Wall:
    """Seconds since the epoch that move only when told (the provider's cooldown)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


Client = Callable[[], contextlib.AbstractAsyncContextManager[AlphaVantage]]


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def client(fake: FakeAlphaVantage, cache: Cache, wall: Wall) -> Client:
    @contextlib.asynccontextmanager
    async def open_client() -> AsyncIterator[AlphaVantage]:
        config = alpha_vantage_config(fake.url)
        source = AlphaVantage(config, cache, wall=wall)
        try:
            yield source
        finally:
            await source.close()

    return open_client


async def test_a_profile_is_read_from_overview_and_named_as_shown(
    client: Client, fake: FakeAlphaVantage
) -> None:
    async with client() as av:
        assert await av.profile(" aapl ") == AAPL
        assert await av.profile("APLE") == StockProfile(
            "APLE",
            "Real Estate & Construction",
            "Real Estate Investment Trusts",
            "United States",
            "Stock",
        )
    assert [r.params["symbol"] for r in fake.calls("OVERVIEW")] == ["AAPL", "APLE"]


async def test_a_profile_is_asked_once_and_kept_across_replicas_sharing_the_cache(
    client: Client, fake: FakeAlphaVantage, cache: Cache
) -> None:
    async with client() as av:
        assert await av.profile("MSFT") == await av.profile("MSFT")
    async with client() as other:  # another replica, or this one restarted
        assert (await other.profile("MSFT")).industry == "Services-Prepackaged Software"
    assert len(fake.calls("OVERVIEW")) == 1
    assert PROFILE_TTL == 7 * 86400


async def test_a_symbol_the_provider_has_no_overview_of_is_not_found_and_not_asked_again_soon(
    client: Client, fake: FakeAlphaVantage
) -> None:
    fake.listings["IBM"].profile = None
    async with client() as av:
        for _ in range(2):
            with pytest.raises(NotFound):
                await av.profile("IBM")
        assert await profiles_of(av, ["IBM", "NOPE"]) == {
            "IBM": StockProfile("IBM"),
            "NOPE": StockProfile("NOPE", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN),
        }
    assert sorted(r.params["symbol"] for r in fake.calls("OVERVIEW")) == ["IBM", "NOPE"]


async def test_a_limited_overview_is_unknown_and_a_later_call_fills_it_in(
    client: Client, fake: FakeAlphaVantage, wall: Wall
) -> None:
    fake.limited = {"OVERVIEW"}  # answers {"Information": ...}
    async with client() as av:
        with pytest.raises(ResourceExhausted):
            await av.profile("AAPL")
        assert await profiles_of(av, ["AAPL", "TSLA"]) == {
            "AAPL": StockProfile("AAPL"),
            "TSLA": StockProfile("TSLA"),
        }
        assert len(fake.calls("OVERVIEW")) == 1, "after the notice the provider is left alone"
        fake.limited = set()
        wall.now += 61  # the provider's minute has passed
        assert await profiles_of(av, ["AAPL", "TSLA"]) == {
            "AAPL": AAPL,
            "TSLA": StockProfile(
                "TSLA",
                "Manufacturing",
                "Motor Vehicles & Passenger Car Bodies",
                "United States",
                "Stock",
            ),
        }
    assert len(fake.calls("OVERVIEW")) == 3


async def test_a_spent_budget_leaves_the_profile_unknown_without_asking(
    fake: FakeAlphaVantage, cache: Cache
) -> None:
    config = alpha_vantage_config(fake.url, ALPHA_VANTAGE_PER_MINUTE="1")
    av = AlphaVantage(config, cache)
    try:
        assert (await profiles_of(av, ["AAPL"]))["AAPL"] == AAPL
        assert (await profiles_of(av, ["MSFT"]))["MSFT"] == StockProfile("MSFT")
    finally:
        await av.close()
    assert [r.params["symbol"] for r in fake.calls("OVERVIEW")] == ["AAPL"]
