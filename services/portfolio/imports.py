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

from services.portfolio.currencies import CURRENCIES, TradeFx
from services.portfolio.domain import Book, Event, Side, Split, Trade, parse_trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.records import RecordedTrade, require_portfolio_id
from services.portfolio.trades import BookCheck, CurrencyChanged, Settle, Trades
from services.runtime.clock import utc_now
from services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound

COLUMNS = ("date", "side", "symbol", "quantity", "price", "fees", "notes")
# The export's trades table goes on with these (exports.py): an import reads them as what the
# export said, so an export imports as it is. Only `currency` is checked (the currency the
# prices are in must be the one the symbol trades in); the others are the old portfolio's.
EXPORT_COLUMNS = ("amount", "id", "price_source", "created_at", "currency", "fx_rate")
REQUIRED = ("date", "side", "quantity")
# Reported problems, at most: they travel in a gRPC trailer, whose size is limited (and so
# does what they quote of the file: a column name, at most QUOTED characters).
MAX_REPORTED = 25
QUOTED = 40
# An export's CSV ends with its positions: a blank line, then this header. The import reads
# the trades above it, so that the file downloaded imports as it is.
POSITIONS_HEADER = (
    "symbol",
    "quantity",
    "average_cost",
    "cost_basis",
    "price",
    "market_value",
    "unrealized_gain",
    "realized_gain",
    "dividends",
    "weight",
)
# What the export puts before a note that a spreadsheet would run as a formula (and before one
# that starts with the mark itself), taken off again here: notes come back as they were.
FORMULA_MARK = "'"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", FORMULA_MARK)
_FIELD_COLUMNS = {"executed_at": "date"}
_SIDES = ", ".join(s.value for s in Side)


@dataclass(frozen=True)
class Row:
    number: int
    trade: Trade
    # The currency the row says its price and fees are in ("": the symbol's own).
    currency: str = ""


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
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    try:
        when.astimezone(UTC)  # 0001-01-01T00:00+01:00 is before the first day there is
    except OverflowError:
        raise ValueError("out of range") from None
    return when


def _quoted(name: str) -> str:
    return repr(name if len(name) <= QUOTED else name[:QUOTED] + "…")


def unmarked(notes: str) -> str:
    """A note as it was before the export marked it against formulas."""
    if notes.startswith(FORMULA_MARK) and notes[1:].startswith(FORMULA_START):
        return notes[1:]
    return notes


def parse_side(raw: str) -> Side:
    text = raw.strip().lower().removeprefix("trade_side_")
    return Side(text)


def parse_csv(text: str, *, now: datetime, max_rows: int) -> list[Row]:
    """Every row of `text` as a trade, or InvalidArgument listing what is wrong, by row."""
    if not text.strip():
        raise InvalidArgument.field(
            "csv", f"is empty: expected a header row ({', '.join(COLUMNS)}) and a row per trade"
        )
    # Excel's "CSV UTF-8" starts with a byte-order mark, read as text by most clients.
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    try:
        columns = _header(next(reader))
        records = []
        blank = False
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                blank = True
                continue
            if blank and tuple(c.strip().lower() for c in cells) == POSITIONS_HEADER:
                break  # an export's positions: what the trades above add up to
            blank = False
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
    unknown = [c for c in columns if c not in COLUMNS and c not in EXPORT_COLUMNS]
    if unknown:
        problems.add(
            "csv",
            f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(_quoted, unknown))};"
            f" the columns are {', '.join(COLUMNS)} (and an export's own, read as it wrote them)",
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        problems.add("csv", f"column {', '.join(map(_quoted, repeated))} appears more than once")
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
            notes=unmarked(values.get("notes", "").strip()),
        )
    except InvalidArgument as invalid:
        for field, description in invalid.fields:
            problems.add(f"{name}: {_FIELD_COLUMNS.get(field, field)}", description)
        return None
    return Row(number, trade, values.get("currency", "").strip().upper())


def book_check(rows: Sequence[Row]) -> BookCheck:
    """A check for Trades.append that applies the rows (and the existing trades they come
    before) in time order and names every row the book refuses (a sell of more than is held
    then, a withdrawal beyond cash)."""

    def check(book: Book, events: Sequence[Event], new: Sequence[Trade]) -> None:
        row_of = {trade.sequence: row.number for trade, row in zip(new, rows, strict=True)}
        problems = Problems()
        for trade in events:
            if isinstance(trade, Split):  # a recorded split always applies
                book.record(trade)
                continue
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
            conversions = await self._convert(rows, trades, currency)
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

    async def _convert(
        self, rows: Sequence[Row], trades: list[Trade], currency: str
    ) -> list[TradeFx | None]:
        """Each row's trade in the portfolio's currency, in place; a row that cannot be (in a
        currency we do not know, dated before any rate of its currency) is named."""
        assert self._exchange is not None
        problems = Problems()
        conversions: list[TradeFx | None] = []
        for i, (row, trade) in enumerate(zip(rows, trades, strict=True)):
            cash_in = "" if trade.side.names_symbol else row.currency
            fx: TradeFx | None = None
            if cash_in and cash_in not in CURRENCIES:
                problems.add(
                    f"row {row.number}: currency", f"must be one of {', '.join(CURRENCIES)}"
                )
            else:
                try:
                    trades[i], fx = await self._exchange.trade_in(trade, currency, cash_in=cash_in)
                except NotFound as missing:
                    problems.add(f"row {row.number}: date", missing.message)
            conversions.append(fx)
        problems.raise_if_any()
        _check_currencies(rows, conversions)
        return conversions

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


def _check_currencies(rows: Sequence[Row], conversions: Sequence[TradeFx | None]) -> None:
    """A row whose `currency` is not the one its symbol trades in gave its price in the wrong
    money: converting it as if it were would book another price."""
    problems = Problems()
    for row, fx in zip(rows, conversions, strict=True):
        if row.currency and fx is not None and row.trade.symbol and row.currency != fx.currency:
            problems.add(
                f"row {row.number}: currency",
                f"{row.trade.symbol} trades in {fx.currency}, not {row.currency}:"
                f" give its price and fees in {fx.currency}",
            )
    problems.raise_if_any()
