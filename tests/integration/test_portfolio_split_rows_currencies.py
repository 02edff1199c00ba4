"""The CSV round trip of splits in a euro portfolio of dollar stocks, with a split of
a symbol never traded and one before any trade; a split row's price converted into the
portfolio's currency as the trade rows' are (real server, SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, Decimal

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.wire_numbers import present_price
from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    export_text,
    import_csv,
    split,
    splits_of,
)
from tests.integration.split_rows import split_summary, summary, tables
from tests.rpc_errors import expect_error, violations
from tests.utc_days import noon


async def test_a_euro_portfolios_export_with_splits_imports_as_the_same_holdings(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    await split(s, who, p.id, "MSFT", "2023-01-03", 2, 1)  # before any trade
    await s.trade(who, p.id, "buy", "10", "187.4213", "AAPL", executed_at=noon(date(2024, 3, 15)))
    await split(s, who, p.id, "AAPL", "2024-04-01", 1, 3, "561.123457")
    await split(s, who, p.id, "KO", "2024-04-01", 3, 2)  # never traded
    await s.trade(who, p.id, "sell", "1", "600", "AAPL", executed_at=noon(date(2024, 4, 1)))
    await split(s, who, p.id, "AAPL", "2024-05-02", 7, 3, "250.5")

    downloaded = await export_text(s, who, p.id)
    rows, _ = tables(downloaded)
    sides = [(r["date"][:10], r["side"], r["symbol"], r["quantity"]) for r in rows]
    assert sides == [
        ("2023-01-03", "split", "MSFT", "2:1"),
        ("2024-03-15", "buy", "AAPL", "10"),
        ("2024-04-01", "split", "AAPL", "1:3"),
        ("2024-04-01", "split", "KO", "3:2"),
        ("2024-04-01", "sell", "AAPL", "1"),
        ("2024-05-02", "split", "AAPL", "7:3"),
    ]
    q = await s.portfolio(who, "Copy", currency="EUR")
    reply = await import_csv(s, who, q.id, downloaded)
    assert reply.imported == 2
    assert split_summary(await splits_of(s, who, q.id)) == split_summary(
        await splits_of(s, who, p.id)
    )
    assert await summary(s, who, q.id) == await summary(s, who, p.id)


async def rate(s: PortfolioService, who: Metadata, base: str, quote: str, day: str) -> Decimal:
    request = pb.GetFxRateRequest(to=quote, date=day, **{"from": base})
    return Decimal((await s.stub.GetFxRate(request, metadata=who)).rate)


def price_in(price: str, fx: Decimal) -> str:
    """A split's price converted, to a price's 6 places, as the wire writes a price."""
    return present_price((Decimal(price) * fx).quantize(Decimal("0.000001")))


def cash_for_a_third(held: int, price: Decimal) -> str:
    """The cash in lieu of the part of held / 3 shares below 8 places, at `price`."""
    fraction = Decimal(held) / 3 - (Decimal(held) / 3).quantize(Decimal("0.00000001"), ROUND_DOWN)
    return f"{(fraction * price).quantize(Decimal('0.01')):f}"


async def test_a_dollar_portfolios_split_imports_into_a_euro_one_at_its_days_rate(
    portfolio_service: PortfolioService,
) -> None:
    """A 1-for-3 of GE (a dollar stock) priced in a dollar portfolio: its row names no currency
    (the price is in the stock's own), and imported into a euro portfolio its price is
    converted at the rate of its day, as the trades' prices are at theirs; exported from there
    its row names EUR, and imported into a dollar portfolio it is converted back at that day's
    rate. At 300,000,000 a share the cash in lieu shows the conversion too (1.00 USD before)."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()  # USD
    await s.trade(who, p.id, "buy", "100", "10", "GE", executed_at=noon(date(2024, 1, 2)))
    await split(s, who, p.id, "GE", "2024-02-01", 1, 3, "300000000")
    (original,) = await splits_of(s, who, p.id)
    assert (original.price, original.cash_in_lieu) == ("300000000.00", "1.00")
    downloaded = await export_text(s, who, p.id)
    (row,) = [r for r in tables(downloaded)[0] if r["side"] == "split"]
    assert (row["price"], row["currency"]) == ("300000000.00", "")

    euros = await s.portfolio(who, "Euros", currency="EUR")
    checked = await import_csv(s, who, euros.id, downloaded, dry_run=True)
    usd_eur = await rate(s, who, "USD", "EUR", "2024-02-01")
    in_euros = price_in("300000000", usd_eur)
    assert usd_eur != 1 and Decimal(in_euros) != 300000000
    expected = ("GE", "2024-02-01", "1:3", in_euros, "100", "33.33333333")
    assert [(*x[:6], x[6]) for x in split_summary(list(checked.splits))] == [
        (*expected, cash_for_a_third(100, Decimal(in_euros)))
    ]
    await import_csv(s, who, euros.id, downloaded)
    (converted,) = await splits_of(s, who, euros.id)
    assert split_summary([converted]) == split_summary(list(checked.splits))
    (bought,) = checked.trades  # the trade at its own day's rate
    assert Decimal(bought.fx_rate) == await rate(s, who, "USD", "EUR", "2024-01-02")

    again = await export_text(s, who, euros.id)
    (row,) = [r for r in tables(again)[0] if r["side"] == "split"]
    assert (row["price"], row["currency"]) == (in_euros, "EUR")
    dollars = await s.portfolio(who, "Dollars")
    await import_csv(s, who, dollars.id, again)
    (back,) = await splits_of(s, who, dollars.id)
    eur_usd = await rate(s, who, "EUR", "USD", "2024-02-01")
    assert back.price == price_in(in_euros, eur_usd)
    # And into another euro portfolio, as it was: the round trip keeps the cash in lieu.
    copy = await s.portfolio(who, "Copy", currency="EUR")
    await import_csv(s, who, copy.id, again)
    assert split_summary(await splits_of(s, who, copy.id)) == split_summary([converted])
    assert await summary(s, who, copy.id) == await summary(s, who, euros.id)


async def test_a_split_rows_price_follows_the_trade_rows_currency_rule(
    portfolio_service: PortfolioService,
) -> None:
    """Written by hand for a euro portfolio: a dollar stock's trade and split rows both give
    dollars (converted), a split row naming EUR is taken as it is, and a euro stock's split
    needs no conversion; a currency the service does not know, one without a price, or none for
    the price of a symbol the market does not list, is a problem of its row."""
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    text = (
        "date,side,symbol,quantity,price,fees,notes,currency\n"
        "2024-01-02T12:00:00Z,buy,GE,100,10,,,\n"
        "2024-02-01,split,GE,1:3,300000000,,,\n"
        "2024-01-02T12:00:00Z,buy,KO,10,60,,,USD\n"
        "2024-02-01,split,KO,1:3,27000000,,,EUR\n"
        "2024-01-02T12:00:00Z,buy,SAP,10,150,,,\n"
        "2024-02-01,split,SAP,1:3,27000000,,,\n"
    )
    usd_eur = await rate(s, who, "USD", "EUR", "2024-02-01")
    reply = await import_csv(s, who, p.id, text)
    assert [(x.symbol, x.price, x.cash_in_lieu) for x in reply.splits] == [
        (
            "GE",
            price_in("300000000", usd_eur),
            cash_for_a_third(100, Decimal(price_in("300000000", usd_eur))),
        ),
        ("KO", "27000000.00", cash_for_a_third(10, Decimal("27000000"))),
        ("SAP", "27000000.00", cash_for_a_third(10, Decimal("27000000"))),
    ]

    async def refused(rows: str) -> list[tuple[str, str]]:
        header = "date,side,symbol,quantity,price,currency\n"
        error = await expect_error(
            import_csv(s, who, p.id, header + rows), grpc.StatusCode.INVALID_ARGUMENT
        )
        return violations(error)

    assert await refused("2024-03-01,split,GE,2:1,10,XYZ\n2024-03-01,split,KO,2:1,,EUR\n") == [
        ("row 1: currency", "must be one of USD, EUR, GBP, JPY, CHF"),
        (
            "row 2: currency",
            "must be empty on a split row without a price (it names the price's currency)",
        ),
    ]
    # A symbol the market does not list: its price is in no currency known, unless named.
    assert await refused("2024-03-01,split,NOPE,2:1,10,\n") == [
        ("row 1: symbol", "unknown symbol NOPE")
    ]
    assert len(await splits_of(s, who, p.id)) == 3
    named = await import_csv(
        s, who, p.id, "date,side,symbol,quantity,price,currency\n2024-03-01,split,NOPE,2:1,10,USD\n"
    )
    assert [(x.symbol, x.price) for x in named.splits] == [
        ("NOPE", price_in("10", await rate(s, who, "USD", "EUR", "2024-03-01")))
    ]
