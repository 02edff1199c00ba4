"""A portfolio's stored book (its `BookState` and the highest sequence of its trades) as the
portfolios.book column holds it: JSON text, every decimal as its exact string (`str(Decimal)`
gives back the same digits and exponent), times in ISO 8601 with their offset. `FORMAT` names
the encoding; a stored book of another format is not read (the caller replays instead).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.portfolio.domain import BookState, CashPolicy, HoldingState, Lots

FORMAT = 3

_TOTALS = ("cash", "dividends", "fees", "cash_side_fees", "deposits", "withdrawals", "funded")
_HOLDING_NUMBERS = (
    "quantity",
    "fifo_basis",
    "average_basis",
    "realized_fifo",
    "realized_average",
    "dividends",
    "fees",
)


@dataclass(frozen=True)
class StoredBook:
    """A portfolio's book state, and the highest sequence of its trades (the next trade takes
    the one after; a back-dated trade makes it differ from the state's `through`)."""

    state: BookState
    last_sequence: int


def encode(book: StoredBook) -> str:
    state = book.state
    document: dict[str, Any] = {
        "format": FORMAT,
        "last_sequence": book.last_sequence,
        "policy": state.policy.value,
        "through": _encode_key(state.through),
        **{name: str(getattr(state, name)) for name in _TOTALS},
        "holdings": [_encode_holding(h) for h in state.holdings],
    }
    return json.dumps(document, separators=(",", ":"))


def decode(text: str) -> StoredBook | None:
    """The stored book, or None when it is of another format."""
    document = json.loads(text)
    if document.get("format") != FORMAT:
        return None
    through = document["through"]
    totals = {name: Decimal(document[name]) for name in _TOTALS}
    state = BookState(
        policy=CashPolicy(document["policy"]),
        through=None
        if through is None
        else (datetime.fromisoformat(through[0]), int(through[1]), int(through[2])),
        holdings=tuple(_decode_holding(h) for h in document["holdings"]),
        **totals,
    )
    return StoredBook(state, int(document["last_sequence"]))


def _encode_key(key: tuple[datetime, int, int] | None) -> list[Any] | None:
    return None if key is None else [_encode_time(key[0]), key[1], key[2]]


def _encode_holding(holding: HoldingState) -> dict[str, Any]:
    return {
        "symbol": holding.symbol,
        "lots": holding.lots.to_text(),
        **{name: str(getattr(holding, name)) for name in _HOLDING_NUMBERS},
        "last_price": None if holding.last_price is None else str(holding.last_price),
        "last_price_at": (
            None if holding.last_price_at is None else _encode_time(holding.last_price_at)
        ),
    }


def _decode_holding(document: dict[str, Any]) -> HoldingState:
    symbol = document["symbol"]
    last_price, last_price_at = document["last_price"], document["last_price_at"]
    numbers = {name: Decimal(document[name]) for name in _HOLDING_NUMBERS}
    return HoldingState(
        symbol=symbol,
        lots=Lots.from_text(symbol, document["lots"]),
        last_price=None if last_price is None else Decimal(last_price),
        last_price_at=None if last_price_at is None else datetime.fromisoformat(last_price_at),
        **numbers,
    )


def _encode_time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()
