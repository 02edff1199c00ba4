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
* A row whose `side` is `split` records a stock split as CreateSplit does (splits.py), with the
  trades: `date` its day (`2024-06-10`), `symbol`, `quantity` its ratio as two whole numbers
  `N:D` or `N/D` (`4:1` is a 4-for-1, `1:10` a 1-for-10 reverse split), `price` optional (the
  price of a share after it, at which the fraction below 8 places is paid in cash); `fees` and
  `notes` empty. Its price follows the trade rows' rule: in the stock's trading currency, or in
  the one its `currency` names (any the service knows; empty without a price), converted into
  the portfolio's at the rate of its day (exchange.py, `split_in`). The export writes each split
  so, naming the currency of its price when that is not the stock's own (a euro portfolio's
  split of a dollar stock). A split already recorded for its symbol and day, or on another row,
  is a problem of its `date`; so is one past the portfolio's MAX_SPLITS (of its row).
* Rows are numbered from 1, the first row after the header; blank lines are skipped and not
  counted. A problem is reported as the field `row N: <column>` (or `row N` for the row as a
  whole) with what is wrong; problems that concern the file are reported on `csv`.
* The rows are checked together with the portfolio's existing trades and splits, in time order
  (a split before the trades of its day): a sell is checked against what the earlier rows,
  trades and splits leave; the split rows are recorded with the trades, in one transaction.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.currencies import CURRENCIES, TradeFx
from services.portfolio.domain import Book, Event, Side, Split, Trade, parse_trade
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.order_desk import Orders
from services.portfolio.orders import Order
from services.portfolio.records import RecordedSplit, RecordedTrade, require_portfolio_id
from services.portfolio.repository import SplitRepository
from services.portfolio.splits import MAX_SPLITS, SplitDraft, SplitEffect, apply_split, parse_split
from services.portfolio.trades import BookCheck, CurrencyChanged, Trades
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
# A CSV-only side: a row that records a split (the wire's TradeSide has no such value).
SPLIT_SIDE = "split"
_SIDES = ", ".join([*(s.value for s in Side), SPLIT_SIDE])
# A split's ratio in the `quantity` column: N:D or N/D.
_RATIO = re.compile(r"\s*([0-9]+)\s*[:/]\s*([0-9]+)\s*")
# The columns a split row leaves empty, and why.
_NOT_OF_A_SPLIT = {
    "fees": "a split has no fees",
    "notes": "a split keeps no notes",
}
# A split's fields (splits.py) as the columns that state them.
_SPLIT_COLUMNS = {"numerator": "quantity", "denominator": "quantity"}


@dataclass(frozen=True)
class Row:
    number: int
    trade: Trade
    # The currency the row says its price and fees are in ("": the symbol's own).
    currency: str = ""


@dataclass(frozen=True)
class SplitRow:
    number: int
    split: Split
    # The currency the row says its price is in ("": the symbol's own).
    currency: str = ""


@dataclass(frozen=True)
class Rows:
    """A file's rows: its trades and its splits, each in file order."""

    trades: list[Row]
    splits: list[SplitRow]


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
    """The trade rows of `text` (its split rows: `read_rows`)."""
    return read_rows(text, now=now, max_rows=max_rows).trades


def read_rows(text: str, *, now: datetime, max_rows: int) -> Rows:
    """Every row of `text` as a trade or a split, or InvalidArgument listing what is wrong, by
    row."""
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
    found = Rows([], [])
    for number, cells in enumerate(records, start=1):
        row = _row(number, cells, columns, now, problems)
        if isinstance(row, Row):
            found.trades.append(row)
        elif row is not None:
            found.splits.append(row)
    problems.raise_if_any()
    return found


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
) -> Row | SplitRow | None:
    name = f"row {number}"
    if len(cells) != len(columns):
        problems.add(name, f"has {len(cells)} columns; the header has {len(columns)}")
        return None
    values = dict(zip(columns, cells, strict=True))
    if values["side"].strip().lower() == SPLIT_SIDE:
        return _split_row(number, values, now, problems)
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


def _split_row(
    number: int, values: dict[str, str], now: datetime, problems: Problems
) -> SplitRow | None:
    """A `split` row as the split CreateSplit would record (splits.py's rules), or None with
    its problems added."""
    name = f"row {number}"
    good = True
    for column, why in _NOT_OF_A_SPLIT.items():
        if values.get(column, "").strip():
            problems.add(f"{name}: {column}", f"must be empty on a split row ({why})")
            good = False
    ratio = _RATIO.fullmatch(values["quantity"])
    terms = (2, 1)  # stands in for a ratio that cannot be read, to check the other fields
    try:
        if ratio is not None:
            terms = (int(ratio[1]), int(ratio[2]))
    except ValueError:  # more digits than int() reads: far past MAX_TERM anyway
        ratio = None
    if ratio is None:
        problems.add(
            f"{name}: quantity",
            "must be the split's ratio as N:D in whole numbers (4:1 is a 4-for-1, 1:10 a"
            " 1-for-10 reverse split)",
        )
        good = False
    currency = values.get("currency", "").strip().upper()
    if currency and not values.get("price", "").strip():
        problems.add(
            f"{name}: currency",
            "must be empty on a split row without a price (it names the price's currency)",
        )
        good = False
    elif currency and currency not in CURRENCIES:
        problems.add(f"{name}: currency", f"must be one of {', '.join(CURRENCIES)}")
        good = False
    draft = SplitDraft(
        symbol=values.get("symbol", ""),
        date=values["date"],
        numerator=terms[0],
        denominator=terms[1],
        price=values.get("price", ""),
    )
    try:
        split = parse_split(draft, today=now.astimezone(UTC).date())
    except InvalidArgument as invalid:
        for field, description in invalid.fields:
            problems.add(f"{name}: {_SPLIT_COLUMNS.get(field, field)}", description)
        return None
    return SplitRow(number, split, currency) if good else None


class SplitEffects:
    """What the file's splits do, taken down as a check's replay applies them."""

    def __init__(self, recorded: Sequence[RecordedSplit] = ()) -> None:
        self._of = {id(r.split): r for r in recorded}
        self.found: list[SplitEffect] = []

    def apply(self, book: Book, split: Split) -> None:
        recorded = self._of.get(id(split))
        if recorded is None:
            book.record(split)  # one recorded before
        else:
            self.found.append(apply_split(book, recorded))


def book_check(
    rows: Sequence[Row], splits: Sequence[SplitRow] = (), effects: SplitEffects | None = None
) -> BookCheck:
    """A check for Trades.append that applies the rows (and the existing trades and splits they
    come before) in time order and names every row the book refuses (a sell of more than is
    held then, a withdrawal beyond cash). With split rows (given to Trades.append as they are
    here, so that `events` is the whole history), first a split row that another split of its
    symbol and day precedes, recorded or a row, and one past MAX_SPLITS; `effects` takes down
    what each of them does."""
    applied = effects or SplitEffects()

    def check(book: Book, events: Sequence[Event], new: Sequence[Trade]) -> None:
        row_of = {trade.sequence: row.number for trade, row in zip(new, rows, strict=True)}
        problems = Problems()
        if splits:
            _check_split_rows(splits, events, problems)
            problems.raise_if_any()
        applied.found.clear()
        for trade in events:
            if isinstance(trade, Split):  # a split always applies (its later trades may not)
                applied.apply(book, trade)
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


def _check_split_rows(
    splits: Sequence[SplitRow], events: Sequence[Event], problems: Problems
) -> None:
    """One split per symbol and day (CreateSplit's SPLIT_EXISTS), and at most MAX_SPLITS in
    the portfolio (its TOO_MANY_SPLITS), as problems of the rows."""
    new = {id(row.split) for row in splits}
    recorded = [e for e in events if isinstance(e, Split) and id(e) not in new]
    taken: dict[tuple[str, date], int | None] = {(s.symbol, s.day): None for s in recorded}
    for count, row in enumerate(splits, start=len(recorded) + 1):
        split = row.split
        key = (split.symbol, split.day)
        what = f"a split of {split.symbol} on {split.day.isoformat()}"
        if key in taken:
            other = taken[key]
            problems.add(
                f"row {row.number}: date",
                f"{what} is recorded already; delete it first to change it"
                if other is None
                else f"{what} is on row {other} already",
            )
            continue
        taken[key] = row.number
        if count == MAX_SPLITS + 1:
            problems.add(
                f"row {row.number}",
                f"a portfolio keeps at most {MAX_SPLITS} splits: it has {len(recorded)}, and"
                f" the rows up to this one make {count}",
            )


@dataclass(frozen=True)
class Imported:
    """What an import did: the trades and splits recorded, or in a dry run those that would
    be (without ids), each split with what it does in the replay."""

    trades: list[RecordedTrade]
    splits: list[SplitEffect]
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
        orders: Orders | None = None,
    ) -> None:
        """`orders`: the open orders an imported split adjusts, as CreateSplit does."""
        self._trades = trades
        self._orders = orders
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
        settle: Callable[[AsyncSession, Imported], Awaitable[None]] | None = None,
    ) -> Imported:
        """The trades and splits recorded (or, in a dry run, those that would be: without ids);
        `settle` commits with them."""
        portfolio_id = require_portfolio_id(portfolio_id)
        now = self._clock()
        read = read_rows(text, now=now, max_rows=self._max_rows)
        rows, split_rows = read.trades, read.splits
        await self._check_symbols(rows)
        trades = [r.trade for r in rows]
        conversions: list[TradeFx | None] = []
        currency = None
        if self._exchange is not None:
            currency = await self._exchange.portfolio_currency(user_id, portfolio_id)
            conversions = await self._convert(rows, trades, currency)
            split_rows = await self._convert_splits(split_rows, currency)
        splits = [
            RecordedSplit("" if dry_run else str(uuid.uuid4()), portfolio_id, r.split, now)
            for r in split_rows
        ]
        effects = SplitEffects(splits)
        changed: list[Order] = []

        async def settle_all(session: AsyncSession, recorded: Sequence[RecordedTrade]) -> None:
            # Under the portfolio's lock, with the new splits stored: the open orders of their
            # symbols brought to their terms under every split, as CreateSplit does (splits.py).
            changed.clear()
            if self._orders is not None and splits:
                every = [r.split for r in await SplitRepository(session).of(portfolio_id)]
                for symbol in sorted({r.split.symbol for r in splits}):
                    follow = self._orders.follow_splits(session, portfolio_id, symbol, every)
                    changed.extend(await follow)
            if settle is not None:
                await settle(session, Imported(list(recorded), list(effects.found), dry_run))

        try:
            _, recorded = await self._trades.append(
                user_id,
                portfolio_id,
                trades,
                check=book_check(rows, split_rows, effects),
                dry_run=dry_run,
                settle=settle_all,
                conversions=conversions,
                currency=currency,
                splits=splits,
            )
        except CurrencyChanged:  # changed between the read and the write: nothing recorded
            raise FailedPrecondition(
                "the portfolio's currency changed during the import; send it again",
                reason="CURRENCY_CHANGED",
            ) from None
        if not dry_run:
            await self._hub.trades_recorded(user_id, recorded)
            if self._orders is not None:
                await self._orders.announce(changed)
        return Imported(recorded, effects.found, dry_run)

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

    async def _convert_splits(self, rows: Sequence[SplitRow], currency: str) -> list[SplitRow]:
        """Each split row with its price in the portfolio's currency, as the trade rows'
        (exchange.py, `split_in`); a row that cannot be (a symbol the market does not list
        with no `currency` named, a day before any rate of its currency) is named."""
        assert self._exchange is not None
        problems = Problems()
        converted: list[SplitRow] = []
        for row in rows:
            try:
                split = await self._exchange.split_in(row.split, currency, given_in=row.currency)
            except NotFound as missing:
                column = "date" if missing.reason == "NO_EXCHANGE_RATE" else "symbol"
                problems.add(f"row {row.number}: {column}", missing.message)
                continue
            except InvalidArgument as invalid:
                for field, description in invalid.fields:
                    problems.add(f"row {row.number}: {field}", description)
                continue
            converted.append(replace(row, split=split))
        problems.raise_if_any()
        return converted

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
