"""The overview of all of a user's portfolios through the real portfolio service (gRPC, SQLite
and PostgreSQL), against what GetPortfolio and GetFxRate say.

Rounding, as the overview states it: every money figure is the sum, over the portfolios, of the
portfolio's figure as GetPortfolio shows it (to the cent, in its currency) times the rate the
overview lists for its currency, each product rounded half-even to the cent; a holding's
figures likewise from each position's; a gain is the difference of the figures beside it. The
tests below recompute each figure that way from the other RPCs' answers, so they agree to the
cent, exactly. The market is held still (the harness), so the reads see the same prices."""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb
from stockfolio.users.v1 import users_pb2

from services.runtime.auth import bearer
from tests.integration.portfolio_harness import (
    PASSWORD,
    Metadata,
    PortfolioService,
)
from tests.rpc_errors import expect_error, fields
from tests.utc_days import one_utc_day

D = Decimal
MONEY: tuple[str, ...] = (
    "total_value",
    "cash",
    "total_cost",
    "cost_basis",
    "realized_gain",
    "unrealized_gain",
    "dividends",
    "fees",
)


def cent(value: Decimal) -> Decimal:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)


async def overview(
    s: PortfolioService, who: Metadata, currency: str = ""
) -> pb.GetOverviewResponse:
    reply: pb.GetOverviewResponse = await s.stub.GetOverview(
        pb.GetOverviewRequest(currency=currency), metadata=who
    )
    return reply


async def four_portfolios(s: PortfolioService, who: Metadata) -> list[str]:
    """A dollar portfolio with gains, fees and a dividend holding a euro listing too, a euro
    paper portfolio holding a dollar listing, pounds in cash only, yen in a yen listing."""
    growth = await s.portfolio(who, "Growth", currency="USD")
    await s.trade(who, growth.id, "deposit", "10000")
    await s.trade(who, growth.id, "buy", "10", "189.505", symbol="AAPL", fees="1.25")
    await s.trade(who, growth.id, "sell", "2", "201.333", symbol="AAPL", fees="0.5")
    await s.trade(who, growth.id, "buy", "3", "180.07", symbol="SAP")
    await s.trade(who, growth.id, "buy", "20", "60.333", symbol="KO")
    await s.trade(who, growth.id, "dividend", "20", "0.485", symbol="KO")
    europa = await s.portfolio(
        who, "Europa", currency="EUR", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="5000"
    )
    await s.trade(who, europa.id, "buy", "4", "181.11", symbol="SAP", fees="0.99")
    await s.trade(who, europa.id, "buy", "2.5", "190.01", symbol="AAPL")
    pounds = await s.portfolio(who, "Pounds", currency="GBP")
    await s.trade(who, pounds.id, "deposit", "1234.567")
    tokyo = await s.portfolio(who, "Tokyo", currency="JPY")
    await s.trade(who, tokyo.id, "buy", "100", "3150.5", symbol="7203")
    return [growth.id, europa.id, pounds.id, tokyo.id]


async def assert_overview_is_the_portfolios_at_the_listed_rates(
    s: PortfolioService, who: Metadata, ids: list[str], currency: str
) -> pb.GetOverviewResponse:
    seen = await overview(s, who, currency)
    shown = [
        (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=i), metadata=who)).portfolio
        for i in ids
    ]
    # The rates: once per currency converted, each what GetFxRate says of the same pair now.
    rates = {getattr(r, "from"): D(r.rate) for r in seen.rates}
    assert sorted(rates) == sorted({p.currency for p in shown} - {currency})
    for listed in seen.rates:
        asked = pb.GetFxRateRequest(to=currency, **{"from": getattr(listed, "from")})
        fx = await s.stub.GetFxRate(asked, metadata=who)
        assert (listed.to, listed.rate, listed.date, listed.source) == (
            fx.to,
            fx.rate,
            fx.date,
            fx.source,
        )
    rates[currency] = D(1)

    def converted(p: pb.Portfolio, figure: str) -> Decimal:
        return cent(D(getattr(p, figure)) * rates[p.currency])

    assert seen.currency == currency
    for figure in MONEY:
        expected = sum((converted(p, figure) for p in shown), D(0))
        assert D(getattr(seen.totals, figure)) == expected, figure
    totals = seen.totals
    assert D(totals.total_gain_loss) == D(totals.total_value) - D(totals.total_cost)
    assert totals.total_gain_loss_percent == str(
        cent(D(totals.total_gain_loss) / D(totals.total_cost) * 100)
    )

    # One row per portfolio, oldest first, its value as GetPortfolio shows it and converted.
    assert [(r.id, r.name, r.kind, r.currency, r.local_value) for r in seen.portfolios] == [
        (p.id, p.name, p.kind, p.currency, p.total_value) for p in shown
    ]
    for row, p in zip(seen.portfolios, shown, strict=True):
        assert D(row.fx_rate) == rates[p.currency]
        assert D(row.value) == converted(p, "total_value")
    assert sum(D(r.value) for r in seen.portfolios) == D(totals.total_value)
    assert sum(D(r.weight) for r in seen.portfolios) == 1

    # The holdings: each symbol's positions across the portfolios, converted position by
    # position; highest value first.
    quantity: dict[str, Decimal] = defaultdict(Decimal)
    value: dict[str, Decimal] = defaultdict(Decimal)
    basis: dict[str, Decimal] = defaultdict(Decimal)
    holders: dict[str, int] = defaultdict(int)
    for p in shown:
        for position in p.positions:
            quantity[position.symbol] += D(position.quantity)
            value[position.symbol] += cent(D(position.market_value) * rates[p.currency])
            basis[position.symbol] += cent(D(position.cost_basis) * rates[p.currency])
            holders[position.symbol] += 1
    assert [h.symbol for h in seen.holdings] == sorted(value, key=lambda s: (-value[s], s))
    for h in seen.holdings:
        assert (D(h.quantity), D(h.market_value), D(h.cost_basis)) == (
            quantity[h.symbol],
            value[h.symbol],
            basis[h.symbol],
        ), h.symbol
        assert D(h.unrealized_gain) == D(h.market_value) - D(h.cost_basis)
        assert h.portfolio_count == holders[h.symbol]
    # The allocation: the holdings, then the cash, adding up to 1.
    assert [(a.name, a.value) for a in seen.allocation] == [
        *((h.symbol, h.market_value) for h in seen.holdings),
        ("cash", totals.cash),
    ]
    assert [a.weight for a in seen.allocation[:-1]] == [h.weight for h in seen.holdings]
    assert sum(D(a.weight) for a in seen.allocation) == 1
    return seen


@one_utc_day
async def test_the_overview_is_each_portfolios_figures_at_the_listed_rates(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who = await s.user()
    ids = await four_portfolios(s, who)
    in_euros = await assert_overview_is_the_portfolios_at_the_listed_rates(s, who, ids, "EUR")
    assert [getattr(r, "from") for r in in_euros.rates] == ["GBP", "JPY", "USD"]
    # 100 Toyota at 3,150 yen, 10.5 AAPL at 189.50 dollars, 7 SAP at 182.40 euros, 20 KO at
    # 62.40 dollars (the simulated market's opening prices), by their value in euros.
    assert [h.symbol for h in in_euros.holdings] == ["7203", "AAPL", "SAP", "KO"]
    sap = next(h for h in in_euros.holdings if h.symbol == "SAP")
    assert (sap.quantity, sap.portfolio_count, sap.currency, sap.local_price) == (
        "7",
        2,
        "EUR",
        "182.40",
    )
    # Each currency in turn: the same portfolios, the same rule.
    for currency in ("USD", "GBP", "JPY", "CHF"):
        await assert_overview_is_the_portfolios_at_the_listed_rates(s, who, ids, currency)

    # A portfolio without a stored book (data from before it) is replayed, as GetPortfolio
    # replays it: the same figures.
    await s.forget_stored_books()
    again = await assert_overview_is_the_portfolios_at_the_listed_rates(s, who, ids, "EUR")
    assert again.totals == in_euros.totals


async def test_the_currency_is_usd_unless_asked_in_any_case_and_an_unknown_one_is_refused(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR", initial_cash="100")
    default = await overview(s, who)
    assert default.currency == "USD"
    assert [getattr(r, "from") for r in default.rates] == ["EUR"]
    assert (await overview(s, who, " eur ")).currency == "EUR"
    assert (await overview(s, who, " eur ")).totals.total_value == "100.00"
    for bad in ("XYZ", "usdollars", "€"):
        refused = await expect_error(overview(s, who, bad), grpc.StatusCode.INVALID_ARGUMENT)
        assert fields(refused) == ["currency"], bad
    assert p.currency == "EUR"


async def test_only_the_callers_own_portfolios_an_admins_too_and_none_is_zeros(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    # The first user registered is an admin.
    first = await s.users.Register(
        users_pb2.RegisterRequest(email="boss@example.com", password=PASSWORD)
    )
    assert users_pb2.ROLE_ADMIN in first.user.roles
    admin: Metadata = (bearer(first.tokens.access_token),)
    ann, ann_id = await s.account()
    bob = await s.user()
    admins = await s.portfolio(admin, "Boss", initial_cash="1", kind=pb.PORTFOLIO_KIND_PAPER)
    anns = [
        await s.portfolio(ann, "A1", kind=pb.PORTFOLIO_KIND_PAPER, initial_cash="1000"),
        await s.portfolio(ann, "A2", currency="GBP"),
    ]
    await s.trade(ann, anns[1].id, "buy", "5", "27.85", symbol="SHEL")

    seen_by_ann = await overview(s, ann)
    assert [r.id for r in seen_by_ann.portfolios] == [p.id for p in anns]
    seen_by_admin = await overview(s, admin)
    assert [r.id for r in seen_by_admin.portfolios] == [admins.id]
    assert (seen_by_admin.totals.total_value, list(seen_by_admin.holdings)) == ("1.00", [])

    nothing = await overview(s, bob, "JPY")
    assert nothing.currency == "JPY"
    assert nothing.totals == pb.OverviewTotals(
        total_value="0.00",
        cash="0.00",
        total_cost="0.00",
        total_gain_loss="0.00",
        total_gain_loss_percent="",
        cost_basis="0.00",
        realized_gain="0.00",
        unrealized_gain="0.00",
        dividends="0.00",
        fees="0.00",
    )
    assert list(nothing.portfolios) == list(nothing.holdings) == []
    assert list(nothing.allocation) == list(nothing.rates) == []
    assert ann_id not in {r.id for r in seen_by_admin.portfolios}


@pytest.mark.parametrize("stored", [True, False], ids=["stored-books", "replayed"])
async def test_the_overview_reads_a_fixed_number_of_statements_whatever_the_count(
    portfolio_service: PortfolioService,
    statements: list[str],
    stored: bool,
) -> None:
    s = portfolio_service
    who = await s.user()
    counts = []
    for many in (2, 9):
        while len((await overview(s, who)).portfolios) < many:
            made = await s.portfolio(who, currency="EUR", initial_cash="10")
            await s.trade(who, made.id, "buy", "1", "60", symbol="KO")
        if not stored:
            await s.forget_stored_books()
        statements.clear()
        await overview(s, who)
        counts.append([x.split()[0] for x in statements if x.split()[0] == "SELECT"])
    # The portfolios and their books; without stored books, also every trade and every split
    # of them in one statement each.
    assert counts[0] == counts[1] == ["SELECT"] * (2 if stored else 4), counts
