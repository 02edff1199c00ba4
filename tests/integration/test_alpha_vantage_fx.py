"""Alpha Vantage's exchange rates (CURRENCY_EXCHANGE_RATE, FX_DAILY) against the local fake on
both cache backends: parsed from the provider's wire format, cached, inside the same call
budget as quotes (a stale rate served when it is spent), unknown pairs and codes NotFound."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

import pytest

from services.runtime.errors import NotFound
from tests.fakes.alpha_vantage import FakeAlphaVantage
from tests.integration.test_alpha_vantage import (  # noqa: F401 (fixtures)
    PAST_TTL,
    TTL,
    Client,
    client,
    fake,
)

D = Decimal


async def test_a_rate_is_read_from_the_provider_once_then_from_the_cache(
    client: Client,  # noqa: F811
    fake: FakeAlphaVantage,  # noqa: F811
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
    client: Client,  # noqa: F811
    fake: FakeAlphaVantage,  # noqa: F811
) -> None:
    async with client() as av:
        closes = await av.fx_daily("USD", "JPY", date(2024, 1, 5), date(2024, 1, 31))
        await av.fx_daily("USD", "JPY", date(2024, 1, 1), date(2024, 1, 31))
    assert closes == {date(2024, 1, 5): D("144.63"), date(2024, 1, 8): D("144.21")}
    assert len(fake.calls("FX_DAILY")) == 1  # the second range is served from the cache


async def test_the_rates_spend_the_quotes_budget_and_a_spent_one_serves_the_last_rate(
    client: Client,  # noqa: F811
    fake: FakeAlphaVantage,  # noqa: F811
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
    client: Client,  # noqa: F811
    base: str,
    quote: str,
) -> None:
    async with client() as av:
        with pytest.raises(NotFound):
            await av.fx_rate(base, quote)
        with pytest.raises(NotFound):
            await av.fx_daily(base, quote, date(2024, 1, 1), date(2024, 1, 8))
