"""Exposure (services/portfolio/exposure.py): holdings bucketed by sector, country, asset type
and currency at the values GetPortfolio shows, the cash a bucket of its own in each, highest
value first, weights adding up to exactly 1 (largest remainder), "Unknown" where a profile or
currency is missing; the simulated market's profiles and Alpha Vantage's names as shown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.portfolio.alpha_vantage import _named
from services.portfolio.domain import CostMethod, Position
from services.portfolio.exposure import CASH, Bucket, Holding, breakdown, exposure_of
from services.portfolio.mock_market import LISTINGS, MockMarket
from services.portfolio.mock_profiles import PROFILES
from services.portfolio.profiles import UNKNOWN, StockProfile, known, profiles_of
from services.runtime.errors import NotFound

D = Decimal


def position(symbol: str, market_value: str) -> Position:
    value = D(market_value)
    return Position(
        symbol, CostMethod.FIFO, D(1), value, value, value, value, D(0), D(0), D(0), D(0), None, ()
    )


def profile(
    symbol: str, sector: str, country: str = "United States", kind: str = "Stock"
) -> StockProfile:
    return StockProfile(symbol, sector, "Some Industry", country, kind)


def named(buckets: list[Bucket]) -> list[tuple[str, str, str, tuple[str, ...], bool]]:
    return [
        (b.name, str(b.value), "" if b.weight is None else str(b.weight), b.symbols, b.is_cash)
        for b in buckets
    ]


def test_holdings_are_bucketed_by_sector_country_type_and_currency_with_cash_its_own() -> None:
    found = exposure_of(
        "p-1",
        "USD",
        [
            position("AAPL", "600.004"),  # shown as 600.00
            position("MSFT", "300.005"),  # shown as 300.00 (half-even)
            position("JNJ", "50"),
            position("SAP", "100.015"),  # shown as 100.02
            position("SPY", "200"),
        ],
        D("249.995"),  # shown as 250.00
        {
            "AAPL": profile("AAPL", "Information Technology"),
            "MSFT": profile("MSFT", "Information Technology"),
            "JNJ": profile("JNJ", "Health Care"),
            "SAP": profile("SAP", "Information Technology", "Germany"),
            "SPY": profile("SPY", "Diversified", kind="ETF"),
        },
        {"AAPL": "USD", "MSFT": "USD", "JNJ": "USD", "SAP": "EUR", "SPY": "USD"},
    )
    assert (found.portfolio_id, found.currency, found.total_value) == ("p-1", "USD", D("1500.02"))
    assert named(found.sectors) == [
        ("Information Technology", "1000.02", "0.666671", ("AAPL", "MSFT", "SAP"), False),
        (CASH, "250.00", "0.166664", (), True),
        ("Diversified", "200.00", "0.133332", ("SPY",), False),
        ("Health Care", "50.00", "0.033333", ("JNJ",), False),
    ]
    assert [(b.name, str(b.value), b.symbols) for b in found.countries] == [
        ("United States", "1150.00", ("AAPL", "MSFT", "SPY", "JNJ")),
        (CASH, "250.00", ()),
        ("Germany", "100.02", ("SAP",)),
    ]
    assert [(b.name, str(b.value)) for b in found.asset_types] == [
        ("Stock", "1050.02"),
        (CASH, "250.00"),
        ("ETF", "200.00"),
    ]
    assert [(b.name, str(b.value), b.symbols) for b in found.currencies] == [
        ("USD", "1150.00", ("AAPL", "MSFT", "SPY", "JNJ")),
        (CASH, "250.00", ()),
        ("EUR", "100.02", ("SAP",)),
    ]
    for buckets in (found.sectors, found.countries, found.asset_types, found.currencies):
        assert sum(b.value for b in buckets) == found.total_value
        assert sum(b.weight or 0 for b in buckets) == 1


def test_a_holding_without_a_profile_or_a_listed_currency_counts_under_unknown() -> None:
    found = exposure_of(
        "p-1",
        "EUR",
        [position("ZZZZ", "10"), position("AAPL", "30"), position("QQQQ", "5")],
        D("0"),
        {"AAPL": profile("AAPL", "Information Technology"), "QQQQ": StockProfile("QQQQ")},
        {"AAPL": "USD"},
    )
    assert named(found.sectors) == [
        ("Information Technology", "30.00", "0.666667", ("AAPL",), False),
        (UNKNOWN, "15.00", "0.333333", ("ZZZZ", "QQQQ"), False),
        (CASH, "0.00", "0.000000", (), True),
    ]
    assert [(b.name, b.symbols) for b in found.currencies] == [
        ("USD", ("AAPL",)),
        (UNKNOWN, ("ZZZZ", "QQQQ")),
        (CASH, ()),
    ]
    # A blank name from a source is Unknown too, in the same bucket.
    blank = breakdown([Holding("A", D(1), StockProfile("A"), "")], D(0), lambda h: h.currency)
    assert [(b.name, b.symbols) for b in blank] == [(UNKNOWN, ("A",)), (CASH, ())]


def test_an_empty_portfolio_is_its_cash_alone_and_one_worth_nothing_has_no_weights() -> None:
    found = exposure_of("p-1", "USD", [], D("1000"), {}, {})
    for buckets in (found.sectors, found.countries, found.asset_types, found.currencies):
        assert named(buckets) == [(CASH, "1000.00", "1.000000", (), True)]
    nothing = exposure_of("p-1", "USD", [], D("0"), {}, {})
    assert named(nothing.sectors) == [(CASH, "0.00", "", (), True)]
    assert nothing.total_value == 0


def test_weights_add_up_to_exactly_one_where_each_rounded_alone_would_not() -> None:
    # Three thirds: 0.333333 each would add up to 0.999999; the largest remainder gives one
    # of them the missing millionth.
    holdings = [
        Holding(s, D(1), profile(s, sector), "USD") for s, sector in [("A", "X"), ("B", "Y")]
    ]
    found = breakdown(holdings, D(1), lambda h: h.profile.sector)
    assert sorted(str(b.weight) for b in found) == ["0.333333", "0.333333", "0.333334"]
    assert sum(b.weight or 0 for b in found) == 1


def test_equal_values_are_ordered_by_name_and_the_cash_after_holdings() -> None:
    holdings = [Holding(s, D(5), profile(s, s + " sector"), "USD") for s in ("B", "A")]
    found = breakdown(holdings, D(5), lambda h: h.profile.sector)
    assert [b.name for b in found] == ["A sector", "B sector", CASH]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Energy", "Financials", "Health Care", ""]),
            st.decimals(min_value=0, max_value=10**9, places=2),
        ),
        max_size=12,
    ),
    st.decimals(min_value=0, max_value=10**9, places=2),
)
def test_any_breakdown_lists_each_holding_once_adds_up_and_weighs_exactly_one(
    rows: list[tuple[str, Decimal]], cash: Decimal
) -> None:
    holdings = [
        Holding(f"S{i}", value, profile(f"S{i}", sector), "USD")
        for i, (sector, value) in enumerate(rows)
    ]
    found = breakdown(holdings, cash, lambda h: h.profile.sector)
    assert sorted(s for b in found for s in b.symbols) == sorted(h.symbol for h in holdings)
    assert sum(b.value for b in found) == sum((h.value for h in holdings), cash)
    assert [b.value for b in found] == sorted((b.value for b in found), reverse=True)
    assert [b.name for b in found if b.is_cash] == [CASH]
    if sum(b.value for b in found) > 0:
        assert sum(b.weight or 0 for b in found) == 1
        assert all(b.weight is not None and b.weight >= 0 for b in found)
    else:
        assert all(b.weight is None for b in found)


def test_every_simulated_listing_has_its_profile() -> None:
    assert sorted(PROFILES) == sorted(listing.symbol for listing in LISTINGS)
    assert len(PROFILES) == 46
    assert {kind for *_, kind in PROFILES.values()} == {"Stock", "ETF"}


async def test_the_simulated_market_gives_profiles_and_unknown_where_it_cannot() -> None:
    market = MockMarket()
    assert await market.profile(" aapl ") == StockProfile(
        "AAPL",
        "Information Technology",
        "Technology Hardware, Storage & Peripherals",
        "United States",
        "Stock",
    )
    assert (await market.profile("SAP")).country == "Germany"
    assert (await market.profile("SPY")).asset_type == "ETF"
    with pytest.raises(NotFound):
        await market.profile("NOPE")
    found = await profiles_of(market, ["NOPE", "KO", "KO"])
    assert found == {
        "KO": StockProfile(
            "KO",
            "Consumer Staples",
            "Soft Drinks & Non-alcoholic Beverages",
            "United States",
            "Stock",
        ),
        "NOPE": StockProfile("NOPE", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN),
    }


def test_provider_names_are_title_cased_and_missing_ones_unknown() -> None:
    assert _named("LIFE SCIENCES") == "Life Sciences"
    assert _named("TRADE & SERVICES") == "Trade & Services"
    assert _named("USA") == "USA"
    assert _named("Technology") == "Technology"
    assert [_named(v) for v in ("None", "", "  ", "-", None, 3)] == [UNKNOWN] * 6
    assert known(" Energy ") == "Energy"
