"""Stored books decoded once per version of their text, for the leader's jobs that read every
portfolio's stored book each round (the market-split round keeps the symbols each book traded,
the revaluation what its totals need).

Per portfolio, a digest of its book's text as the database gives it, and what the job made of
the book decoded from that text. A round digests every text it reads; a book whose text is the
one the last round read is not decoded again, and one whose text differs (a trade, an edit or a
delete, a split: recorded on this replica or any other, the stored text alone decides) is. A
portfolio the round did not read (deleted since) is forgotten when the round finishes, and a
round that fails leaves what the last finished one kept.

What is kept can be bounded: the portfolios read first in a round are kept while the weight of
what is kept (`weight`, one a portfolio unless said otherwise) stays within `keep_at_most`; a book
beyond is decoded every round, as though it changed each time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.portfolio import book_states
from services.portfolio.book_states import StoredBook

T = TypeVar("T")

DIGEST_SIZE = 16


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_SIZE).digest()


@dataclass(frozen=True, slots=True)
class Kept(Generic[T]):
    """A stored book as a round read it: the digest of its text, and what was made of it."""

    digest: bytes
    value: T


class DecodedBooks(Generic[T]):
    """What a job made of each stored book (`derive` of the decoded book), kept from round to
    round by the digest of the book's text (see the module docstring). `decode` reads a stored
    text (book_states.decode: None for a text of another format, which the job replays).
    `keep_at_most` bounds the sum of `weight` over what is kept (None: no bound)."""

    def __init__(
        self,
        derive: Callable[[StoredBook], T],
        *,
        decode: Callable[[str], StoredBook | None] = book_states.decode,
        keep_at_most: int | None = None,
        weight: Callable[[T], int] = lambda _: 1,
    ) -> None:
        self._derive = derive
        self._decode = decode
        self.keep_at_most = keep_at_most
        self.weight = weight
        self._kept: dict[str, Kept[T]] = {}
        # Stored books decoded so far: one per book new or changed since the round before.
        self.decoded = 0

    def __len__(self) -> int:
        """Portfolios kept (as the last finished round read them)."""
        return len(self._kept)

    def round(self) -> BookRound[T]:
        """A new round: `read` each batch of texts, then `finish`."""
        return BookRound(self)

    def look_up(self, portfolio_id: str, text: str) -> tuple[Kept[T] | None, bool]:
        """The portfolio's book as kept, when `text` is the one the last finished round read;
        else decoded from `text` (None: of another format), and changed."""
        now = digest(text)
        kept = self._kept.get(portfolio_id)
        if kept is not None and kept.digest == now:
            return kept, False
        self.decoded += 1
        book = self._decode(text)
        return (None if book is None else Kept(now, self._derive(book))), True

    def keep(self, seen: dict[str, Kept[T]]) -> None:
        """What a finished round read, and only that (a portfolio it did not read is gone)."""
        self._kept = seen

    def forget(self) -> None:
        """Keep nothing (a replica that no longer leads: its next round decodes every book)."""
        self._kept = {}


class BookRound(Generic[T]):
    """One round's reading of the stored books, batch by batch."""

    def __init__(self, books: DecodedBooks[T]) -> None:
        self._books = books
        self._seen: dict[str, Kept[T]] = {}
        self._weight = 0  # of what `_seen` holds
        # Portfolios whose text differs from what the last finished round read, or which it did
        # not read (new, or beyond what is kept).
        self.changed: set[str] = set()

    def read(self, texts: Mapping[str, str]) -> dict[str, T]:
        """What was made of each stored book (`texts`: portfolio id -> text as stored), decoded
        only when its text differs from what the last round read; a book of another format is
        left out (the caller replays it)."""
        books = self._books
        room = books.keep_at_most
        found: dict[str, T] = {}
        for portfolio_id, text in texts.items():
            kept, changed = books.look_up(portfolio_id, text)
            if changed:
                self.changed.add(portfolio_id)
            if kept is None:
                continue
            found[portfolio_id] = kept.value
            if room is None:
                self._seen[portfolio_id] = kept
                continue
            weight = books.weight(kept.value)
            if self._weight + weight <= room:
                self._seen[portfolio_id] = kept
                self._weight += weight
        return found

    def finish(self) -> None:
        """Every portfolio was read: keep what this round read (`DecodedBooks.keep`)."""
        self._books.keep(self._seen)
