"""The fake Alpha Vantage server for the tests of the provider's client (fixture `fake`; every
test sees it: tests/conftest.py names this module in `pytest_plugins`): the provider's real wire
format over HTTP (tests/fakes/alpha_vantage.py); and the market config of a client aimed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.portfolio.config import MarketConfig, load_market_config
from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlphaVantage]:
    async with FakeAlphaVantage() as server:
        yield server


def alpha_vantage_config(url: str, *, key: str = API_KEY, **environ: str) -> MarketConfig:
    """Prices from the Alpha Vantage at `url` (not the simulated market), asked with `key`;
    keyword arguments are more of the environment."""
    return load_market_config(
        {
            "USE_MOCK_PRICES": "false",
            "ALPHA_VANTAGE_API_KEY": key,
            "ALPHA_VANTAGE_URL": url,
            **environ,
        }
    )
