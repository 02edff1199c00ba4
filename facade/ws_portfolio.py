"""/ws/portfolio: what a socket follows, checked here and kept by the feed
(facade/portfolio_feed.py); the protocol: README, "Streams and WebSockets". An accepted
(un)subscribe is not answered: send a `ping` after it to know it is in effect (messages are
handled in order)."""

from __future__ import annotations

import re
from typing import Any

from facade.bridge import unknown_type
from facade.outbox import ClientSocket, SocketError
from facade.portfolio_feed import FeedSocket, PortfolioFeed
from facade.sockets import SocketUser
from services.portfolio.trading import SYMBOL

PATH = "/ws/portfolio"
MAX_SYMBOLS = 200
MAX_PORTFOLIOS = 100
FIELDS = frozenset({"type", "symbols", "portfolioIds"})
# As the portfolio service spells symbols (AAPL, BRK.B, ^GSPC), compared upper-case.
_PORTFOLIO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _invalid(message: str) -> SocketError:
    return SocketError("VALIDATION_ERROR", message)


def _strings(message: dict[str, Any], field: str, limit: int) -> list[str]:
    value = message.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"{field} must be a list of strings")
    if len(value) > limit:
        raise _invalid(f"{field} holds {len(value)} items; at most {limit} per socket")
    return value


def read_targets(message: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The symbols (upper-cased) and portfolio ids a subscribe or unsubscribe names."""
    unknown = sorted(set(message) - FIELDS)
    if unknown:
        raise _invalid(f"unknown field {unknown[0]}; known: portfolioIds, symbols")
    if "symbols" not in message and "portfolioIds" not in message:
        raise _invalid(f"{message['type']} needs symbols and/or portfolioIds")
    symbols = set()
    for text in _strings(message, "symbols", MAX_SYMBOLS):
        symbol = text.strip().upper()
        if not SYMBOL.fullmatch(symbol):
            raise _invalid(f"symbols: {text[:40]!r} is not a ticker symbol")
        symbols.add(symbol)
    portfolios = set()
    for text in _strings(message, "portfolioIds", MAX_PORTFOLIOS):
        if not _PORTFOLIO_ID.fullmatch(text):
            raise _invalid(f"portfolioIds: {text[:70]!r} is not a portfolio id")
        portfolios.add(text)
    return symbols, portfolios


class PortfolioConversation:
    """One authenticated /ws/portfolio socket."""

    def __init__(self, feed: PortfolioFeed, client: ClientSocket, user: SocketUser) -> None:
        self.user = user  # the feed calls no service as the user: a renewal changes nothing
        self._feed = feed
        self._socket = FeedSocket(client, user.user_id)
        feed.join(self._socket)

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        socket = self._socket
        if kind == "subscribe":
            symbols, portfolios = read_targets(message)
            if len(socket.symbols | symbols) > MAX_SYMBOLS:
                raise _invalid(f"a socket follows at most {MAX_SYMBOLS} symbols")
            if len(socket.portfolios | portfolios) > MAX_PORTFOLIOS:
                raise _invalid(f"a socket follows at most {MAX_PORTFOLIOS} portfolios")
            self._feed.follow(socket, symbols, portfolios)
        elif kind == "unsubscribe":
            self._feed.unfollow(socket, *read_targets(message))
        else:
            raise unknown_type(kind, ("subscribe", "unsubscribe"))

    def end(self) -> None:
        self._feed.leave(self._socket)
