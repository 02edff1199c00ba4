"""CSV import of trades: every row is checked, every problem reported by its row number, and
nothing is recorded unless every row is good.

The format, stated once
-----------------------
* A header row names the columns, in any order and any letter case: `date`, `side` and
  `quantity` are required; `symbol`, `price`, `fees` and `notes` are optional. Any other column
  is refused (a misspelt `fee` must not silently drop the fees).
* Then one trade per row, with the meaning CreateTrade gives each field. `date` is a day
  (`2024-03-15`, midnight UTC) or a time (`2024-03-15T14:30:00Z`; without an offset, UTC).
  `side` is buy, sell, dividend, deposit or withdrawal. A buy or sell needs its price (the
  market's price today says nothing about a past trade).
* Rows are numbered from 1, the first row after the header; blank lines are skipped and not
  counted. A problem is reported as the field `row N: <column>` (or `row N` for the row as a
  whole) with what is wrong; problems that concern the file are reported on `csv`.
* The rows are checked together with the portfolio's existing trades, in time order: a sell is
  checked against what the earlier rows and trades leave.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from services.portfolio.currencies import TradeFx
from services.portfolio.domain import Book, Side, Trade, parse_trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.records import RecordedTrade, require_portfolio_id
from services.portfolio.trades import BookCheck, CurrencyChanged, Settle, Trades
from services.runtime.clock import utc_now
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

COLUMNS = ("date", "side", "symbol", "quantity", "price", "fees", "notes")
REQUIRED = ("date", "side", "quantity")
# Reported problems, at most: they travel in a gRPC trailer, whose size is limited.
MAX_REPORTED = 25
_FIELD_COLUMNS = {"executed_at": "date"}
_SIDES = ", ".join(s.value for s in Side)


@dataclass(frozen=True)
class Row:
    number: int
    trade: Trade


class Problems:
    """Violations found so far, as `(field, description)` pairs."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.found.append((field, description))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        rows = {f.split(":")[0] for f, _ in self.found if f.startswith("row ")}
        shown = self.found[:MAX_REPORTED]
        if len(self.found) > MAX_REPORTED:
            shown.append(("csv", f"and {len(self.found) - MAX_REPORTED} more problems"))
        what = f"{len(rows)} row{'s' if len(rows) != 1 else ''}" if rows else "the file"
        first_field, first_problem = self.found[0]
        raise InvalidArgument(
            f"nothing was imported: {what} cannot be imported"
            f" (first: {first_field}: {first_problem}); rows are numbered from 1 after the header",
            fields=shown,
        )


def parse_when(raw: str) -> datetime:
    text = raw.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_side(raw: str) -> Side:
    text = raw.strip().lower().removeprefix("trade_side_")
    return Side(text)


def parse_csv(text: str, *, now: datetime, max_rows: int) -> list[Row]:
    """Every row of `text` as a trade, or InvalidArgument listing what is wrong, by row."""
    if not text.strip():
        raise InvalidArgument.field(
            "csv", f"is empty: expected a header row ({', '.join(COLUMNS)}) and a row per trade"
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = _header(next(reader))
        records = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            records.append(cells)
            if len(records) > max_rows:
                raise InvalidArgument.field(
                    "csv", f"has more than {max_rows} rows; split it into files of {max_rows}"
                )
    except csv.Error as error:
        raise InvalidArgument.field(
            "csv", f"is not valid CSV (line {reader.line_num}): {error}"
        ) from None
    if not records:
        raise InvalidArgument.field("csv", "has a header but no rows")
    problems = Problems()
    rows = []
    for number, cells in enumerate(records, start=1):
        row = _row(number, cells, columns, now, problems)
        if row is not None:
            rows.append(row)
    problems.raise_if_any()
    return rows


def _header(cells: list[str]) -> list[str]:
    columns = [c.strip().lower() for c in cells]
    problems = Problems()
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        problems.add(
            "csv",
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))};"
            f" the columns are {', '.join(COLUMNS)}",
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        problems.add("csv", f"column {', '.join(map(repr, repeated))} appears more than once")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        problems.add("csv", f"the header lacks the column {', '.join(missing)}")
    problems.raise_if_any()
    return columns


def _row(
    number: int, cells: list[str], columns: list[str], now: datetime, problems: Problems
) -> Row | None:
    name = f"row {number}"
    if len(cells) != len(columns):
        problems.add(name, f"has {len(cells)} columns; the header has {len(columns)}")
        return None
    values = dict(zip(columns, cells, strict=True))
    when: datetime | None = None
    side: Side | None = None
    try:
        when = parse_when(values["date"])
    except ValueError:
        problems.add(f"{name}: date", "must be a day (2024-03-15) or a time (2024-03-15T14:30Z)")
    try:
        side = parse_side(values["side"])
    except ValueError:
        problems.add(f"{name}: side", f"must be one of {_SIDES}")
    if when is None or side is None:
        return None
    try:
        trade = parse_trade(
            side,
            values.get("symbol", ""),
            values["quantity"],
            values.get("price", ""),
            values.get("fees", ""),
            when,
            now=now,
            notes=values.get("notes", "").strip(),
        )
    except InvalidArgument as invalid:
        for field, description in invalid.fields:
            problems.add(f"{name}: {_FIELD_COLUMNS.get(field, field)}", description)
        return None
    return Row(number, trade)


def book_check(rows: Sequence[Row]) -> BookCheck:
    """A check for Trades.append that applies the rows (and the existing trades they come
    before) in time order and names every row the book refuses (a sell of more than is held
    then, a withdrawal beyond cash)."""

    def check(book: Book, events: Sequence[Trade], new: Sequence[Trade]) -> None:
        row_of = {trade.sequence: row.number for trade, row in zip(new, rows, strict=True)}
        problems = Problems()
        for trade in events:
            try:
                book.record(trade)
            except FailedPrecondition as refused:
                number = row_of.get(trade.sequence)
                if number is not None:
                    problems.add(f"row {number}: quantity", refused.message)
                else:
                    problems.add(
                        "csv",
                        f"the rows would leave the existing {trade.side.value} of"
                        f" {trade.executed_at.date().isoformat()} impossible: {refused.message}",
                    )
        problems.raise_if_any()

    return check


@dataclass(frozen=True)
class Imported:
    """What an import did: the trades recorded, or in a dry run those that would be."""

    trades: list[RecordedTrade]
    dry_run: bool

    @property
    def count(self) -> int:
        """How many trades were recorded (none in a dry run)."""
        return 0 if self.dry_run else len(self.trades)


class Imports:
    def __init__(
        self,
        trades: Trades,
        hub: EventHub,
        *,
        max_rows: int,
        clock: Callable[[], datetime] = utc_now,
        exchange: Exchange | None = None,
    ) -> None:
        self._trades = trades
        self._hub = hub
        self._max_rows = max_rows
        self._clock = clock
        # Converts rows into the portfolio's currency as CreateTrade does (exchange.py).
        self._exchange = exchange

    async def run(
        self,
        user_id: str,
        portfolio_id: str,
        text: str,
        *,
        dry_run: bool,
        settle: Settle | None = None,
    ) -> Imported:
        """The trades recorded (or, in a dry run, those that would be: without ids); `settle`
        commits with them."""
        portfolio_id = require_portfolio_id(portfolio_id)
        rows = parse_csv(text, now=self._clock(), max_rows=self._max_rows)
        await self._check_symbols(rows)
        trades = [r.trade for r in rows]
        conversions: list[TradeFx | None] = []
        currency = None
        if self._exchange is not None:
            currency = await self._exchange.portfolio_currency(user_id, portfolio_id)
            for i, trade in enumerate(trades):
                trades[i], fx = await self._exchange.trade_in(trade, currency)
                conversions.append(fx)
        try:
            _, recorded = await self._trades.append(
                user_id,
                portfolio_id,
                trades,
                check=book_check(rows),
                dry_run=dry_run,
                settle=settle,
                conversions=conversions,
                currency=currency,
            )
        except CurrencyChanged:  # changed between the read and the write: nothing recorded
            raise FailedPrecondition(
                "the portfolio's currency changed during the import; send it again",
                reason="CURRENCY_CHANGED",
            ) from None
        if not dry_run:
            await self._hub.trades_recorded(user_id, recorded)
        return Imported(recorded, dry_run)

    async def _check_symbols(self, rows: Sequence[Row]) -> None:
        problems = Problems()
        unknown: set[str] = set()
        for symbol in sorted({r.trade.symbol for r in rows if r.trade.symbol}):
            try:
                await self._trades.check_symbol(symbol)
            except NotFound:
                unknown.add(symbol)
        for row in rows:
            if row.trade.symbol in unknown:
                problems.add(f"row {row.number}: symbol", f"unknown symbol {row.trade.symbol}")
        problems.raise_if_any()
