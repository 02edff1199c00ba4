"""Splits in the CSV round trip through the real server, on SQLite and PostgreSQL: the export
writes each split as a `split` row among the trades, and the import records such rows with
the trades, in the same transaction and the same replay, as CreateSplit would."""

from __future__ import annotations

from datetime import date, timedelta

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2 as pb

from services.portfolio.exports import TRADE_COLUMNS
from tests.integration.portfolio_harness import (
    PortfolioService,
    export_text,
    import_csv,
    split,
    splits_of,
)
from tests.integration.split_rows import HEADER, split_summary, summary, tables
from tests.rpc_errors import expect_error, violations
from tests.utc_days import noon, utc_today


async def test_a_csv_export_with_splits_imports_into_a_new_portfolio_as_the_same_holdings(
    portfolio_service: PortfolioService,
) -> None:
    """A 10-for-1 between buys and a sell that needs it, and a 1-for-3 that pays the fraction
    below 8 places in cash at its price: the export writes them as `split` rows in their place
    (a split before the trades of its day), and the file imports into an empty portfolio as
    the same positions, lots, gains, cash and splits."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "100", "10", symbol="GE", executed_at=noon(date(2024, 1, 2)))
    await split(s, who, p.id, "GE", "2024-02-01", 1, 3, "31.5")
    await s.trade(who, p.id, "sell", "30", "32", symbol="GE", executed_at=noon(date(2024, 3, 1)))
    await s.trade(who, p.id, "buy", "10", "500", symbol="NVDA", executed_at=noon(date(2024, 6, 3)))
    await split(s, who, p.id, "NVDA", "2024-06-10", 10, 1)
    await s.trade(who, p.id, "buy", "20", "120", symbol="NVDA", executed_at=noon(date(2024, 6, 10)))
    await s.trade(
        who, p.id, "sell", "60", "125", symbol="NVDA", executed_at=noon(date(2024, 6, 12))
    )

    downloaded = await export_text(s, who, p.id)
    assert downloaded.startswith(",".join(TRADE_COLUMNS) + "\r\n")  # the header as it was
    rows, _ = tables(downloaded)
    assert [(r["date"][:10], r["side"], r["symbol"], r["quantity"], r["price"]) for r in rows] == [
        ("2024-01-02", "buy", "GE", "100", "10.00"),
        ("2024-02-01", "split", "GE", "1:3", "31.50"),
        ("2024-03-01", "sell", "GE", "30", "32.00"),
        ("2024-06-03", "buy", "NVDA", "10", "500.00"),
        ("2024-06-10", "split", "NVDA", "10:1", ""),
        ("2024-06-10", "buy", "NVDA", "20", "120.00"),
        ("2024-06-12", "sell", "NVDA", "60", "125.00"),
    ]
    (split_row, _) = (r for r in rows if r["side"] == "split")
    assert split_row["date"] == "2024-02-01"  # a day, not a time
    assert all(split_row[c] == "" for c in TRADE_COLUMNS[5:])  # fees, notes, amount, id, ...

    q = await s.portfolio(who, "Copy")
    reply = await import_csv(s, who, q.id, downloaded)
    assert reply.imported == 5  # the trades; the splits are recorded with them

    assert split_summary(await splits_of(s, who, q.id)) == split_summary(
        await splits_of(s, who, p.id)
    )
    assert split_summary(await splits_of(s, who, q.id)) == [
        ("GE", "2024-02-01", "1:3", "31.50", "100", "33.33333333", "0.00"),
        ("NVDA", "2024-06-10", "10:1", "", "10", "100", "0.00"),
    ]
    original, copied = await summary(s, who, p.id), await summary(s, who, q.id)
    assert copied == original
    _, positions = copied
    assert positions == [
        # 33.33333333 after the 1-for-3 (the rest paid in cash), 30 sold at 32 for 900 of cost.
        ("GE", "3.33333333", "30.00", "100.00", "60.00", [("3.33333333", "30.00", "100.00")]),
        # 100 at 50 after the 10-for-1; 60 sold at 125 against the oldest (FIFO): 4,500.
        (
            "NVDA",
            "60",
            "73.333333",
            "4400.00",
            "4500.00",
            [("40", "50.00", "2000.00"), ("20", "120.00", "2400.00")],
        ),
    ]
    # Exported again, the copy is the same file but for the trades' ids and creation times.
    again, _ = tables(await export_text(s, who, q.id))
    kept = [c for c in TRADE_COLUMNS if c not in ("id", "created_at")]
    assert [[r[c] for c in kept] for r in again] == [[r[c] for c in kept] for r in rows]
    assert tables(await export_text(s, who, q.id))[1] == tables(downloaded)[1]


async def test_split_rows_are_replayed_with_the_trades_and_splits_already_recorded(
    portfolio_service: PortfolioService,
) -> None:
    """An imported split acts on the portfolio's own trades before it, and a sell among the
    rows after it sells split shares; a split row that would leave a recorded trade impossible
    is refused, with nothing imported."""
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    await s.trade(who, p.id, "buy", "10", "500", symbol="NVDA", executed_at=noon(date(2024, 6, 3)))
    reply = await import_csv(
        s,
        who,
        p.id,
        HEADER + "2024-06-10,SPLIT,nvda,10/1,,,\n2024-06-12T12:00:00Z,sell,NVDA,60,55,,\n",
    )
    assert reply.imported == 1
    (made,) = await splits_of(s, who, p.id)
    assert (made.symbol, made.numerator, made.denominator) == ("NVDA", 10, 1)
    assert (made.quantity_before, made.quantity_after) == ("10", "100")
    listed = await s.stub.ListPositions(pb.ListPositionsRequest(portfolio_id=p.id), metadata=who)
    (held,) = listed.positions
    assert (held.quantity, held.cost_basis, held.realized_gain) == ("40", "2000.00", "300.00")

    # A 1-for-10 before the sell of 60 would leave 10 shares to sell 60 of.
    refused = await expect_error(
        import_csv(s, who, p.id, HEADER + "2024-06-11,split,NVDA,1:10,,,\n"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    ((field, problem),) = violations(refused)
    assert field == "csv"
    assert "existing sell of 2024-06-12 impossible" in problem
    assert [x.id for x in await splits_of(s, who, p.id)] == [made.id]
    assert await s.trade_count(who, p.id) == 2


async def test_a_bad_split_row_is_reported_by_row_and_nothing_is_imported(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    today = utc_today()
    await s.trade(who, p.id, "buy", "4", "300", symbol="MSFT", executed_at=noon(date(2024, 3, 1)))
    recorded = await split(s, who, p.id, "MSFT", "2024-03-04", 2, 1)
    buy = "2024-01-02,buy,KO,10,50,,\n"

    async def refused(text: str) -> list[tuple[str, str]]:
        error = await expect_error(
            import_csv(s, who, p.id, HEADER + text), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert await s.trade_count(who, p.id) == 1
        assert [x.id for x in await splits_of(s, who, p.id)] == [recorded.id]
        return violations(error)

    ahead = (today + timedelta(days=2)).isoformat()
    found = await refused(
        buy
        + "2024-02-01,split,KO,4:0,,,\n"
        + "2024-02-02,split,KO,abc,,,\n"
        + f"{ahead},split,KO,2:1,,,\n"
        + "2024-02-05,split,KO,3:3,,,\n"
        + "2024-02-06,split,KO,2:1,,1,\n"
        + "2024-02-07T10:00:00Z,split,KO,2:1,,,\n"
    )
    assert [f for f, _ in found] == [
        "row 2: quantity",
        "row 3: quantity",
        "row 4: date",
        "row 5: quantity",
        "row 6: fees",
        "row 7: date",
    ]
    assert "from 1 to 1000000" in found[0][1]
    assert "N:D" in found[1][1]
    assert "today or before" in found[2][1]

    # One of MSFT on 2024-03-04 is recorded; two rows of KO name the same day.
    found = await refused(
        buy
        + "2024-03-04,split,MSFT,3:1,,,\n"
        + "2024-02-01,split,KO,2:1,,,\n"
        + "2024-02-01,split,ko,3:1,,,\n"
    )
    assert [f for f, _ in found] == ["row 2: date", "row 4: date"]
    assert "recorded already" in found[0][1]
    assert "row 3" in found[1][1]

    # At most 500 splits in a portfolio: it has one, and 500 rows would make 501.
    days = [date(2000, 1, 1) + timedelta(days=n) for n in range(500)]
    found = await refused("".join(f"{d.isoformat()},split,KO,2:1,,,\n" for d in days))
    assert [f for f, _ in found] == ["row 500"]
    assert "at most 500 splits" in found[0][1]


async def test_a_dry_run_checks_split_rows_and_records_no_split(
    portfolio_service: PortfolioService,
) -> None:
    s = portfolio_service
    who, p = await s.user_with_portfolio()
    text = (
        HEADER
        + "2024-06-03T12:00:00Z,buy,NVDA,10,500,,\n"
        + "2024-06-10,split,NVDA,10:1,,,\n"
        + "2024-06-12T12:00:00Z,sell,NVDA,60,55,,\n"
    )
    reply = await import_csv(s, who, p.id, text, dry_run=True)
    assert reply.imported == 0
    assert [t.side for t in reply.trades] == [pb.TRADE_SIDE_BUY, pb.TRADE_SIDE_SELL]
    assert await splits_of(s, who, p.id) == []
    assert await s.trade_count(who, p.id) == 0
    # The dry run replays the split: without it the sell is more than held.
    refused = await expect_error(
        import_csv(s, who, p.id, text.replace("2024-06-10,split,NVDA,10:1,,,\n", ""), dry_run=True),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [f for f, _ in violations(refused)] == ["row 2: quantity"]
    assert await splits_of(s, who, p.id) == []
