"""The fake Alpha Vantage server for the tests of the provider's client (fixture `fake`; every
test sees it: tests/conftest.py names this module in `pytest_plugins`): the provider's real wire
format over HTTP (tests/fakes/alpha_vantage.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.alpha_vantage import FakeAlphaVantage


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlphaVantage]:
    async with FakeAlphaVantage() as server:
        yield server
