"""Target allocations and rebalancing through the real portfolio service (gRPC, SQLite and
PostgreSQL): targets replaced and read back, the suggested trades at the simulated market's
opening prices (AAPL 189.50, MSFT 415.30, KO 62.40 USD; SAP 182.40 EUR), whole and fractional,
with extra cash, a holding without a target sold off, a target without a price, a EUR portfolio
holding a USD listing, and the refusals (bad targets, another user's portfolio)."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import grpc
import pytest
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    rebalance,
    set_targets,
    targets,
)
from tests.rpc_errors import violations

D = Decimal
BUY = pb.TRADE_SIDE_BUY
SELL = pb.TRADE_SIDE_SELL
NONE = pb.TRADE_SIDE_UNSPECIFIED
EIGHT = D("0.00000001")


def money(value: Decimal) -> str:
    return str(value.quantize(D("0.01"), rounding=ROUND_HALF_EVEN))


def by_symbol(reply: pb.GetRebalanceResponse) -> dict[str, pb.RebalanceLine]:
    return {line.symbol: line for line in reply.lines}


async def sixty_forty(s: PortfolioService) -> tuple[Metadata, str]:
    """10,000 deposited: 30 AAPL (5,685.00) and 5 MSFT (2,076.50), 2,238.50 in cash; targets
    MSFT 60 %, AAPL 40 %."""
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "deposit", "10000")
    await s.trade(who, p.id, "buy", "30", "189.50", symbol="AAPL")
    await s.trade(who, p.id, "buy", "5", "415.30", symbol="MSFT")
    await set_targets(s, who, p.id, ("msft", "60"), ("AAPL", "40.00"))
    return who, p.id


async def test_targets_are_replaced_whole_and_read_back_in_their_order(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    empty = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=who
    )
    assert (list(empty.targets), empty.cash_weight) == ([], "100")
    kept = await set_targets(s, who, p.id, (" spy ", "55.5"), ("brk.b", "30.2500"))
    assert [(t.symbol, t.weight) for t in kept.targets] == [("SPY", "55.5"), ("BRK.B", "30.25")]
    assert (kept.portfolio_id, kept.cash_weight) == (p.id, "14.25")
    await set_targets(s, who, p.id, ("QQQ", "100"))
    read = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=who
    )
    assert [(t.symbol, t.weight) for t in read.targets] == [("QQQ", "100")]
    assert read.cash_weight == "0"
    await set_targets(s, who, p.id)
    cleared = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=who
    )
    assert (list(cleared.targets), cleared.cash_weight) == ([], "100")


async def test_a_sixty_forty_target_sells_the_overweight_and_buys_with_the_proceeds(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, portfolio_id = await sixty_forty(s)
    reply = await rebalance(s, who, portfolio_id)
    assert (reply.currency, reply.total_value, reply.cash, reply.extra_cash) == (
        "USD",
        "10000.00",
        "2238.50",
        "0.00",
    )
    assert (reply.cash_weight, reply.target_cash_weight, reply.fractional) == ("22.38", "0", False)
    assert [line.symbol for line in reply.lines] == ["MSFT", "AAPL"]
    msft, aapl = reply.lines
    # AAPL: 5,685 against a target of 4,000: 1,685 / 189.50 = 8.89 -> 8 whole shares sold.
    assert (aapl.quantity, aapl.value, aapl.weight, aapl.target_weight, aapl.drift) == (
        "30",
        "5685.00",
        "56.85",
        "40",
        "16.85",
    )
    assert (aapl.side, aapl.trade_quantity, aapl.trade_value, aapl.reason) == (
        SELL,
        "8",
        "1516.00",
        "",
    )
    assert (aapl.price, aapl.currency, aapl.local_price, aapl.fx_rate) == (
        "189.50",
        "USD",
        "189.50",
        "1",
    )
    # MSFT wants 3,923.50 more, but cash and proceeds are 3,754.50: 9 shares (3,737.70).
    assert (msft.value, msft.weight, msft.target_weight, msft.drift) == (
        "2076.50",
        "20.76",  # 20.765, half-even
        "60",
        "-39.24",
    )
    assert (msft.side, msft.trade_quantity, msft.trade_value) == (BUY, "9", "3737.70")
    assert msft.weight_after == "58.14"  # (2,076.50 + 3,737.70) / 10,000
    assert aapl.weight_after == "41.69"  # 22 x 189.50 / 10,000
    assert (reply.cash_after, reply.cash_weight_after) == ("16.80", "0.17")


async def test_fractional_quantities_spend_the_cash_to_the_eighth_place_and_no_further(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, portfolio_id = await sixty_forty(s)
    reply = await rebalance(s, who, portfolio_id, fractional=True)
    msft, aapl = reply.lines
    sold = (D(1685) / D("189.50")).quantize(EIGHT, rounding=ROUND_DOWN)
    assert (aapl.side, D(aapl.trade_quantity)) == (SELL, sold)
    assert sold == D("8.89182058")
    budget = D("2238.50") + sold * D("189.50")
    bought = (budget / D("415.30")).quantize(EIGHT, rounding=ROUND_DOWN)
    assert (msft.side, D(msft.trade_quantity)) == (BUY, bought)
    assert msft.trade_value == money(bought * D("415.30"))
    left = budget - bought * D("415.30")
    assert D(0) <= left < D("415.30") * EIGHT
    assert (reply.cash_after, reply.fractional) == (money(left), True)


async def test_extra_cash_is_invested_with_the_rest(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, portfolio_id = await sixty_forty(s)
    reply = await rebalance(s, who, portfolio_id, cash="1000")
    assert (reply.total_value, reply.cash, reply.extra_cash) == ("11000.00", "2238.50", "1000.00")
    lines = by_symbol(reply)
    # AAPL: 5,685 - 4,400 = 1,285 over: 6 shares (1,137.00). MSFT: 4,523.50 under, and
    # 2,238.50 + 1,000 + 1,137 = 4,375.50 to spend: 10 shares (4,153.00).
    assert (lines["AAPL"].side, lines["AAPL"].trade_quantity) == (SELL, "6")
    assert (lines["AAPL"].weight, lines["AAPL"].drift) == ("51.68", "11.68")
    assert (lines["MSFT"].side, lines["MSFT"].trade_quantity, lines["MSFT"].trade_value) == (
        BUY,
        "10",
        "4153.00",
    )
    assert reply.cash_after == "222.50"


async def test_a_holding_without_a_target_is_sold_off_and_a_target_without_a_price_is_told(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "deposit", "5000")
    await s.trade(who, p.id, "buy", "10", "62.40", symbol="KO")
    await s.trade(who, p.id, "buy", "2.5", "189.50", symbol="AAPL")
    await set_targets(s, who, p.id, ("MSFT", "50"), ("ZZZZ", "10"))
    reply = await rebalance(s, who, p.id)
    assert [line.symbol for line in reply.lines] == ["MSFT", "ZZZZ", "AAPL", "KO"]
    msft, unpriced, aapl, ko = reply.lines
    # Whole shares, but a holding without a target goes whole, its half share too.
    assert (aapl.target_weight, aapl.side, aapl.trade_quantity, aapl.trade_value) == (
        "0",
        SELL,
        "2.5",
        "473.75",
    )
    assert (ko.side, ko.trade_quantity, ko.trade_value, ko.weight_after) == (
        SELL,
        "10",
        "624.00",
        "0.00",
    )
    assert (msft.side, msft.trade_quantity, msft.trade_value) == (BUY, "6", "2491.80")
    assert (unpriced.reason, unpriced.side, unpriced.price, unpriced.trade_quantity) == (
        "NO_PRICE",
        NONE,
        "",
        "",
    )
    assert (unpriced.value, unpriced.weight, unpriced.target_weight, unpriced.drift) == (
        "0.00",
        "0.00",
        "10",
        "-10.00",
    )
    assert reply.target_cash_weight == "40"
    # 3,902.25 + 473.75 + 624.00 - 2,491.80; the unpriced target's share stays in cash.
    assert reply.cash_after == "2508.20"
    # Nothing is recorded.
    assert await s.trade_count(who, p.id) == 3


async def test_a_euro_portfolio_values_and_buys_a_dollar_listing_at_todays_rate(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    await s.trade(who, p.id, "deposit", "10000")
    bought = await s.trade(who, p.id, "buy", "10", "189.50", symbol="AAPL")
    await set_targets(s, who, p.id, ("AAPL", "50"), ("SAP", "30"))
    reply = await rebalance(s, who, p.id)
    assert reply.currency == "EUR"
    aapl, sap = reply.lines
    then, now = D(bought.fx_rate), D(aapl.fx_rate)
    assert (aapl.currency, aapl.local_price) == ("USD", "189.50")
    assert now != 1
    price = D("189.50") * now
    cash = D(10000) - D(1895) * then
    total = cash + 10 * price
    assert (reply.cash, reply.total_value) == (money(cash), money(total))
    assert aapl.value == money(10 * price)
    shares = ((total / 2 - 10 * price) / price).quantize(D(1), rounding=ROUND_DOWN)
    assert shares > 0
    assert (aapl.side, D(aapl.trade_quantity), aapl.trade_value) == (
        BUY,
        shares,
        money(shares * price),
    )
    # SAP trades in euros: no conversion.
    sap_shares = (total * D("0.3") / D("182.40")).quantize(D(1), rounding=ROUND_DOWN)
    assert (sap.currency, sap.local_price, sap.fx_rate, sap.price) == (
        "EUR",
        "182.40",
        "1",
        "182.40",
    )
    assert (sap.side, D(sap.trade_quantity), sap.trade_value) == (
        BUY,
        sap_shares,
        money(sap_shares * D("182.40")),
    )
    assert reply.cash_after == money(cash - shares * price - sap_shares * D("182.40"))


@pytest.mark.parametrize(
    ("pairs", "field", "words"),
    [
        ([("AAPL", "60"), ("MSFT", "40.01")], "targets", "100.01, more than 100"),
        ([("AAPL", "10"), ("msft", "10"), ("aapl", "5")], "targets[2].symbol", "targets[0]"),
        ([("AAPL", "0")], "targets[0].weight", "greater than 0"),
        ([("AAPL", "10"), ("MSFT", "100.5")], "targets[1].weight", "at most 100"),
        ([("AAPL", "ten")], "targets[0].weight", "percentage"),
        ([("AAPL", "1.00001")], "targets[0].weight", "4 decimal places"),
        ([("AAPL", "-5")], "targets[0].weight", "percentage"),
        ([("AA PL", "5")], "targets[0].symbol", "letters"),
        ([(f"S{i}", "0.5") for i in range(101)], "targets", "no more than 100"),
    ],
)
async def test_bad_targets_are_refused_naming_the_row_and_keep_the_old_ones(
    portfolio_service: PortfolioService,
    pairs: list[tuple[str, str]],
    field: str,
    words: str,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await set_targets(s, who, p.id, ("SPY", "70"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await set_targets(s, who, p.id, *pairs)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = dict(violations(refused.value))
    assert field in found, found
    assert words in found[field]
    kept = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=who
    )
    assert [(t.symbol, t.weight) for t in kept.targets] == [("SPY", "70")]


async def test_bad_extra_cash_is_refused_naming_it(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    for bad in ("-1", "lots", "1e3"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rebalance(s, who, p.id, cash=bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in violations(refused.value)] == ["cash"]


async def test_another_users_portfolio_is_not_found_for_every_call(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    owner, p = await s.user_with_portfolio()
    await set_targets(s, owner, p.id, ("SPY", "70"))
    stranger = await s.user()
    calls = [
        s.stub.GetPortfolioTargets(
            pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=stranger
        ),
        s.stub.UpdatePortfolioTargets(
            pb.UpdatePortfolioTargetsRequest(portfolio_id=p.id, targets=targets(("QQQ", "5"))),
            metadata=stranger,
        ),
        s.stub.GetRebalance(pb.GetRebalanceRequest(portfolio_id=p.id), metadata=stranger),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    kept = await s.stub.GetPortfolioTargets(
        pb.GetPortfolioTargetsRequest(portfolio_id=p.id), metadata=owner
    )
    assert [(t.symbol, t.weight) for t in kept.targets] == [("SPY", "70")]
