"""CSV import and CSV/JSON export through the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import grpc
from google.api import httpbody_pb2
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.exports import CHUNK_BYTES, POSITION_COLUMNS
from tests.integration.portfolio_harness import Metadata, PortfolioService, StartPortfolio
from tests.rpc_errors import expect_error, violations

GOOD = (
    "date,side,symbol,quantity,price,fees,notes\n"
    "2024-01-02,deposit,,1000,,,opening\n"
    "2024-01-03,buy,KO,10,50,1,\n"
    "2024-01-04T15:00:00Z,sell,KO,4,55,,half\n"
    "2024-01-05,dividend,KO,6,0.5,,\n"
)


async def import_csv(
    service: PortfolioService, who: Metadata, portfolio_id: str, text: str, dry_run: bool = False
) -> pb.ImportTradesResponse:
    return await service.stub.ImportTrades(
        pb.ImportTradesRequest(portfolio_id=portfolio_id, csv=text, dry_run=dry_run), metadata=who
    )


async def export(
    service: PortfolioService, who: Metadata, portfolio_id: str, format_: str
) -> list[httpbody_pb2.HttpBody]:
    call = service.stub.ExportPortfolio(
        pb.ExportPortfolioRequest(portfolio_id=portfolio_id, format=format_), metadata=who
    )
    return [chunk async for chunk in call]


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
