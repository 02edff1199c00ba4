"""CSV import and CSV/JSON export through the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.exports import CHUNK_BYTES, POSITION_COLUMNS
from tests.integration.portfolio_harness import (
    Metadata,
    PortfolioService,
    StartPortfolio,
    export,
    export_text,
    import_csv,
)
from tests.rpc_errors import expect_error, violations

GOOD = (
    "date,side,symbol,quantity,price,fees,notes\n"
    "2024-01-02,deposit,,1000,,,opening\n"
    "2024-01-03,buy,KO,10,50,1,\n"
    "2024-01-04T15:00:00Z,sell,KO,4,55,,half\n"
    "2024-01-05,dividend,KO,6,0.5,,\n"
)


async def test_a_good_import_records_every_row_in_order(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    reply = await import_csv(s, who, p.id, GOOD)
    assert reply.imported == 4
    assert [(t.side, t.symbol, t.quantity, t.amount) for t in reply.trades] == [
        (pb.TRADE_SIDE_DEPOSIT, "", "1000", "1000.00"),
        (pb.TRADE_SIDE_BUY, "KO", "10", "500.00"),
        (pb.TRADE_SIDE_SELL, "KO", "4", "220.00"),
        (pb.TRADE_SIDE_DIVIDEND, "KO", "6", "3.00"),
    ]
    assert all(t.id for t in reply.trades)
    got = (await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)).portfolio
    # 1000 - 501 + 220 + 3 = 722; 6 KO left of a lot of 10 costing 501: 300.60.
    assert (got.cash, got.cost_basis, got.dividends) == ("722.00", "300.60", "3.00")
    assert got.realized_gain == "19.60"  # 220 - 4 * 50.10
    assert await s.trade_count(who, p.id) == 4


async def test_an_import_with_a_bad_row_3_names_it_and_imports_nothing(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    bad = GOOD.replace("2024-01-04T15:00:00Z,sell,KO,4,55", "2024-01-04T15:00:00Z,sell,KO,4,abc")
    error = await expect_error(import_csv(s, who, p.id, bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert violations(error) == [
        ("row 3: price", "must be a decimal number such as 187.42, not 'abc'")
    ]
    assert "nothing was imported" in (error.details() or "")
    assert await s.trade_count(who, p.id) == 0


async def test_rows_that_oversell_with_the_existing_trades_are_named_and_nothing_imported(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await import_csv(s, who, p.id, "date,side,symbol,quantity,price\n2024-01-03,buy,KO,5,50\n")
    text = (
        "date,side,symbol,quantity,price\n"
        "2024-01-04,sell,KO,3,55\n"
        "2024-01-05,sell,KO,3,55\n"
        "2024-01-06,sell,NOPE,1,1\n"
    )
    error = await expect_error(import_csv(s, who, p.id, text), grpc.StatusCode.INVALID_ARGUMENT)
    assert violations(error) == [("row 3: symbol", "unknown symbol NOPE")]
    error = await expect_error(
        import_csv(s, who, p.id, text.replace("NOPE", "KO")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violations(error) == [
        # Row 2 is refused and left out; row 3 then sells 1 of the 2 left, which holds.
        ("row 2: quantity", "cannot sell 3 KO: only 2 held (short by 1)"),
    ]
    assert await s.trade_count(who, p.id) == 1


async def test_a_dry_run_checks_every_row_and_records_nothing(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    reply = await import_csv(s, who, p.id, GOOD, dry_run=True)
    assert reply.imported == 0
    assert len(reply.trades) == 4
    assert all(not t.id for t in reply.trades)
    assert await s.trade_count(who, p.id) == 0
    await expect_error(
        import_csv(s, who, p.id, GOOD.replace(",10,50", ",10,0"), dry_run=True),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_malformed_and_oversized_files_are_refused_with_a_clear_message(
    start_portfolio: StartPortfolio,
) -> None:
    async with start_portfolio(PORTFOLIO_MAX_IMPORT_ROWS="3") as s:
        who, p = await s.user_with_portfolio()
        cases = {
            "": "csv: is required",
            "\n": "csv: is empty",
            'date,side,quantity\n2024-01-02,deposit,"100\n': "csv: is not valid CSV",
            "date,side,quantity\n2024-01-02,deposit\n": "row 1: has 2 columns",
            "date,side,quantity\n" + "2024-01-02,deposit,1\n" * 4: "csv: has more than 3 rows",
        }
        for text, expected in cases.items():
            error = await expect_error(
                import_csv(s, who, p.id, text), grpc.StatusCode.INVALID_ARGUMENT
            )
            field, description = violations(error)[0]
            assert f"{field}: {description}".startswith(expected), (text, violations(error))
        assert await s.trade_count(who, p.id) == 0


async def test_the_csv_export_holds_the_trades_then_the_positions(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    imported = (await import_csv(s, who, p.id, GOOD.replace(",half", ",=SUM(A1)"))).trades
    (chunk,) = await export(s, who, p.id, "csv")
    assert chunk.content_type == "text/csv; charset=utf-8"
    trades_part, positions_part = chunk.data.decode().split("\r\n\r\n")
    rows = list(csv.reader(io.StringIO(trades_part)))
    assert rows[0][:7] == ["date", "side", "symbol", "quantity", "price", "fees", "notes"]
    assert [r[:8] for r in rows[1:]] == [
        ["2024-01-02T00:00:00Z", "deposit", "", "1000", "1.00", "0.00", "opening", "1000.00"],
        ["2024-01-03T00:00:00Z", "buy", "KO", "10", "50.00", "1.00", "", "500.00"],
        ["2024-01-04T15:00:00Z", "sell", "KO", "4", "55.00", "0.00", "'=SUM(A1)", "220.00"],
        ["2024-01-05T00:00:00Z", "dividend", "KO", "6", "0.50", "0.00", "", "3.00"],
    ]
    assert [r[8] for r in rows[1:]] == [t.id for t in imported]
    positions = list(csv.reader(io.StringIO(positions_part)))
    assert positions == [
        list(POSITION_COLUMNS),
        # 6 KO at the market's 62.40 = 374.40; total value 722 + 374.40 = 1096.40.
        ["KO", "6", "50.10", "300.60", "62.40", "374.40", "73.80", "19.60", "3.00", "0.341481"],
    ]


async def test_the_json_export_is_one_document_with_trades_and_positions(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio(name="Exported")
    await import_csv(s, who, p.id, GOOD)
    chunks = await export(s, who, p.id, "json")
    assert {c.content_type for c in chunks} == {"application/json"}
    document = json.loads(b"".join(c.data for c in chunks))
    assert document["portfolio"] == {
        "id": p.id,
        "name": "Exported",
        "description": "",
        "currency": "USD",
        "kind": "tracking",
    }
    assert [(t["side"], t["quantity"], t["executedAt"]) for t in document["trades"]] == [
        ("deposit", "1000", "2024-01-02T00:00:00Z"),
        ("buy", "10", "2024-01-03T00:00:00Z"),
        ("sell", "4", "2024-01-04T15:00:00Z"),
        ("dividend", "6", "2024-01-05T00:00:00Z"),
    ]
    assert document["trades"][1]["priceSource"] == ""
    (ko,) = document["positions"]
    assert (ko["symbol"], ko["quantity"], ko["marketValue"], ko["averageCost"]) == (
        "KO",
        "6",
        "374.40",
        "50.10",
    )


async def test_an_export_states_a_trade_as_given_and_reads_back_as_the_same_trade(
    portfolio_service: PortfolioService,
) -> None:
    """A USD stock in a euro portfolio: the export says the price and fees as they were given,
    in dollars, with the currency and the rate (it wrote them converted and rounded, which the
    import then converted a second time)."""
    s = portfolio_service
    who, p = await s.user_with_portfolio(currency="EUR")
    given = await s.trade(
        who,
        p.id,
        "buy",
        "10",
        "187.4213",
        "AAPL",
        fees="1.005",
        executed_at=Timestamp(seconds=1710513000),  # 2024-03-15T14:30:00Z
    )
    assert (given.price, given.fees, given.currency) == ("187.4213", "1.005", "USD")
    (chunk,) = await export(s, who, p.id, "csv")
    trades_part = chunk.data.decode().split("\r\n\r\n")[0]
    header, row = list(csv.reader(io.StringIO(trades_part)))
    exported = dict(zip(header, row, strict=True))
    assert (exported["price"], exported["fees"], exported["amount"]) == (
        "187.4213",
        "1.005",
        "1874.21",
    )
    assert (exported["currency"], exported["fx_rate"]) == ("USD", given.fx_rate)
    document = json.loads(b"".join(c.data for c in await export(s, who, p.id, "json")))
    (as_json,) = document["trades"]
    assert (as_json["price"], as_json["currency"], as_json["fxRate"]) == (
        "187.4213",
        "USD",
        given.fx_rate,
    )

    # Read back into another euro portfolio: the same trade, converted once at the same rate.
    copy = await s.portfolio(who, "Copy", currency="EUR")
    reply = await import_csv(s, who, copy.id, trades_part)
    (imported,) = reply.trades
    assert (imported.price, imported.fees, imported.fx_rate) == ("187.4213", "1.005", given.fx_rate)
    original = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=p.id), metadata=who)
    copied = await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=copy.id), metadata=who)
    assert copied.portfolio.cost_basis == original.portfolio.cost_basis
    # A currency column that is not the symbol's: its prices would be booked as another's.
    wrong = trades_part.replace(",USD,", ",EUR,")
    error = await expect_error(import_csv(s, who, copy.id, wrong), grpc.StatusCode.INVALID_ARGUMENT)
    assert violations(error) == [
        ("row 1: currency", "AAPL trades in USD, not EUR: give its price and fees in USD")
    ]
    assert await s.trade_count(who, copy.id) == 1


async def test_a_large_export_streams_in_bounded_chunks(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    rows = "".join(f"2024-01-02,deposit,,{i + 1},,,{'n' * 200}\n" for i in range(1200))
    await import_csv(s, who, p.id, "date,side,symbol,quantity,price,fees,notes\n" + rows)
    chunks = await export(s, who, p.id, "csv")
    assert len(chunks) >= 4
    assert all(len(c.data) <= CHUNK_BYTES + 2048 for c in chunks)
    text = b"".join(c.data for c in chunks).decode()
    trades_part, _ = text.split("\r\n\r\n")
    quantities = [r[3] for r in csv.reader(io.StringIO(trades_part))][1:]
    assert quantities == [str(i + 1) for i in range(1200)]


async def test_an_unknown_export_format_is_invalid(portfolio_service: PortfolioService) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    try:
        await export(s, who, p.id, "xml")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violations(error) == [("format", "must be one of: csv, json (or empty)")]
    else:
        raise AssertionError("an xml export was accepted")


async def summary(s: PortfolioService, who: Metadata, portfolio_id: str) -> tuple[str, ...]:
    got = (
        await s.stub.GetPortfolio(pb.GetPortfolioRequest(id=portfolio_id), metadata=who)
    ).portfolio
    return (got.cash, got.cost_basis, got.realized_gain, got.dividends)


async def test_the_csv_export_imports_back_as_downloaded_with_its_notes(
    portfolio_service: PortfolioService,
) -> None:
    """The whole file (its positions table after the trades included) is read back as the same
    trades; notes the export marked against spreadsheet formulas come back as they were."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    notes = GOOD.replace(",half", ",-5% stop loss").replace(",opening", ",'quoted")
    await import_csv(s, who, p.id, notes)
    downloaded = await export_text(s, who, p.id)
    assert "\r\n\r\nsymbol,quantity," in downloaded  # the positions follow the trades
    assert ",'-5% stop loss," in downloaded  # marked for spreadsheets
    copy = await s.portfolio(who, "Copy")
    reply = await import_csv(s, who, copy.id, downloaded)
    assert reply.imported == 4
    assert [t.notes for t in reply.trades] == ["'quoted", "", "-5% stop loss", ""]
    assert (
        await summary(s, who, copy.id)
        == await summary(s, who, p.id)
        == (
            "722.00",
            "300.60",
            "19.60",
            "3.00",
        )
    )


async def test_a_euro_deposit_is_converted_into_a_dollar_portfolio(
    portfolio_service: PortfolioService,
) -> None:
    """A euro portfolio's export gives its cash rows in EUR (the currency column): imported
    into a dollar portfolio they are converted at the day's rate, as a stock's rows are, never
    booked as the same number of dollars."""
    s = portfolio_service
    who, euros = await s.user_with_portfolio(currency="EUR")
    await import_csv(s, who, euros.id, "date,side,quantity\n2024-01-02,deposit,1000\n")
    trades_part = (await export_text(s, who, euros.id)).split("\r\n\r\n")[0]
    header, row = list(csv.reader(io.StringIO(trades_part)))
    assert dict(zip(header, row, strict=True))["currency"] == "EUR"
    dollars = await s.portfolio(who, "Dollars", currency="USD")
    (deposit,) = (await import_csv(s, who, dollars.id, trades_part)).trades
    rate = Decimal(deposit.fx_rate)
    assert deposit.currency == "EUR"
    assert rate > 1  # the mock market's euro is worth more than a dollar
    cash = (await summary(s, who, dollars.id))[0]
    assert Decimal(cash) == (1000 * rate).quantize(Decimal("0.01"))
    # A currency the service does not know is named on its row.
    unknown = "date,side,quantity,currency\n2024-01-02,deposit,10,XYZ\n"
    error = await expect_error(
        import_csv(s, who, dollars.id, unknown), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [f for f, _ in violations(error)] == ["row 1: currency"]


async def test_rows_the_file_cannot_give_are_named_not_a_broken_call(
    portfolio_service: PortfolioService,
) -> None:
    """A date before any rate of its stock's currency, a time before year 1 in UTC, a huge
    unknown column name (its problem travels in a trailer of at most 16 KB): each a 400 that
    names the row or column, never a 404, a 500 or a 429 (RESOURCE_EXHAUSTED)."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()  # USD; ASML trades in EUR
    before_rates = (
        "date,side,symbol,quantity,price\n2024-01-02,buy,ASML,1,800\n1901-06-01,buy,ASML,1,100\n"
    )
    error = await expect_error(
        import_csv(s, who, p.id, before_rates), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [f for f, _ in violations(error)] == ["row 2: date"]
    assert "EUR/USD" in violations(error)[0][1]
    year_zero = "date,side,quantity\n0001-01-01T00:00:00+01:00,deposit,100\n"
    error = await expect_error(
        import_csv(s, who, p.id, year_zero), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [f for f, _ in violations(error)] == ["row 1: date"]
    long_name = "date,side,quantity," + "x" * 20_000 + "\n2024-01-02,deposit,100,1\n"
    error = await expect_error(
        import_csv(s, who, p.id, long_name), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert f"'{'x' * 40}…'" in (error.details() or "")
    assert await s.trade_count(who, p.id) == 0


async def test_a_csv_saved_by_excel_with_a_byte_order_mark_imports(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    reply = await import_csv(s, who, p.id, "\ufeffdate,side,quantity\r\n2024-01-02,deposit,100\r\n")
    assert [(t.side, t.amount) for t in reply.trades] == [(pb.TRADE_SIDE_DEPOSIT, "100.00")]


async def test_nul_in_any_text_is_a_named_400_on_every_database(
    portfolio_service: PortfolioService,
) -> None:
    """PostgreSQL's text cannot hold U+0000: notes, a file, an order's id with one failed as
    500s there (and were stored on SQLite). Now refused before any handler runs."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    calls = {
        "notes": s.stub.CreateTrade(
            pb.CreateTradeRequest(
                portfolio_id=p.id, side=pb.TRADE_SIDE_DEPOSIT, quantity="100", notes="a\x00b"
            ),
            metadata=who,
        ),
        "csv": s.stub.ImportTrades(
            pb.ImportTradesRequest(
                portfolio_id=p.id, csv="date,side,quantity,notes\n2024-01-02,deposit,1,a\x00b\n"
            ),
            metadata=who,
        ),
        "id": s.stub.GetOrder(pb.GetOrderRequest(id="o\x00"), metadata=who),
        "portfolioId": s.stub.ListOrders(
            pb.ListOrdersRequest(portfolio_id=p.id + "\x00"), metadata=who
        ),
    }
    for field, call in calls.items():
        error = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert (field, "must not contain the NUL character (U+0000)") in violations(error)
    assert await s.trade_count(who, p.id) == 0
