"""A local Alpha Vantage: its real JSON wire format and error shapes, on 127.0.0.1 port 0.

    async with FakeAlphaVantage() as fake:
        config = load_market_config({"ALPHA_VANTAGE_URL": fake.url, ...})

`mode` switches what every request gets: "ok" (real answers), "note" and "information" (the
provider's limit notices), "error_message", "http_500", "slow" (answers after `slow_seconds`).
Functions named in `limited` get the "information" notice whatever the mode.
`requests` logs every request received, with its query parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes.server import FakeServer

Mode = Literal["ok", "note", "information", "error_message", "http_500", "slow"]

API_KEY = "FAKE-AV-KEY-7Q3X9"
NOTE = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute"
    " and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like"
    " to target a higher API call frequency."
)
INFORMATION = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day."
    " Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to"
    " instantly remove all daily rate limits."
)
INVALID_KEY = (
    "the parameter apikey is invalid or missing. Please claim your free API key on"
    " (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)
COMPACT = 100  # points in a `compact` daily series


def invalid_call(function: str) -> str:
    return (
        "Invalid API call. Please retry or visit the documentation"
        f" (https://www.alphavantage.co/documentation/) for {function}."
    )


@dataclass
class FakeListing:
    """What the fake knows of one symbol. `closes` maps ISO days to close prices."""

    symbol: str
    name: str
    kind: str
    region: str
    currency: str
    price: str = ""
    previous_close: str = ""
    latest_day: str = "2024-01-08"
    closes: dict[str, str] = field(default_factory=dict)
    # SPLITS rows as the provider sends them: (effective date, split factor), e.g.
    # ("2020-08-31", "4.0000"); a reverse 1-for-2 is "0.5000".
    splits: list[tuple[str, str]] = field(default_factory=list)
    # OVERVIEW's company profile (sector, industry, country); None answers `{}`, as the
    # provider does for a symbol it has no overview of (ETFs among them).
    profile: tuple[str, str, str] | None = None
    exchange: str = "NASDAQ"

    def overview(self) -> dict[str, str]:
        """OVERVIEW's answer, every field a string as the provider sends them ("None" where
        it has no figure)."""
        if self.profile is None:
            return {}
        sector, industry, country = self.profile
        return {
            "Symbol": self.symbol,
            "AssetType": "Common Stock",
            "Name": self.name,
            "Description": f"{self.name} is a company.",
            "CIK": "320193",
            "Exchange": self.exchange,
            "Currency": self.currency,
            "Country": country,
            "Sector": sector,
            "Industry": industry,
            "Address": "ONE APPLE PARK WAY, CUPERTINO, CA, US",
            "OfficialSite": "https://www.example.com",
            "FiscalYearEnd": "September",
            "LatestQuarter": "2023-12-31",
            "MarketCapitalization": "2887667171000",
            "EBITDA": "125820002000",
            "PERatio": "29.7",
            "PEGRatio": "2.18",
            "BookValue": "4.793",
            "DividendPerShare": "0.95",
            "DividendYield": "0.0052",
            "EPS": "6.13",
            "AnalystTargetPrice": "None",
            "52WeekHigh": "199.62",
            "52WeekLow": "128.12",
            "50DayMovingAverage": "189.05",
            "200DayMovingAverage": "181.67",
            "SharesOutstanding": "15552800000",
            "DividendDate": "2024-02-15",
            "ExDividendDate": "2024-02-09",
        }

    def global_quote(self) -> dict[str, str]:
        price, previous = float(self.price), float(self.previous_close)
        change = price - previous
        return {
            "01. symbol": self.symbol,
            "02. open": self.previous_close,
            "03. high": f"{max(price, previous):.4f}",
            "04. low": f"{min(price, previous):.4f}",
            "05. price": f"{price:.4f}",
            "06. volume": "48291756",
            "07. latest trading day": self.latest_day,
            "08. previous close": f"{previous:.4f}",
            "09. change": f"{change:.4f}",
            "10. change percent": f"{change / previous * 100:.4f}%",
        }


def us_equity(
    symbol: str,
    name: str,
    price: str,
    previous_close: str,
    profile: tuple[str, str, str] | None = None,
) -> FakeListing:
    return FakeListing(
        symbol, name, "Equity", "United States", "USD", price, previous_close, profile=profile
    )


def default_universe() -> dict[str, FakeListing]:
    """A handful of listings. APLE comes before AAPL on purpose: the fake answers searches in
    this order, and the client must rank by match score itself."""
    aapl = us_equity(
        "AAPL", "Apple Inc", "185.5600", "181.1800", ("TECHNOLOGY", "ELECTRONIC COMPUTERS", "USA")
    )
    aapl.closes = {
        "2024-01-02": "185.6400",
        "2024-01-03": "184.2500",
        "2024-01-04": "181.9100",
        "2024-01-05": "181.1800",
        "2024-01-08": "185.5600",
    }
    listings = [
        us_equity(
            "APLE",
            "Apple Hospitality REIT Inc",
            "14.5800",
            "14.6100",
            ("REAL ESTATE & CONSTRUCTION", "REAL ESTATE INVESTMENT TRUSTS", "USA"),
        ),
        aapl,
        us_equity(
            "MSFT",
            "Microsoft Corporation",
            "374.6900",
            "367.7500",
            ("TECHNOLOGY", "SERVICES-PREPACKAGED SOFTWARE", "USA"),
        ),
        us_equity(
            "IBM",
            "International Business Machines Corp",
            "161.1400",
            "159.1600",
            ("TECHNOLOGY", "COMPUTER & OFFICE EQUIPMENT", "USA"),
        ),
        us_equity(
            "TSLA",
            "Tesla Inc",
            "240.4500",
            "237.4900",
            ("MANUFACTURING", "MOTOR VEHICLES & PASSENGER CAR BODIES", "USA"),
        ),
        FakeListing("TSCO.LON", "Tesco PLC", "Equity", "United Kingdom", "GBX"),  # search only
    ]
    return {listing.symbol: listing for listing in listings}


@dataclass(frozen=True)
class FakeRequest:
    function: str
    params: dict[str, str]


class FakeAlphaVantage(FakeServer):
    url_path = "/query"

    def __init__(self, *, api_key: str = API_KEY, slow_seconds: float = 5.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.mode: Mode = "ok"
        self.listings = default_universe()
        # Pair ("EURUSD") -> ISO day -> close; the latest is the realtime rate.
        self.fx_closes: dict[str, dict[str, str]] = {
            "EURUSD": {"2024-01-04": "1.0945", "2024-01-05": "1.0942", "2024-01-08": "1.0950"},
            "USDJPY": {"2024-01-04": "144.57", "2024-01-05": "144.63", "2024-01-08": "144.21"},
        }
        self.requests: list[FakeRequest] = []
        self.limited: set[str] = set()

    def calls(self, function: str | None = None) -> list[FakeRequest]:
        return [r for r in self.requests if function is None or r.function == function]

    def set_price(self, symbol: str, price: str) -> None:
        self.listings[symbol].price = price

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/query", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        function = params.get("function", "")
        self.requests.append(FakeRequest(function, params))
        if self.mode == "http_500":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.slow_seconds)
        if self.mode == "note":
            return web.json_response({"Note": NOTE})
        if self.mode == "information" or function in self.limited:
            return web.json_response({"Information": INFORMATION})
        if self.mode == "error_message":
            return web.json_response({"Error Message": invalid_call(function)})
        if params.get("apikey") != self.api_key:
            return web.json_response({"Error Message": INVALID_KEY})
        return web.json_response(self._answer(function, params))

    def _answer(self, function: str, params: dict[str, str]) -> dict[str, Any]:
        if function == "GLOBAL_QUOTE":
            return self._global_quote(params.get("symbol", ""))
        if function == "SYMBOL_SEARCH":
            return self._symbol_search(params.get("keywords", ""))
        if function == "TIME_SERIES_DAILY":
            return self._daily(params.get("symbol", ""), params.get("outputsize", "compact"))
        if function == "CURRENCY_EXCHANGE_RATE":
            return self._exchange_rate(
                params.get("from_currency", ""), params.get("to_currency", "")
            )
        if function == "SPLITS":
            return self._splits(params.get("symbol", ""))
        if function == "FX_DAILY":
            return self._fx_daily(params.get("from_symbol", ""), params.get("to_symbol", ""))
        if function == "OVERVIEW":
            listing = self.listings.get(params.get("symbol", "").upper())
            return {} if listing is None else listing.overview()
        return {"Error Message": f"This API function ({function}) does not exist."}

    def _exchange_rate(self, base: str, quote: str) -> dict[str, Any]:
        closes = self.fx_closes.get(f"{base}{quote}".upper())
        if not closes:
            return {"Error Message": invalid_call("CURRENCY_EXCHANGE_RATE")}
        day = max(closes)
        rate = closes[day]
        return {
            "Realtime Currency Exchange Rate": {
                "1. From_Currency Code": base.upper(),
                "2. From_Currency Name": base.upper(),
                "3. To_Currency Code": quote.upper(),
                "4. To_Currency Name": quote.upper(),
                "5. Exchange Rate": rate,
                "6. Last Refreshed": f"{day} 21:15:01",
                "7. Time Zone": "UTC",
                "8. Bid Price": rate,
                "9. Ask Price": rate,
            }
        }

    def _fx_daily(self, base: str, quote: str) -> dict[str, Any]:
        closes = self.fx_closes.get(f"{base}{quote}".upper())
        if not closes:
            return {"Error Message": invalid_call("FX_DAILY")}
        days = sorted(closes, reverse=True)[:COMPACT]
        return {
            "Meta Data": {
                "1. Information": "Forex Daily Prices (open, high, low, close)",
                "2. From Symbol": base.upper(),
                "3. To Symbol": quote.upper(),
                "4. Output Size": "Compact",
                "5. Last Refreshed": f"{days[0]} 21:15:00",
                "6. Time Zone": "UTC",
            },
            "Time Series FX (Daily)": {
                day: {
                    "1. open": closes[day],
                    "2. high": closes[day],
                    "3. low": closes[day],
                    "4. close": closes[day],
                }
                for day in days
            },
        }

    def _splits(self, symbol: str) -> dict[str, Any]:
        listing = self.listings.get(symbol.upper())
        if listing is None:
            return {"Error Message": invalid_call("SPLITS")}
        rows = [{"effective_date": day, "split_factor": factor} for day, factor in listing.splits]
        return {"symbol": listing.symbol, "data": rows}

    def _global_quote(self, symbol: str) -> dict[str, Any]:
        listing = self.listings.get(symbol.upper())
        if listing is None or not listing.price:
            return {"Global Quote": {}}
        return {"Global Quote": listing.global_quote()}

    def _symbol_search(self, keywords: str) -> dict[str, Any]:
        if not keywords:
            return {"Error Message": invalid_call("SYMBOL_SEARCH")}
        needle = keywords.casefold()
        matches = []
        for listing in self.listings.values():
            symbol, name = listing.symbol.casefold(), listing.name.casefold()
            if symbol.startswith(needle):
                score = len(needle) / len(symbol)
            elif needle in name:
                score = len(needle) / len(name)
            else:
                continue
            matches.append(
                {
                    "1. symbol": listing.symbol,
                    "2. name": listing.name,
                    "3. type": listing.kind,
                    "4. region": listing.region,
                    "5. marketOpen": "09:30",
                    "6. marketClose": "16:00",
                    "7. timezone": "UTC-04",
                    "8. currency": listing.currency,
                    "9. matchScore": f"{score:.4f}",
                }
            )
        return {"bestMatches": matches}

    def _daily(self, symbol: str, size: str) -> dict[str, Any]:
        listing = self.listings.get(symbol.upper())
        if listing is None or not listing.closes:
            return {"Error Message": invalid_call("TIME_SERIES_DAILY")}
        days = sorted(listing.closes, reverse=True)
        if size == "compact":
            days = days[:COMPACT]
        series = {
            day: {
                "1. open": listing.closes[day],
                "2. high": listing.closes[day],
                "3. low": listing.closes[day],
                "4. close": listing.closes[day],
                "5. volume": "52164535",
            }
            for day in days
        }
        return {
            "Meta Data": {
                "1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": listing.symbol,
                "3. Last Refreshed": days[0],
                "4. Output Size": "Compact" if size == "compact" else "Full size",
                "5. Time Zone": "US/Eastern",
            },
            "Time Series (Daily)": series,
        }
