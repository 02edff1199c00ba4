"""Stock profiles: a listing's sector, industry, country and asset type, as the market gives
them, and "Unknown" wherever it cannot (an unknown symbol, a provider whose budget is spent or
that does not answer): a report that groups holdings by them never fails for want of one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from services.runtime.errors import DomainError

UNKNOWN = "Unknown"


@dataclass(frozen=True)
class StockProfile:
    symbol: str
    sector: str = UNKNOWN
    industry: str = UNKNOWN
    country: str = UNKNOWN
    asset_type: str = UNKNOWN


class ProfileSource(Protocol):
    async def profile(self, symbol: str) -> StockProfile:
        """NotFound for a symbol the market does not list; ResourceExhausted or Unavailable
        when it cannot be asked now."""
        ...


def known(value: str) -> str:
    """A profile field as shown: blank, or a provider's "None" or "-", is not known."""
    cleaned = value.strip()
    return UNKNOWN if cleaned in {"", "None", "-", "N/A"} else cleaned


async def profile_or_unknown(market: ProfileSource, symbol: str) -> StockProfile:
    try:
        return await market.profile(symbol)
    except DomainError:
        return StockProfile(symbol)


async def profiles_of(market: ProfileSource, symbols: Iterable[str]) -> dict[str, StockProfile]:
    """Each symbol's profile, "Unknown" where the market cannot give it now: asked at once,
    as a provider's per-symbol calls would otherwise add up their waits."""
    wanted = sorted(set(symbols))
    found = await asyncio.gather(*(profile_or_unknown(market, s) for s in wanted))
    return dict(zip(wanted, found, strict=True))
