"""The overview of all portfolios (services/portfolio/overview.py), without I/O: portfolios in
two currencies holding the same symbol worked by hand, cash only, none at all, and for any
portfolios the promises the figures keep (each the sum of the portfolios' shown figures times
their rates, each product to the cent; gains the differences of the figures beside them;
weights adding up to exactly 1)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.currencies import FxRate, Valuation
from services.portfolio.domain import Book, Side, Trade, parse_trade
from services.portfolio.overview import Figures, consolidate
from services.portfolio.overview_rpcs import overview_message
from services.portfolio.portfolios import Valued
from services.portfolio.prices import converted
from services.portfolio.records import Portfolio, PortfolioKind

D = Decimal
NOW = datetime(2025, 3, 14, 12, tzinfo=UTC)
AS_OF = NOW + timedelta(hours=1)
TODAY = NOW.date()


def trade(side: Side, symbol: str, quantity: str, price: str = "", fees: str = "") -> Trade:
    return parse_trade(side, symbol, quantity, price, fees, NOW - timedelta(days=30), now=NOW)


def valued(
    name: str,
    currency: str,
    trades: list[Trade],
    listed: dict[str, Valuation],
    kind: PortfolioKind = PortfolioKind.TRACKING,
    created: int = 0,
) -> Valued:
    """A portfolio in `currency` replayed from `trades` and valued at `listed` (each listing's
    price in its own currency and its rate into `currency`), as Portfolios values one."""
    when = NOW + timedelta(seconds=created)
    portfolio = Portfolio(f"id-{name}", "ann", name, "", currency, kind, when, when)
    book = Book.replay([_numbered(t, i) for i, t in enumerate(trades)])
    prices = converted(listed)
    return Valued(portfolio, book.totals(prices), book.positions(prices), listed)


def _numbered(t: Trade, sequence: int) -> Trade:
    return replace(t, sequence=sequence)


def rate(base: str, quote: str, value: str) -> FxRate:
    return FxRate(base, quote, D(value), TODAY, "mock")


def cent(value: Decimal) -> Decimal:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)


def test_two_currencies_holding_the_same_symbol_add_up_by_hand() -> None:
    # USD: 1,000 deposited, 2 AAPL at 100 with a fee of 1; AAPL now 150 USD.
    dollars = valued(
        "Dollars",
        "USD",
        [trade(Side.DEPOSIT, "", "1000"), trade(Side.BUY, "AAPL", "2", "100", "1")],
        {"AAPL": Valuation("USD", D(150), D(1))},
    )
    # EUR: 1 AAPL bought at 90 EUR (funded), 10.005 EUR deposited; AAPL now 150 USD at 0.9
    # EUR a dollar: 135 EUR. Value 145.005 shown 145.00, cost 100.005 shown 100.00 (half-even).
    euros = valued(
        "Euros",
        "EUR",
        [trade(Side.BUY, "AAPL", "1", "90"), trade(Side.DEPOSIT, "", "10.005")],
        {"AAPL": Valuation("USD", D(150), D("0.9"))},
        kind=PortfolioKind.PAPER,
        created=1,
    )
    eur_usd = rate("EUR", "USD", "1.0843")
    found = consolidate("USD", [dollars, euros], {"EUR": eur_usd}, AS_OF)

    # The euro portfolio's figures as shown, times 1.0843, each to the cent:
    # value 145.00 -> 157.2235 -> 157.22; cash 10.00 -> 10.843 -> 10.84; cost 100.00 -> 108.43;
    # cost basis 90.00 -> 97.587 -> 97.59; unrealized 135.00 - 90.00 = 45.00 -> 48.7935 -> 48.79.
    assert found.totals == Figures(
        total_value=D("1256.22"),  # 1,099.00 + 157.22
        cash=D("809.84"),  # 799.00 + 10.84
        total_cost=D("1108.43"),  # 1,000.00 + 108.43
        cost_basis=D("298.59"),  # 201.00 + 97.59
        realized_gain=D("0.00"),
        unrealized_gain=D("147.79"),  # 99.00 + 48.79
        dividends=D("0.00"),
        fees=D("1.00"),
    )
    assert found.totals.total_gain_loss == D("147.79")  # 1,256.22 - 1,108.43
    assert found.totals.total_return is not None
    assert cent(found.totals.total_return * 100) == D("13.33")

    assert [(r.name, r.currency, r.local_value, r.rate, r.value) for r in found.portfolios] == [
        ("Dollars", "USD", D("1099.00"), D(1), D("1099.00")),
        ("Euros", "EUR", D("145.00"), D("1.0843"), D("157.22")),
    ]
    assert sum(r.value for r in found.portfolios) == found.totals.total_value
    # 1,099.00 / 1,256.22 = 0.874846..., 157.22 / 1,256.22 = 0.125153...: adding up to 1.
    assert [r.weight for r in found.portfolios] == [D("0.874847"), D("0.125153")]
    assert [r.kind for r in found.portfolios] == [PortfolioKind.TRACKING, PortfolioKind.PAPER]

    (aapl,) = found.holdings
    # 300.00 + 135.00 x 1.0843 (146.3805 -> 146.38); cost 201.00 + 97.59.
    assert (aapl.symbol, aapl.quantity, aapl.portfolio_count) == ("AAPL", D(3), 2)
    assert (aapl.market_value, aapl.cost_basis, aapl.unrealized_gain) == (
        D("446.38"),
        D("298.59"),
        D("147.79"),
    )
    assert (aapl.currency, aapl.local_price) == ("USD", D(150))
    # The allocation: AAPL and the cash, shares of 1,256.22 that add up to 1.
    assert [(s.name, s.value, s.weight) for s in found.allocation] == [
        ("AAPL", D("446.38"), D("0.355336")),
        ("cash", D("809.84"), D("0.644664")),
    ]
    assert aapl.weight == D("0.355336")
    assert found.rates == [eur_usd]
    assert (found.currency, found.as_of) == ("USD", AS_OF)


def test_holdings_are_by_value_highest_first_and_count_the_portfolios_holding_them() -> None:
    usd = {s: Valuation("USD", D(p), D(1)) for s, p in (("AAPL", "10"), ("MSFT", "400"))}
    one = valued(
        "One", "USD", [trade(Side.BUY, "AAPL", "5", "10"), trade(Side.BUY, "MSFT", "1", "400")], usd
    )
    two = valued("Two", "USD", [trade(Side.BUY, "AAPL", "50", "10")], usd, created=1)
    found = consolidate("USD", [one, two], {}, AS_OF)
    assert [(h.symbol, h.market_value, h.portfolio_count) for h in found.holdings] == [
        ("AAPL", D("550.00"), 2),
        ("MSFT", D("400.00"), 1),
    ]
    # Nothing is converted: no rate is listed, each portfolio's rate is 1.
    assert found.rates == []
    assert [r.rate for r in found.portfolios] == [D(1), D(1)]


def test_cash_only_in_another_currency() -> None:
    pounds = valued("Pounds", "GBP", [trade(Side.DEPOSIT, "", "1000")], {})
    gbp_jpy = rate("GBP", "JPY", "191.237")
    found = consolidate("JPY", [pounds], {"GBP": gbp_jpy}, AS_OF)
    assert (found.totals.total_value, found.totals.cash, found.totals.total_cost) == (
        D("191237.00"),
        D("191237.00"),
        D("191237.00"),
    )
    assert found.totals.total_gain_loss == 0
    assert found.totals.total_return == 0
    assert found.holdings == []
    assert [(s.name, s.value, s.weight, s.is_cash) for s in found.allocation] == [
        ("cash", D("191237.00"), D(1), True)
    ]
    assert [(r.local_value, r.rate, r.value, r.weight) for r in found.portfolios] == [
        (D("1000.00"), D("191.237"), D("191237.00"), D(1))
    ]
    assert found.rates == [gbp_jpy]


def test_no_portfolios_is_zeros_and_empty_lists_on_the_wire() -> None:
    shown = overview_message(consolidate("EUR", [], {}, AS_OF))
    assert shown.currency == "EUR"
    assert shown.totals == pb.OverviewTotals(
        total_value="0.00",
        cash="0.00",
        total_cost="0.00",
        total_gain_loss="0.00",
        total_gain_loss_percent="",  # nothing put in: no percent of it
        cost_basis="0.00",
        realized_gain="0.00",
        unrealized_gain="0.00",
        dividends="0.00",
        fees="0.00",
    )
    assert (list(shown.portfolios), list(shown.holdings)) == ([], [])
    assert (list(shown.allocation), list(shown.rates)) == ([], [])
    assert shown.as_of.ToDatetime(tzinfo=UTC) == AS_OF


def test_empty_portfolios_have_no_weight_and_nothing_to_allocate() -> None:
    found = consolidate("USD", [valued("Empty", "USD", [], {})], {}, AS_OF)
    assert [(r.value, r.weight) for r in found.portfolios] == [(D("0.00"), None)]
    assert found.allocation == []
    shown = overview_message(found)
    assert shown.portfolios[0].weight == ""


def test_the_wire_states_each_figure_as_computed() -> None:
    dollars = valued(
        "Dollars",
        "USD",
        [trade(Side.DEPOSIT, "", "1000"), trade(Side.BUY, "AAPL", "2", "100", "1")],
        {"AAPL": Valuation("USD", D(150), D(1))},
    )
    euros = valued("Euros", "EUR", [trade(Side.DEPOSIT, "", "100")], {}, created=1)
    shown = overview_message(
        consolidate("USD", [dollars, euros], {"EUR": rate("EUR", "USD", "1.0843")}, AS_OF)
    )
    assert (shown.totals.total_value, shown.totals.total_gain_loss) == ("1207.43", "99.00")
    assert shown.totals.total_gain_loss_percent == "8.93"  # 99.00 / 1,108.43
    assert [(p.local_value, p.fx_rate, p.value, p.kind) for p in shown.portfolios] == [
        ("1099.00", "1", "1099.00", pb.PORTFOLIO_KIND_TRACKING),
        ("100.00", "1.0843", "108.43", pb.PORTFOLIO_KIND_TRACKING),
    ]
    (aapl,) = shown.holdings
    assert (aapl.quantity, aapl.market_value, aapl.unrealized_gain, aapl.local_price) == (
        "2",
        "300.00",
        "99.00",
        "150.00",
    )
    assert [(r.to, r.rate, r.date, r.source) for r in shown.rates] == [
        ("USD", "1.0843", TODAY.isoformat(), "mock")
    ]
    assert getattr(shown.rates[0], "from") == "EUR"


CURRENCIES = ("USD", "EUR", "JPY")
RATES = {"USD": D(1), "EUR": D("1.0843"), "JPY": D("0.006623")}
money = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=3)
portfolio_plans = st.lists(
    st.tuples(
        st.sampled_from(CURRENCIES),
        money,  # deposited
        st.lists(st.tuples(st.sampled_from(("AAA", "BBB")), money), max_size=2),  # buys of 1
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(portfolio_plans)
def test_every_figure_is_the_portfolios_shown_figures_converted_each_to_the_cent(
    plans: list[tuple[str, Decimal, list[tuple[str, Decimal]]]],
) -> None:
    listed = {"AAA": D("12.345"), "BBB": D("987.655")}  # USD listings
    found_valued = []
    for i, (currency, deposit, buys) in enumerate(plans):
        trades = [trade(Side.DEPOSIT, "", str(deposit))]
        trades += [trade(Side.BUY, s, "1", str(p)) for s, p in buys]
        into = D(1) / RATES[currency]  # a dollar in the portfolio's currency
        valuations = {s: Valuation("USD", p, into) for s, p in listed.items()}
        found_valued.append(valued(f"P{i}", currency, trades, valuations, created=i))
    rates = {c: rate(c, "USD", str(RATES[c])) for c in CURRENCIES if c != "USD"}
    found = consolidate("USD", found_valued, rates, AS_OF)

    shown = [Figures.shown(v) for v in found_valued]
    for name in ("total_value", "cash", "total_cost", "cost_basis", "unrealized_gain", "fees"):
        expected = sum(
            (
                cent(getattr(f, name) * RATES[v.portfolio.base_currency])
                for f, v in zip(shown, found_valued, strict=True)
            ),
            D(0),
        )
        assert getattr(found.totals, name) == expected, name
    assert sum((r.value for r in found.portfolios), D(0)) == found.totals.total_value
    weights = [r.weight for r in found.portfolios if r.weight is not None]
    assert not weights or sum(weights, D(0)) == 1
    assert not found.allocation or sum((s.weight for s in found.allocation), D(0)) == 1
    assert [h.market_value for h in found.holdings] == sorted(
        (h.market_value for h in found.holdings), reverse=True
    )
    # Holdings and cash are the total value but for a cent a portfolio (each rounded apart).
    allocated = sum((s.value for s in found.allocation), D(0))
    assert abs(allocated - found.totals.total_value) <= D("0.01") * 2 * len(found_valued)
    used = {v.portfolio.base_currency for v in found_valued} - {"USD"}
    assert [(r.base, r.quote) for r in found.rates] == [(c, "USD") for c in sorted(used)]


def test_positions_without_their_lots_have_the_same_figures() -> None:
    """The overview takes positions without lots (a stored book decodes them only when they are
    listed): nothing else differs."""
    trades = [trade(Side.BUY, "AAPL", "2", "100", "1"), trade(Side.BUY, "AAPL", "1", "130")]
    book = Book.replay([_numbered(t, i) for i, t in enumerate(trades)])
    resumed = Book.resume(book.state())
    with_lots = resumed.positions({"AAPL": D(150)})
    without = Book.resume(book.state()).positions({"AAPL": D(150)}, lots=False)
    assert [len(p.lots) for p in with_lots] == [2]
    assert without == [replace(p, lots=()) for p in with_lots]
