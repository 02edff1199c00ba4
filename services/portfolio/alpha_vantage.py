"""Alpha Vantage as a price source: GLOBAL_QUOTE, SYMBOL_SEARCH and TIME_SERIES_DAILY (and
OVERVIEW for stock profiles) over one aiohttp session, cached, and kept inside the free tier's
call budget; SPLITS for the split calendar of the symbols portfolios hold or held
(`split_calendar`).

Budget: every call counts against a per-minute and a per-day window kept in the cache, so
replicas sharing Redis share one budget. When the budget is spent, or the provider answers
`Note` or `Information` (its own limit), the last known answer is served (a quote marked
stale); with none cached, ResourceExhausted says when to come back.

The API key travels only in the query string of requests to the provider: it is never part of
a cache key, a log line, an exception or a returned value, and provider messages are scrubbed
of it before they are logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any, NoReturn

import aiohttp

from services.portfolio.config import MarketConfig
from services.portfolio.currencies import FxRate, rate_pair
from services.portfolio.domain import normalize_symbol, parse_decimal
from services.portfolio.market_data import (
    Quote,
    StockInfo,
    TickFanout,
    TickStream,
    check_range,
    search_terms,
)
from services.portfolio.profiles import StockProfile, known
from services.portfolio.split_calendar import (
    SplitCalendar,
    SplitRatio,
    decode,
    encode,
    parse_splits,
    within,
)
from services.runtime.cache import Cache
from services.runtime.clock import utc_now
from services.runtime.config import ConfigError
from services.runtime.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.runtime.ratelimit import Rate, RateLimiter
from services.runtime.tasks import cancel_all, cancel_and_wait

log = logging.getLogger(__name__)

SOURCE = "alphavantage"
TIMEOUT = 10.0
SEARCH_TTL = 24 * 3600.0
# A company's sector or country seldom changes: one OVERVIEW call per symbol a week at most.
PROFILE_TTL = 7 * 86400.0
HISTORY_TTL = 12 * 3600.0
# The copy served, marked stale, when the budget is spent.
LAST_KNOWN_TTL = 7 * 86400.0
# A mistyped symbol asked again and again must not spend the day's budget.
UNKNOWN_TTL = 3600.0
# After the provider says its limit is reached, ask it nothing for this long.
COOLDOWN = 60.0
# Symbols asked for within this window are polled for ticks.
INTEREST_WINDOW = 15 * 60.0
# The poller spends at most this share of each budget; the rest answers people.
POLL_SHARE = 0.5
MIN_POLL_GAP = 1.0
# Provider numbers carry 4 places; more than this is not a number we should trust.
PROVIDER_PLACES = 10
# A symbol's splits are asked at most once a day (the answer is cached that long)...
SPLITS_TTL = 86400.0
# ...one symbol per round of the split job, least recently asked first, and within this share
# of the day's budget: the rest answers people.
SPLITS_PER_ROUND = 1
SPLITS_SHARE = 0.25
UNKNOWN = b"null"
COOLDOWN_KEY = "av:cooldown"
UNAVAILABLE = "MARKET_DATA_UNAVAILABLE"
LIMITED = "MARKET_DATA_LIMIT"
# The key each function's successful answer carries.
_PAYLOAD_KEYS = {
    "GLOBAL_QUOTE": "Global Quote",
    "SYMBOL_SEARCH": "bestMatches",
    "TIME_SERIES_DAILY": "Time Series (Daily)",
    "CURRENCY_EXCHANGE_RATE": "Realtime Currency Exchange Rate",
    "FX_DAILY": "Time Series FX (Daily)",
    "OVERVIEW": "Symbol",
    "SPLITS": "data",
}
# Functions whose answer to an unknown symbol is an empty object `{}`.
_EMPTY_IS_UNKNOWN = {"OVERVIEW"}
# OVERVIEW's names where ours differ (the simulated market's).
_ASSET_TYPES = {"Common Stock": "Stock"}
_COUNTRIES = {"USA": "United States"}


class _Limited(Exception):
    """The call budget is spent, ours or the provider's: serve what is cached."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class _Rejected(Exception):
    """The provider answered `Error Message`: it considers the call invalid."""


def poll_gap(config: MarketConfig) -> float:
    """Seconds between the poller's calls: its share of each budget, spread evenly."""
    gaps = [MIN_POLL_GAP]
    if config.alpha_vantage_per_minute:
        gaps.append(60 / (config.alpha_vantage_per_minute * POLL_SHARE))
    if config.alpha_vantage_per_day:
        gaps.append(86400 / (config.alpha_vantage_per_day * POLL_SHARE))
    return max(gaps)


class AlphaVantage:
    """The Alpha Vantage client. Owns its HTTP session and poller; `close()` releases both."""

    source = SOURCE

    def __init__(
        self,
        config: MarketConfig,
        cache: Cache,
        *,
        timeout: float = TIMEOUT,
        poll_every: float | None = None,
        clock: Callable[[], datetime] = utc_now,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if config.alpha_vantage_api_key is None:
            raise ConfigError("ALPHA_VANTAGE_API_KEY must be set to use Alpha Vantage")
        self._api_key = config.alpha_vantage_api_key
        self._url = config.alpha_vantage_url
        self._cache = cache
        self._budget = RateLimiter(cache, namespace="av:budget")
        self._windows = (
            ("minute", Rate(config.alpha_vantage_per_minute, 60.0)),
            ("day", Rate(config.alpha_vantage_per_day, 86400.0)),
        )
        per_day = config.alpha_vantage_per_day
        self._splits_rate = Rate(
            max(1, math.ceil(per_day * SPLITS_SHARE)) if per_day else 0, 86400.0
        )
        self._quote_ttl = config.quote_cache_ttl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._poll_every = poll_gap(config) if poll_every is None else poll_every
        self._clock = clock
        self._wall = wall  # seconds since the epoch, as the cooldown kept in the cache is
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[tuple[str, ...], asyncio.Task[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._cooling_until = 0.0  # wall-clock time until which the provider is left alone
        self._fanout = TickFanout()
        self._asked: dict[str, float] = {}  # symbol -> when someone last asked (monotonic)
        self._refreshed: dict[str, float] = {}  # symbol -> when its quote was last fresh
        self._last_prices: dict[str, Decimal] = {}  # the price each symbol last ticked at

    def __repr__(self) -> str:
        return f"AlphaVantage(url={self._url!r})"

    # --- MarketData ----------------------------------------------------------------------------

    async def quote(self, symbol: str) -> Quote:
        clean = normalize_symbol(symbol)
        self._asked[clean] = time.monotonic()
        try:
            return await self._quote(clean)
        except NotFound:
            self._asked.pop(clean, None)
            raise

    async def search(self, q: str, limit: int = 10) -> list[StockInfo]:
        """The provider's best matches, highest match score first. An empty `q` matches
        nothing: the provider cannot list its whole universe."""
        terms = search_terms(q, limit)
        if not terms:
            return []
        return (await self._matches(terms))[:limit]

    async def stock(self, symbol: str) -> StockInfo:
        clean = normalize_symbol(symbol)
        for info in await self._matches(clean):
            if info.symbol == clean:
                return info
        raise NotFound(f"unknown symbol {clean}", reason="UNKNOWN_SYMBOL")

    async def profile(self, symbol: str) -> StockProfile:
        """OVERVIEW's sector, industry, country and asset type, kept for a week (and served
        stale for another when the budget is spent)."""
        clean = normalize_symbol(symbol)
        found, _ = await self._cached(
            "profile", clean, PROFILE_TTL, partial(self._fetch_profile, clean)
        )
        if found is None:
            raise NotFound(f"unknown symbol {clean}", reason="UNKNOWN_SYMBOL")
        sector, industry, country, asset_type = json.loads(found)
        return StockProfile(clean, sector, industry, country, asset_type)

    async def daily_history(self, symbol: str, start: date, end: date) -> dict[date, Decimal]:
        """Closes of the latest 100 trading days at most (the free tier's `compact` size)."""
        clean = normalize_symbol(symbol)
        check_range(start, end)
        found, _ = await self._cached(
            "daily", clean, HISTORY_TTL, partial(self._fetch_daily, clean)
        )
        if found is None:
            raise NotFound(f"no daily prices for {clean}", reason="UNKNOWN_SYMBOL")
        closes = {date.fromisoformat(day): Decimal(close) for day, close in json.loads(found)}
        return {day: close for day, close in closes.items() if start <= day <= end}

    async def fx_rate(self, base: str, quote: str) -> FxRate:
        """CURRENCY_EXCHANGE_RATE, cached as quotes are (same budget, same stale copy)."""
        base, quote = rate_pair(base, quote)
        if base == quote:
            return FxRate(base, quote, Decimal(1), self._clock().date(), SOURCE)
        pair = f"{base}{quote}"
        found, stale = await self._cached(
            "fx", pair, self._quote_ttl, partial(self._fetch_fx_rate, base, quote)
        )
        if found is None:
            raise NotFound(f"no exchange rate for {base}/{quote}", reason="UNKNOWN_CURRENCY")
        rate, day = json.loads(found)
        return FxRate(base, quote, Decimal(rate), date.fromisoformat(day), SOURCE, stale)

    async def fx_daily(self, base: str, quote: str, start: date, end: date) -> dict[date, Decimal]:
        """FX_DAILY closes of the latest 100 trading days at most, cached as daily prices."""
        base, quote = rate_pair(base, quote)
        check_range(start, end)
        if base == quote:
            return {}
        found, _ = await self._cached(
            "fxdaily", f"{base}{quote}", HISTORY_TTL, partial(self._fetch_fx_daily, base, quote)
        )
        if found is None:
            raise NotFound(f"no exchange rate for {base}/{quote}", reason="UNKNOWN_CURRENCY")
        closes = {date.fromisoformat(day): Decimal(close) for day, close in json.loads(found)}
        return {day: close for day, close in closes.items() if start <= day <= end}

    async def split_calendar(
        self, start: date, end: date, symbols: Collection[str] | None = None
    ) -> SplitCalendar:
        """SPLITS of `symbols` (the provider cannot list everyone's: None asks nothing), from
        the cache while a day old at most; of those not cached, SPLITS_PER_ROUND are asked,
        never asked or least recently first. A symbol that cannot be asked now (the budget,
        the provider's limit, an outage) is left out, or its last known answer is used, and
        is asked on a later round."""
        check_range(start, end)
        found: SplitCalendar = {}
        due: list[tuple[float, str]] = []
        for symbol in sorted({normalize_symbol(s) for s in symbols or ()}):
            fresh = await self._cache.get(f"av:splits:{symbol}")
            if fresh is not None:
                found[symbol] = _decode_splits(fresh)[1]
                continue
            last = await self._cache.get(f"av:last:splits:{symbol}")
            asked_at, known = _decode_splits(last) if last is not None else (-math.inf, {})
            found[symbol] = known
            due.append((asked_at, symbol))
        for _, symbol in sorted(due)[:SPLITS_PER_ROUND]:
            if not (await self._budget.hit("splits", self._splits_rate)).allowed:
                log.info("alpha vantage splits budget spent", extra={"symbol": symbol})
                break
            try:
                answer, _ = await self._cached(
                    "splits", symbol, SPLITS_TTL, partial(self._fetch_splits, symbol)
                )
            except DomainError as problem:
                log.info(
                    "alpha vantage splits not asked",
                    extra={"symbol": symbol, "why": problem.reason},
                )
                continue
            found[symbol] = _decode_splits(answer)[1] if answer is not None else {}
        return within(found, start, end)

    def ticks(self, *, every: bool = False) -> TickStream:
        return self._fanout.subscribe(every=every)

    async def start(self) -> None:
        if self._poller is None and not self._closed:
            self._poller = asyncio.create_task(self._poll_forever(), name="alpha-vantage-poller")
            log.info("alpha vantage poller started", extra={"pollEvery": self._poll_every})

    async def pause(self) -> None:
        poller, self._poller = self._poller, None
        await cancel_and_wait(poller)

    def restore(self, quotes: Iterable[Quote], step: int) -> None:
        """Prices come from the provider and the shared cache: only remember what ticked, so
        an unchanged price is not ticked again."""
        for quote in quotes:
            self._last_prices[quote.symbol] = quote.price

    async def close(self) -> None:
        self._closed = True
        tasks = [task for task in (self._poller, *self._inflight.values()) if task is not None]
        self._poller = None
        await cancel_all(tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._fanout.end()

    async def poll_once(self) -> Quote | None:
        """Refresh the quote, among those asked for recently, that has gone longest without
        one. None when nothing is due or the provider could not be asked."""
        now = time.monotonic()
        for symbol, asked in list(self._asked.items()):
            if now - asked > INTEREST_WINDOW:
                del self._asked[symbol]
        due = [
            symbol
            for symbol in self._asked
            if now - self._refreshed.get(symbol, -math.inf) >= self._quote_ttl
        ]
        if not due:
            return None
        symbol = min(due, key=lambda s: self._refreshed.get(s, -math.inf))
        try:
            quote = await self._quote(symbol)
        except NotFound:
            self._asked.pop(symbol, None)
            return None
        except DomainError as problem:
            log.info("alpha vantage poll skipped", extra={"symbol": symbol, "why": problem.reason})
            return None
        return None if quote.stale else quote

    # --- answers, cached -----------------------------------------------------------------------

    async def _quote(self, symbol: str) -> Quote:
        found, stale = await self._cached(
            "quote", symbol, self._quote_ttl, partial(self._fetch_quote, symbol)
        )
        if found is None:
            raise NotFound(f"unknown symbol {symbol}", reason="UNKNOWN_SYMBOL")
        quote = _decode_quote(found)
        if stale:
            return replace(quote, stale=True)
        self._refreshed[symbol] = time.monotonic()
        if self._last_prices.get(symbol) != quote.price:
            self._last_prices[symbol] = quote.price
            self._fanout.publish([quote])
        return quote

    async def _matches(self, terms: str) -> list[StockInfo]:
        found, _ = await self._cached(
            "search", terms.casefold(), SEARCH_TTL, partial(self._fetch_search, terms)
        )
        if found is None:
            return []
        return [StockInfo(*fields) for fields in json.loads(found)]

    async def _cached(
        self, kind: str, ident: str, ttl: float, fetch: Callable[[], Awaitable[bytes | None]]
    ) -> tuple[bytes | None, bool]:
        """The cached answer while fresh, else a new one (then cached); when the budget is
        spent, the last known answer and True (stale). None is an answer too: the provider
        knows no such symbol."""
        fresh_key, last_key = f"av:{kind}:{ident}", f"av:last:{kind}:{ident}"
        found = await self._cache.get(fresh_key)
        if found is not None:
            return (None if found == UNKNOWN else found), False
        try:
            found = await fetch()
        except _Limited as limited:
            last = await self._cache.get(last_key)
            if last is None:
                raise ResourceExhausted(
                    f"market data call budget is spent and no {kind} for {ident} is cached;"
                    f" retry in {math.ceil(limited.retry_after)} s",
                    retry_after=limited.retry_after,
                    reason=LIMITED,
                ) from None
            return last, True
        if found is None:
            await self._cache.set(fresh_key, UNKNOWN, UNKNOWN_TTL)
        else:
            await self._cache.set(fresh_key, found, ttl)
            await self._cache.set(last_key, found, LAST_KNOWN_TTL)
        return found, False

    # --- the three functions -------------------------------------------------------------------

    async def _fetch_quote(self, symbol: str) -> bytes | None:
        try:
            payload = await self._call("GLOBAL_QUOTE", symbol=symbol)
        except _Rejected:
            return None
        fields = payload["Global Quote"]
        if fields == {}:  # how the provider says it knows no such symbol
            return None
        if not isinstance(fields, dict):
            raise _malformed("GLOBAL_QUOTE")
        try:
            quote = Quote(
                symbol=symbol,
                price=_decimal("price", fields["05. price"]),
                change=_decimal("change", fields["09. change"]),
                change_percent=_decimal(
                    "change percent", str(fields["10. change percent"]).strip().removesuffix("%")
                ),
                time=self._clock(),
                source=SOURCE,
            )
        except (KeyError, InvalidArgument):
            raise _malformed("GLOBAL_QUOTE") from None
        return _encode_quote(quote)

    async def _fetch_search(self, terms: str) -> bytes | None:
        try:
            payload = await self._call("SYMBOL_SEARCH", keywords=terms)
        except _Rejected:
            raise InvalidArgument.field("q", "was refused by the market data provider") from None
        matches = payload["bestMatches"]
        if not isinstance(matches, list):
            raise _malformed("SYMBOL_SEARCH")
        scored: list[tuple[Decimal, StockInfo]] = []
        for match in matches:
            try:
                info = StockInfo(
                    symbol=normalize_symbol(str(match["1. symbol"])),
                    name=str(match["2. name"]),
                    exchange=str(match["4. region"]),
                    currency=str(match["8. currency"]),
                )
                scored.append((_decimal("match score", match["9. matchScore"]), info))
            except (KeyError, TypeError, InvalidArgument):
                log.info("alpha vantage search match skipped: malformed")
        scored.sort(key=lambda found: found[0], reverse=True)  # stable: ties keep its order
        rows = [[i.symbol, i.name, i.exchange, i.currency] for _, i in scored]
        return json.dumps(rows).encode()

    async def _fetch_profile(self, symbol: str) -> bytes | None:
        try:
            payload = await self._call("OVERVIEW", symbol=symbol)
        except _Rejected:
            return None
        if payload == {}:  # how the provider says it knows no such symbol
            return None
        asset_type = _named(payload.get("AssetType"))
        country = _named(payload.get("Country"))
        fields = [
            _named(payload.get("Sector")),
            _named(payload.get("Industry")),
            _COUNTRIES.get(country, country),
            _ASSET_TYPES.get(asset_type, asset_type),
        ]
        return json.dumps(fields).encode()

    async def _fetch_daily(self, symbol: str) -> bytes | None:
        try:
            payload = await self._call("TIME_SERIES_DAILY", symbol=symbol, outputsize="compact")
        except _Rejected:
            return None
        series = payload["Time Series (Daily)"]
        if not isinstance(series, dict):
            raise _malformed("TIME_SERIES_DAILY")
        try:
            closes = sorted(
                (date.fromisoformat(day).isoformat(), str(_decimal("close", bar["4. close"])))
                for day, bar in series.items()
            )
        except (KeyError, TypeError, ValueError, InvalidArgument):
            raise _malformed("TIME_SERIES_DAILY") from None
        return json.dumps(closes).encode()

    async def _fetch_fx_rate(self, base: str, quote: str) -> bytes | None:
        try:
            payload = await self._call(
                "CURRENCY_EXCHANGE_RATE", from_currency=base, to_currency=quote
            )
        except _Rejected:
            return None
        fields = payload["Realtime Currency Exchange Rate"]
        if not isinstance(fields, dict):
            raise _malformed("CURRENCY_EXCHANGE_RATE")
        try:
            rate = _decimal("exchange rate", fields["5. Exchange Rate"])
            refreshed = str(fields["6. Last Refreshed"])[:10]
            day = date.fromisoformat(refreshed).isoformat()
        except (KeyError, ValueError, InvalidArgument):
            raise _malformed("CURRENCY_EXCHANGE_RATE") from None
        return json.dumps([str(rate), day]).encode()

    async def _fetch_fx_daily(self, base: str, quote: str) -> bytes | None:
        try:
            payload = await self._call(
                "FX_DAILY", from_symbol=base, to_symbol=quote, outputsize="compact"
            )
        except _Rejected:
            return None
        series = payload["Time Series FX (Daily)"]
        if not isinstance(series, dict):
            raise _malformed("FX_DAILY")
        try:
            closes = sorted(
                (date.fromisoformat(day).isoformat(), str(_decimal("close", bar["4. close"])))
                for day, bar in series.items()
            )
        except (KeyError, TypeError, ValueError, InvalidArgument):
            raise _malformed("FX_DAILY") from None
        return json.dumps(closes).encode()

    async def _fetch_splits(self, symbol: str) -> bytes | None:
        try:
            payload = await self._call("SPLITS", symbol=symbol)
        except _Rejected:
            # A symbol the provider refuses has no splits it knows of: kept a day like any
            # answer, so it takes its turn with the others instead of coming first each hour.
            payload = {"data": []}
        days = parse_splits(symbol, payload["data"])
        return json.dumps({"at": time.time(), "splits": encode(days)}).encode()

    # --- one call to the provider --------------------------------------------------------------

    async def _call(self, function: str, **params: str) -> dict[str, Any]:
        """One provider call; identical calls in flight at once share a single request."""
        request = (function, *(f"{name}={value}" for name, value in sorted(params.items())))
        task = self._inflight.get(request)
        if task is None:
            task = asyncio.create_task(self._request(function, params))
            self._inflight[request] = task
            task.add_done_callback(partial(self._settled, request))
        return await asyncio.shield(task)

    def _settled(self, request: tuple[str, ...], task: asyncio.Task[dict[str, Any]]) -> None:
        self._inflight.pop(request, None)
        if not task.cancelled():
            task.exception()  # observed, even when every waiter has gone

    async def _request(self, function: str, params: dict[str, str]) -> dict[str, Any]:
        if self._closed:
            raise Unavailable("market data is shutting down", reason=UNAVAILABLE)
        await self._spend(function)
        query = {"function": function, **params, "apikey": self._api_key}
        try:
            status, payload = await self._get(query)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            problem = type(error).__name__
        else:
            return await self._checked(function, status, payload)
        # Raised outside the handler so the aiohttp error (whose text may hold the URL) is not
        # chained to what callers see.
        log.warning("alpha vantage did not answer", extra={"function": function, "error": problem})
        raise Unavailable("market data provider did not answer", reason=UNAVAILABLE)

    async def _get(self, query: dict[str, str]) -> tuple[int, Any]:
        async with self._http().get(self._url, params=query) as response:
            if response.status != 200:
                return response.status, None
            return response.status, await response.json(content_type=None)

    async def _spend(self, function: str) -> None:
        """Count one call in every window, or raise _Limited when one is spent."""
        # Kept here as well as in the cache: with Redis down, the provider is still left alone.
        retry_after = self._cooling_until - self._wall()
        until = await self._cache.get(COOLDOWN_KEY)
        if until is not None:
            try:
                retry_after = max(retry_after, float(until) - self._wall())
            except ValueError:
                retry_after = COOLDOWN
        if retry_after > 0:
            raise _Limited(max(1.0, retry_after))
        for window, rate in self._windows:
            decision = await self._budget.hit(window, rate)
            if not decision.allowed:
                log.info(
                    "alpha vantage budget spent",
                    extra={
                        "function": function,
                        "window": window,
                        "retryAfter": round(decision.reset_after, 1),
                    },
                )
                raise _Limited(decision.reset_after)

    async def _checked(self, function: str, status: int, payload: Any) -> dict[str, Any]:
        if status == 429:
            await self._cool_down(function, "HTTP 429")
        if status != 200:
            log.warning(
                "alpha vantage answered an HTTP error",
                extra={"function": function, "status": status},
            )
            raise Unavailable(f"market data provider answered HTTP {status}", reason=UNAVAILABLE)
        if not isinstance(payload, dict):
            raise _malformed(function)
        if _PAYLOAD_KEYS[function] in payload:
            return payload
        if payload == {} and function in _EMPTY_IS_UNKNOWN:
            return payload
        notice = payload.get("Note") or payload.get("Information")
        if notice is not None:
            await self._cool_down(function, str(notice))
        error = payload.get("Error Message")
        if error is not None:
            text = self._scrub(str(error))
            if "apikey" in text.lower():
                log.error("alpha vantage refused the API key", extra={"function": function})
                raise Unavailable(
                    "market data provider refused our credentials", reason=UNAVAILABLE
                )
            log.info("alpha vantage rejected a call", extra={"function": function, "said": text})
            raise _Rejected(text)
        raise _malformed(function)

    async def _cool_down(self, function: str, notice: str) -> NoReturn:
        log.warning(
            "alpha vantage says its limit is reached",
            extra={"function": function, "said": self._scrub(notice)},
        )
        self._cooling_until = self._wall() + COOLDOWN
        await self._cache.set(COOLDOWN_KEY, str(self._cooling_until).encode(), COOLDOWN)
        raise _Limited(COOLDOWN)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***")

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "stockfolio"}
            )
        return self._session

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_every)
            try:
                await self.poll_once()
            except Exception:  # a background loop: one bad poll must not end the ticks
                log.exception("alpha vantage poll failed")


def _decimal(field: str, raw: Any) -> Decimal:
    return parse_decimal(field, str(raw), places=PROVIDER_PLACES)


def _named(raw: Any) -> str:
    """An OVERVIEW name as shown: its all-capitals words title-cased ("LIFE SCIENCES" is "Life
    Sciences"; a code such as "USA" is kept); "Unknown" when absent or "None"."""
    value = known(raw if isinstance(raw, str) else "")
    return value.title() if value.isupper() and len(value) > 3 else value


def _malformed(function: str) -> Unavailable:
    log.warning("alpha vantage answered in an unexpected shape", extra={"function": function})
    return Unavailable("market data provider sent an answer it could not read", reason=UNAVAILABLE)


def _decode_splits(raw: bytes) -> tuple[float, dict[date, SplitRatio]]:
    """When a SPLITS answer was had, and its splits (an unknown symbol's: none)."""
    if raw == UNKNOWN:
        return -math.inf, {}
    fields = json.loads(raw)
    return float(fields["at"]), decode(fields["splits"])


def _encode_quote(quote: Quote) -> bytes:
    return json.dumps(
        {
            "symbol": quote.symbol,
            "price": str(quote.price),
            "change": str(quote.change),
            "changePercent": str(quote.change_percent),
            "time": quote.time.isoformat(),
        }
    ).encode()


def _decode_quote(raw: bytes) -> Quote:
    fields = json.loads(raw)
    return Quote(
        symbol=fields["symbol"],
        price=Decimal(fields["price"]),
        change=Decimal(fields["change"]),
        change_percent=Decimal(fields["changePercent"]),
        time=datetime.fromisoformat(fields["time"]),
        source=SOURCE,
    )
