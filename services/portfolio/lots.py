"""A holding's open lots, oldest first: what a BUY opens and a SELL consumes from the front.

`Lots` behaves as the queue the book needs (append the newest, take or replace the oldest,
iterate), and has a compact text form for a stored book. Lots it was given as text are decoded
only when they are reached, so a buy or a sell on a resumed book touches only the lots it needs,
however many are open; its text form passes the untouched ones through as they came.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.portfolio.trading import Split

# Between lots, and between a lot's fields (neither occurs in a decimal or an ISO 8601 time).
_LOT_END = ";"
_FIELD_END = ","


@dataclass(frozen=True)
class Lot:
    """Shares one BUY opened and no SELL has consumed yet. `cost` includes the buy's fees."""

    symbol: str
    quantity: Decimal
    cost: Decimal
    opened_at: datetime
    sequence: int

    @property
    def unit_cost(self) -> Decimal:
        return self.cost / self.quantity

    def split(self, split: Split) -> Lot:
        return replace(self, quantity=split.scale(self.quantity))


class Lots:
    """The open lots of one symbol, oldest first: the decoded oldest (`_head`), then those still
    in text (`_text`, each ending with `_LOT_END`), then those appended since (`_tail`)."""

    __slots__ = ("_head", "_symbol", "_tail", "_text")

    def __init__(self, symbol: str, lots: Iterable[Lot] = (), *, text: str = "") -> None:
        self._symbol = symbol
        self._head: deque[Lot] = deque(lots)
        self._text = text
        self._tail: list[Lot] = []

    @classmethod
    def from_text(cls, symbol: str, text: str) -> Lots:
        return cls(symbol, text=text)

    def to_text(self) -> str:
        """Every lot, oldest first, each as quantity, cost, opened at (UTC) and sequence; the
        lots still in the text they came in are copied as they are."""
        head = "".join(_encode(lot) for lot in self._head)
        tail = "".join(_encode(lot) for lot in self._tail)
        return head + self._text + tail

    def copy(self) -> Lots:
        other = Lots(self._symbol, self._head, text=self._text)
        other._tail = list(self._tail)
        return other

    # -- the queue ------------------------------------------------------------------------

    def append(self, lot: Lot) -> None:
        if self._text:
            self._tail.append(lot)
        else:
            self._head.append(lot)

    def oldest(self) -> Lot:
        """The oldest lot; IndexError when there is none."""
        self._reach_oldest()
        return self._head[0]

    def replace_oldest(self, lot: Lot) -> None:
        self._reach_oldest()
        self._head[0] = lot

    def take_oldest(self) -> Lot:
        self._reach_oldest()
        return self._head.popleft()

    def clear(self) -> None:
        self._head.clear()
        self._text = ""
        self._tail.clear()

    def __bool__(self) -> bool:
        return bool(self._head or self._text or self._tail)

    def __len__(self) -> int:
        return len(self._head) + self._text.count(_LOT_END) + len(self._tail)

    def __iter__(self) -> Iterator[Lot]:
        self._decode_all()
        return iter(tuple(self._head))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lots):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Lots({self._symbol!r}, {list(self)!r})"

    # -- decoding as reached ------------------------------------------------------------------

    def _reach_oldest(self) -> None:
        if self._head:
            return
        if self._text:
            end = self._text.index(_LOT_END)
            self._head.append(_decode(self._symbol, self._text[:end]))
            self._text = self._text[end + 1 :]
            if not self._text:
                self._move_tail()
        elif self._tail:
            self._move_tail()

    def _decode_all(self) -> None:
        if self._text:
            for part in self._text.split(_LOT_END)[:-1]:
                self._head.append(_decode(self._symbol, part))
            self._text = ""
        self._move_tail()

    def _move_tail(self) -> None:
        self._head.extend(self._tail)
        self._tail.clear()


def _encode(lot: Lot) -> str:
    opened = lot.opened_at.astimezone(UTC).isoformat()
    fields = (str(lot.quantity), str(lot.cost), opened, str(lot.sequence))
    return _FIELD_END.join(fields) + _LOT_END


def _decode(symbol: str, text: str) -> Lot:
    quantity, cost, opened, sequence = text.split(_FIELD_END)
    return Lot(
        symbol, Decimal(quantity), Decimal(cost), datetime.fromisoformat(opened), int(sequence)
    )
