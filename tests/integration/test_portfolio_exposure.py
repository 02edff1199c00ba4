"""GetExposure through the real portfolio server, on SQLite and PostgreSQL: a portfolio's
holdings by sector, country, asset type and currency at the values GetPortfolio shows, the cash
a bucket of its own, weights adding up to 1; an empty portfolio is its cash alone, another
user's portfolio a 404; GetStock shows the profile. Over Alpha Vantage (the fake), each
holding's OVERVIEW is asked once and kept, and one the provider has none of is Unknown."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.fakes.alpha_vantage import API_KEY, FakeAlphaVantage
from tests.integration.portfolio_harness import (
    PortfolioService,
    StartPortfolio,
)
from tests.rpc_errors import expect_error, fields

D = Decimal
Metadata = tuple[tuple[str, str], ...]
Rows = list[tuple[str, str, str, list[str], bool]]

IT = "Information Technology"
US = "United States"


async def exposure(s: PortfolioService, who: Metadata, portfolio_id: str) -> pb.GetExposureResponse:
    reply: pb.GetExposureResponse = await s.stub.GetExposure(
        pb.GetExposureRequest(portfolio_id=portfolio_id), metadata=who
    )
    return reply


async def shown(s: PortfolioService, who: Metadata, portfolio_id: str) -> pb.Portfolio:
    reply: pb.GetPortfolioResponse = await s.stub.GetPortfolio(
        pb.GetPortfolioRequest(id=portfolio_id), metadata=who
    )
    return reply.portfolio


def rows(buckets: object) -> Rows:
    return [(b.name, b.value, b.weight, list(b.symbols), b.cash) for b in buckets]  # type: ignore[attr-defined]


def values_by(portfolio: pb.Portfolio, group: dict[str, str]) -> dict[str, Decimal]:
    """The positions' market values as GetPortfolio shows them, added up per group."""
    found: dict[str, Decimal] = defaultdict(Decimal)
    for position in portfolio.positions:
        found[group[position.symbol]] += D(position.market_value)
    return dict(found)


async def test_holdings_by_sector_country_type_and_currency_are_getportfolios_values(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="USD")
    await s.trade(who, p.id, "deposit", "20000")
    for symbol, quantity in [("AAPL", "10"), ("MSFT", "5"), ("JNJ", "7"), ("SPY", "3")]:
        await s.trade(who, p.id, "buy", quantity, "100", symbol=symbol)
    reply = await exposure(s, who, p.id)
    portfolio = await shown(s, who, p.id)

    assert (reply.portfolio_id, reply.currency) == (p.id, "USD")
    # Whole shares at whole-cent prices: the positions and the cash add up to the total value.
    assert reply.total_value == portfolio.total_value
    sector = {"AAPL": IT, "MSFT": IT, "JNJ": "Health Care", "SPY": "Diversified"}
    by_sector = values_by(portfolio, sector)
    expected = [(name, value, False) for name, value in by_sector.items()]
    expected.append(("Cash", D(portfolio.cash), True))
    expected.sort(key=lambda e: (-e[1], e[2], e[0]))
    assert [(b.name, D(b.value), b.cash) for b in reply.sectors] == expected
    value_of = {pos.symbol: D(pos.market_value) for pos in portfolio.positions}
    for b in reply.sectors:
        assert list(b.symbols) == sorted(
            (sym for sym in value_of if sector[sym] == b.name), key=lambda x: (-value_of[x], x)
        )
    assert [(b.name, D(b.value)) for b in reply.asset_types] == sorted(
        [
            ("Stock", value_of["AAPL"] + value_of["MSFT"] + value_of["JNJ"]),
            ("Cash", D(portfolio.cash)),
            ("ETF", value_of["SPY"]),
        ],
        key=lambda e: -e[1],
    )
    holdings = sum(value_of.values(), D(0))
    assert [(b.name, D(b.value)) for b in reply.countries] == sorted(
        [(US, holdings), ("Cash", D(portfolio.cash))], key=lambda e: -e[1]
    )
    assert [(b.name, D(b.value)) for b in reply.currencies] == sorted(
        [("USD", holdings), ("Cash", D(portfolio.cash))], key=lambda e: -e[1]
    )
    for breakdown in (reply.sectors, reply.countries, reply.asset_types, reply.currencies):
        assert sum(D(b.value) for b in breakdown) == D(portfolio.total_value)
        assert sum(D(b.weight) for b in breakdown) == 1
        assert all(len(b.weight.split(".")[1]) == 6 for b in breakdown)
        assert [D(b.value) for b in breakdown] == sorted(
            (D(b.value) for b in breakdown), reverse=True
        )


async def test_a_listing_in_another_currency_counts_at_its_converted_value(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="USD")
    await s.trade(who, p.id, "buy", "3", "180.07", symbol="SAP")
    await s.trade(who, p.id, "buy", "2.5", "190.01", symbol="AAPL")
    reply = await exposure(s, who, p.id)
    portfolio = await shown(s, who, p.id)
    value_of = {pos.symbol: pos.market_value for pos in portfolio.positions}
    cash = portfolio.cash
    assert rows(reply.currencies) == sorted(
        [
            ("EUR", value_of["SAP"], reply.currencies[0].weight, ["SAP"], False),
            ("USD", value_of["AAPL"], reply.currencies[1].weight, ["AAPL"], False),
            ("Cash", cash, reply.currencies[2].weight, [], True),
        ],
        key=lambda r: -D(r[1]),
    )
    assert [(b.name, b.value, list(b.symbols)) for b in reply.countries][:2] == sorted(
        [("Germany", value_of["SAP"], ["SAP"]), (US, value_of["AAPL"], ["AAPL"])],
        key=lambda r: -D(r[1]),
    )
    assert [(b.name, list(b.symbols)) for b in reply.sectors] == [
        (IT, ["SAP", "AAPL"]),
        ("Cash", []),
    ]
    assert D(reply.total_value) == D(value_of["SAP"]) + D(value_of["AAPL"]) + D(cash)
    # The positions are rounded one by one: a cent apart per position from the total at most.
    assert abs(D(reply.total_value) - D(portfolio.total_value)) <= D("0.02")


async def test_an_empty_portfolio_is_its_cash_alone(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, funded = await s.user_with_portfolio(initial_cash="1000")
    reply = await exposure(s, who, funded.id)
    assert reply.total_value == "1000.00"
    for breakdown in (reply.sectors, reply.countries, reply.asset_types, reply.currencies):
        assert rows(breakdown) == [("Cash", "1000.00", "1.000000", [], True)]
    empty = await s.portfolio(who, "Nothing")
    reply = await exposure(s, who, empty.id)
    assert (reply.total_value, rows(reply.sectors)) == ("0.00", [("Cash", "0.00", "", [], True)])


async def test_another_users_portfolio_is_not_found_and_a_blank_id_is_named(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    _, theirs = await s.user_with_portfolio()
    who = await s.user()
    await expect_error(exposure(s, who, theirs.id), grpc.StatusCode.NOT_FOUND)
    error = await expect_error(exposure(s, who, "  "), grpc.StatusCode.INVALID_ARGUMENT)
    assert fields(error) == ["portfolioId"]


async def test_get_stock_shows_the_profile(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who = await s.user()
    stock = (await s.stub.GetStock(pb.GetStockRequest(symbol="nesn"), metadata=who)).stock
    assert (stock.symbol, stock.currency, stock.sector, stock.industry) == (
        "NESN",
        "CHF",
        "Consumer Staples",
        "Packaged Foods & Meats",
    )
    assert (stock.country, stock.asset_type) == ("Switzerland", "Stock")
    etf = (await s.stub.GetStock(pb.GetStockRequest(symbol="QQQ"), metadata=who)).stock
    assert (etf.sector, etf.asset_type) == ("Diversified", "ETF")


async def test_over_alpha_vantage_each_overview_is_asked_once_and_one_missing_is_unknown(
    start_portfolio: StartPortfolio,
) -> None:
    async with (
        FakeAlphaVantage() as fake,
        start_portfolio(
            USE_MOCK_PRICES="false",
            ALPHA_VANTAGE_API_KEY=API_KEY,
            ALPHA_VANTAGE_URL=fake.url,
            # The free tier's 5 a minute would be spent by the trades' quotes and searches.
            ALPHA_VANTAGE_PER_MINUTE="100",
            ALPHA_VANTAGE_PER_DAY="100",
        ) as s,
    ):
        fake.listings["IBM"].profile = None  # the provider answers `{}`
        who, p = await s.user_with_portfolio()
        await s.trade(who, p.id, "buy", "2", "180", symbol="AAPL")
        await s.trade(who, p.id, "buy", "1", "370", symbol="MSFT")
        await s.trade(who, p.id, "buy", "3", "160", symbol="IBM")
        first = await exposure(s, who, p.id)
        again = await exposure(s, who, p.id)
        assert sorted(r.params["symbol"] for r in fake.calls("OVERVIEW")) == ["AAPL", "IBM", "MSFT"]
        assert rows(again.sectors) == rows(first.sectors)
        portfolio = await shown(s, who, p.id)
        value_of = {pos.symbol: pos.market_value for pos in portfolio.positions}
        assert [(b.name, b.value, list(b.symbols)) for b in first.sectors] == [
            ("Technology", str(D(value_of["MSFT"]) + D(value_of["AAPL"])), ["MSFT", "AAPL"]),
            ("Unknown", value_of["IBM"], ["IBM"]),
            ("Cash", "0.00", []),
        ]
        assert [(b.name, list(b.symbols)) for b in first.countries] == [
            (US, ["MSFT", "AAPL"]),
            ("Unknown", ["IBM"]),
            ("Cash", []),
        ]
        assert [b.name for b in first.asset_types] == ["Stock", "Unknown", "Cash"]
        assert [(b.name, list(b.symbols)) for b in first.currencies] == [
            ("USD", ["IBM", "MSFT", "AAPL"]),
            ("Cash", []),
        ]
        stock = (await s.stub.GetStock(pb.GetStockRequest(symbol="AAPL"), metadata=who)).stock
        assert (stock.sector, stock.industry, stock.country, stock.asset_type) == (
            "Technology",
            "Electronic Computers",
            US,
            "Stock",
        )
        assert len(fake.calls("OVERVIEW")) == 3, "GetStock's profile is the one kept"
