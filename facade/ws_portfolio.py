"""/ws/portfolio: what a socket follows, read by the bridge with the rules of the proto's
Subscription and kept by the feed (facade/portfolio_feed.py); the protocol: README, "Streams and
WebSockets". An accepted (un)subscribe is not answered: send a `ping` after it to know it is in
effect (messages are handled in order)."""

from __future__ import annotations

from typing import Any, cast

from buf.validate import validate_pb2
from stockfolio.portfolio.v1 import portfolio_pb2

from facade.bridge import Bridge
from facade.outbox import ClientSocket, SocketError
from facade.portfolio_feed import FeedSocket, PortfolioFeed
from facade.sockets import SocketUser

PATH = "/ws/portfolio"


def _most(name: str) -> int:
    """What a socket follows in all: as many as one message may name (the proto's max_items)."""
    options = portfolio_pb2.Subscription.DESCRIPTOR.fields_by_name[name].GetOptions()
    return int(options.Extensions[validate_pb2.field].repeated.max_items)


MAX_SYMBOLS = _most("symbols")
MAX_PORTFOLIOS = _most("portfolio_ids")


def _invalid(message: str) -> SocketError:
    return SocketError("VALIDATION_ERROR", message)


def read_targets(bridge: Bridge, kind: str, message: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The symbols (upper-cased) and portfolio ids a subscribe or unsubscribe names."""
    request = cast(portfolio_pb2.Subscription, bridge.request(kind, message))
    if message.keys() <= {"type"}:  # the bridge refused any key that is not a field
        raise _invalid(f"{kind} needs symbols and/or portfolioIds")
    return {symbol.strip().upper() for symbol in request.symbols}, set(request.portfolio_ids)


class PortfolioConversation:
    """One authenticated /ws/portfolio socket."""

    def __init__(self, feed: PortfolioFeed, client: ClientSocket, user: SocketUser) -> None:
        self.user = user  # the feed calls no service as the user: a renewal changes nothing
        self._feed = feed
        self._socket = FeedSocket(client, user.user_id)
        feed.join(self._socket)

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        socket = self._socket
        symbols, portfolios = read_targets(self._feed.subscriptions, kind, message)
        if kind == "unsubscribe":
            self._feed.unfollow(socket, symbols, portfolios)
            return
        if len(socket.symbols | symbols) > MAX_SYMBOLS:
            raise _invalid(f"a socket follows at most {MAX_SYMBOLS} symbols")
        if len(socket.portfolios | portfolios) > MAX_PORTFOLIOS:
            raise _invalid(f"a socket follows at most {MAX_PORTFOLIOS} portfolios")
        self._feed.follow(socket, symbols, portfolios)

    def end(self) -> None:
        self._feed.leave(self._socket)
