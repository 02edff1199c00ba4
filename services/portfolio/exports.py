"""A portfolio's trades and positions, streamed as CSV or JSON in chunks of bounded size.

Trades are read a page at a time in ledger order (oldest first), all in one snapshot (a trade
recorded meanwhile, back-dated before a page already read, would otherwise leave the file with
a sell of shares it never bought), and written as they come into a spool: memory up to
SPOOL_MEMORY, then a temporary file, so a large portfolio is never held as text in memory and
no transaction stays open while a slow client reads. The book replays alongside, and its
positions (valued at current prices) close the export.

CSV: the trades table (its first columns are the import's), a blank line, then the positions
table, each with its header row. Each split is a row of the trades table in its place (before
the trades of its day, as the book replays it): `side` split, `date` its day, `quantity` its
ratio as N:D, `price` its cash-in-lieu price if it has one (in the portfolio's currency, which
`currency` names when the stock trades in another: the import reads an unnamed price as a
trade row's, in the stock's currency), the other columns empty; the import records it as
CreateSplit would. Notes that a spreadsheet would run as a formula (starting
with = + - @) are prefixed with an apostrophe. JSON: one object,
`{"portfolio": {...}, "exportedAt": ..., "trades": [...], "positions": [...]}`, with the wire's
lowerCamelCase names and decimal strings.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from google.api import httpbody_pb2
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.domain import (
    Book,
    Position,
    Split,
    order_key,
    present_money,
    present_price,
    present_quantity,
    present_ratio,
    present_sum,
)
from services.portfolio.imports import (
    COLUMNS,
    EXPORT_COLUMNS,
    FORMULA_MARK,
    FORMULA_START,
    POSITIONS_HEADER,
    SPLIT_SIDE,
)
from services.portfolio.messages import as_given
from services.portfolio.prices import Prices
from services.portfolio.records import (
    Portfolio,
    RecordedTrade,
    portfolio_not_found,
    require_portfolio_id,
)
from services.portfolio.repository import (
    PortfolioRepository,
    TradeRepository,
    splits_by_portfolio,
)
from services.runtime.clock import utc_now
from services.runtime.db import Database
from services.runtime.errors import DomainError, InvalidArgument

CHUNK_BYTES = 64 * 1024
SPOOL_MEMORY = 1024 * 1024
PAGE_SIZE = 500
CSV_TYPE = "text/csv; charset=utf-8"
JSON_TYPE = "application/json"

# The import's columns first, then the export's own (read back by the import as they are).
TRADE_COLUMNS = (*COLUMNS, *EXPORT_COLUMNS)
POSITION_COLUMNS = POSITIONS_HEADER


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _trade_fields(recorded: RecordedTrade) -> dict[str, str]:
    """A trade as the API shows it: its price, fees and amount as given, in the currency it was
    made in (`currency`, converted into the portfolio's at `fx_rate`), so that an export read
    back by the import (which converts them at the day's rate) records the same trade."""
    trade = recorded.trade
    return {
        "date": iso(trade.executed_at),
        "side": trade.side.value,
        "symbol": trade.symbol,
        "quantity": present_quantity(trade.quantity),
        "price": present_price(trade.price),
        "fees": present_price(trade.fees),
        "notes": trade.notes,
        "amount": present_money(trade.amount),
        "id": trade.id,
        "price_source": recorded.price_source,
        "created_at": iso(recorded.created_at),
        "currency": "",
        "fx_rate": "",
    } | as_given(recorded)


def _position_fields(position: Position) -> dict[str, str]:
    average = position.average_cost
    return {
        "symbol": position.symbol,
        "quantity": present_quantity(position.quantity),
        "average_cost": present_price(average) if average is not None else "",
        "cost_basis": present_money(position.cost_basis),
        "price": present_price(position.price),
        "market_value": present_money(position.market_value),
        "unrealized_gain": present_sum(position.market_value, -position.cost_basis),
        "realized_gain": present_money(position.realized_gain),
        "dividends": present_money(position.dividends),
        "weight": present_ratio(position.weight),
    }


def _split_fields(split: Split) -> dict[str, Any]:
    """A split as CreateSplit takes it, so that it can be recorded again."""
    return {
        "symbol": split.symbol,
        "date": split.day.isoformat(),
        "numerator": int(split.ratio),
        "denominator": split.of,
        "price": "" if split.price is None else present_price(split.price),
    }


def _split_row(split: Split, currency: str) -> dict[str, str]:
    """A split as a row of the CSV's trades table (the import reads it back, imports.py);
    `currency`: the one its price is in, or "" for its stock's own."""
    return {c: "" for c in TRADE_COLUMNS} | {
        "date": split.day.isoformat(),
        "side": SPLIT_SIDE,
        "symbol": split.symbol,
        "quantity": f"{int(split.ratio)}:{split.of}",
        "price": "" if split.price is None else present_price(split.price),
        "currency": "" if split.price is None else currency,
    }


def _camel(name: str) -> str:
    if name == "date":
        return "executedAt"  # as the Trade message names it
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Writer(Protocol):
    content_type: str

    def begin(self, portfolio: Portfolio, at: datetime) -> str: ...
    def trade(self, recorded: RecordedTrade) -> str: ...
    def split(self, split: Split, currency: str) -> str: ...
    def positions(self, positions: list[Position], splits: list[Split]) -> str: ...


class CsvWriter:
    content_type = CSV_TYPE

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")

    def begin(self, portfolio: Portfolio, at: datetime) -> str:
        return self._line(TRADE_COLUMNS)

    def trade(self, recorded: RecordedTrade) -> str:
        fields = _trade_fields(recorded)
        if fields["notes"].startswith(FORMULA_START):
            fields["notes"] = FORMULA_MARK + fields["notes"]
        return self._line([fields[c] for c in TRADE_COLUMNS])

    def split(self, split: Split, currency: str) -> str:
        fields = _split_row(split, currency)
        return self._line([fields[c] for c in TRADE_COLUMNS])

    def positions(self, positions: list[Position], splits: list[Split]) -> str:
        """The positions' table (the splits are rows of the trades table)."""
        lines = ["\r\n", self._line(POSITION_COLUMNS)]
        for position in positions:
            fields = _position_fields(position)
            lines.append(self._line([fields[c] for c in POSITION_COLUMNS]))
        return "".join(lines)

    def _line(self, cells: Any) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._csv.writerow(cells)
        return self._buffer.getvalue()


class JsonWriter:
    content_type = JSON_TYPE

    def __init__(self) -> None:
        self._first = True

    def begin(self, portfolio: Portfolio, at: datetime) -> str:
        head = {
            "id": portfolio.id,
            "name": portfolio.name,
            "description": portfolio.description,
            "currency": portfolio.base_currency,
            "kind": portfolio.kind.value,
        }
        return f'{{"portfolio": {json.dumps(head)}, "exportedAt": "{iso(at)}", "trades": ['

    def trade(self, recorded: RecordedTrade) -> str:
        fields = {_camel(k): v for k, v in _trade_fields(recorded).items()}
        separator = "" if self._first else ", "
        self._first = False
        return separator + json.dumps(fields)

    def split(self, split: Split, currency: str) -> str:
        return ""  # listed apart, as CreateSplit takes them (`positions`)

    def positions(self, positions: list[Position], splits: list[Split]) -> str:
        items = [{_camel(k): v for k, v in _position_fields(p).items()} for p in positions]
        recorded = [_split_fields(s) for s in splits]
        return f'], "splits": {json.dumps(recorded)}, "positions": {json.dumps(items)}}}\n'


WRITERS: dict[str, Callable[[], Writer]] = {"csv": CsvWriter, "json": JsonWriter}


class Exports:
    def __init__(
        self,
        db: Database,
        prices: Prices,
        *,
        clock: Callable[[], datetime] = utc_now,
        chunk_bytes: int = CHUNK_BYTES,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._db = db
        self._prices = prices
        self._clock = clock
        self._chunk_bytes = chunk_bytes
        self._page_size = page_size

    async def open(
        self, user_id: str, portfolio_id: str, format_: str
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """Check the request, then return the stream: a bad request fails before any chunk."""
        portfolio_id = require_portfolio_id(portfolio_id)
        key = (format_ or "csv").strip().lower()
        if key not in WRITERS:
            raise InvalidArgument.field("format", "must be csv or json")
        async with self._db.reading() as session:
            portfolio = await PortfolioRepository(session).get(portfolio_id, user_id)
        if portfolio is None:
            raise portfolio_not_found(portfolio_id)
        return self._stream(portfolio, WRITERS[key]())

    async def _stream(
        self, portfolio: Portfolio, writer: Writer
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            spool.write(writer.begin(portfolio, self._clock()).encode())
            book = Book(portfolio.kind.policy)
            async with self._db.snapshot() as session:
                # The portfolio's splits, applied in their place among the trades: the
                # positions are the ones the portfolio shows.
                every_split = (await splits_by_portfolio(session, [portfolio.id]))[portfolio.id]
                named = await self._price_currencies(every_split, portfolio.base_currency)
                splits = deque(every_split)
                async for recorded in self._trades(session, portfolio.id):
                    while splits and order_key(splits[0]) < order_key(recorded.trade):
                        split = splits.popleft()
                        spool.write(writer.split(split, named.get(split.symbol, "")).encode())
                        book.record(split)
                    book.record(recorded.trade)
                    spool.write(writer.trade(recorded).encode())
            for split in splits:
                spool.write(writer.split(split, named.get(split.symbol, "")).encode())
                book.record(split)
            prices = await self._prices.current(book.open_symbols(), portfolio.base_currency)
            spool.write(writer.positions(book.positions(prices), every_split).encode())
            spool.seek(0)
            while data := spool.read(self._chunk_bytes):
                yield httpbody_pb2.HttpBody(content_type=writer.content_type, data=data)

    async def _price_currencies(self, splits: Sequence[Split], currency: str) -> dict[str, str]:
        """The currency to name on each priced split's row, by symbol: the portfolio's, which
        the price is in, unless the stock trades in it too (the import reads an unnamed price
        in the stock's currency). Named whenever the market cannot say now: never wrong."""
        exchange = self._prices.exchange
        if exchange is None:  # one currency for every stock and portfolio
            return {}
        named: dict[str, str] = {}
        for symbol in sorted({s.symbol for s in splits if s.price is not None}):
            try:
                trading = await exchange.currency_of(symbol, "")
            except DomainError:
                trading = ""
            named[symbol] = "" if trading == currency else currency
        return named

    async def _trades(
        self, session: AsyncSession, portfolio_id: str
    ) -> AsyncIterator[RecordedTrade]:
        after: tuple[datetime, int] | None = None
        repository = TradeRepository(session)
        while True:
            page = await repository.batch_after(portfolio_id, after, self._page_size)
            for recorded in page:
                yield recorded
            if len(page) < self._page_size:
                return
            last = page[-1].trade
            after = (last.executed_at, last.sequence)
