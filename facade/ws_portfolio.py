"""/ws/portfolio: what a socket follows (symbols, portfolios, watchlists as they change), read by
the bridge and kept by the feed (README, "Streams and WebSockets" and "Watchlists")."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import grpc
from buf.validate import validate_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from facade.bridge import Bridge, call_metadata, failure
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


class Targets:
    """What one subscribe or unsubscribe names: symbols (upper-cased), portfolio ids and
    watchlist ids."""

    def __init__(self, request: portfolio_pb2.Subscription) -> None:
        # Interned: every socket following a symbol holds the one string (10,000 sockets of
        # 10 symbols held 100,000 copies).
        self.symbols = {sys.intern(symbol.strip().upper()) for symbol in request.symbols}
        self.portfolios = set(request.portfolio_ids)
        self.watchlists = list(dict.fromkeys(request.watchlist_ids))


def read_subscription(bridge: Bridge, kind: str, message: dict[str, Any]) -> Targets:
    request = cast(portfolio_pb2.Subscription, bridge.request(kind, message))
    if message.keys() <= {"type"}:  # the bridge refused any key that is not a field
        raise _invalid(f"{kind} needs symbols, watchlistIds and/or portfolioIds")
    return Targets(request)


class PortfolioConversation:
    """One authenticated /ws/portfolio socket."""

    def __init__(
        self,
        feed: PortfolioFeed,
        client: ClientSocket,
        user: SocketUser,
        *,
        portfolio: Callable[[], grpc.aio.Channel] | None = None,
    ) -> None:
        """`portfolio`: the portfolio service's channel, to read the watchlists named."""
        self.user = user  # renewed with the socket's token: watchlists are read as the user
        self._feed = feed
        self._portfolio = portfolio
        self._socket = FeedSocket(client, user.user_id, self._list_changed)
        self._named: set[str] = set()  # symbols the socket named itself
        self._lists: dict[str, Watched] = {}  # watchlist id -> its symbols as last known
        # Lists being read now -> the newest change heard meanwhile (None: none yet): a change
        # that overtakes the read must not be lost to it.
        self._reading: dict[str, Watched | None] = {}
        feed.join(self._socket)

    async def receive(self, kind: str, message: dict[str, Any]) -> None:
        socket = self._socket
        targets = read_subscription(self._feed.subscriptions, kind, message)
        if kind == "unsubscribe":
            self._named -= targets.symbols
            for watchlist_id in targets.watchlists:
                self._lists.pop(watchlist_id, None)
            self._feed.unfollow(socket, socket.symbols - self._followed(), targets.portfolios)
            return
        read = await self._read_lists([w for w in targets.watchlists if w not in self._lists])
        wanted = self._followed(targets.symbols, *(watched.symbols for watched in read.values()))
        if len(wanted) > MAX_SYMBOLS:
            raise _invalid(f"a socket follows at most {MAX_SYMBOLS} symbols")
        if len(socket.portfolios | targets.portfolios) > MAX_PORTFOLIOS:
            raise _invalid(f"a socket follows at most {MAX_PORTFOLIOS} portfolios")
        self._named |= targets.symbols
        self._lists.update(read)
        self._feed.follow(socket, wanted, targets.portfolios)

    async def _read_lists(self, ids: list[str]) -> dict[str, Watched]:
        """The lists as they are now: as read, or as changed while they were read."""
        for watchlist_id in ids:
            self._reading.setdefault(watchlist_id, None)
        try:
            read = {w: await self._watchlist(w) for w in ids}
        finally:
            heard = {w: self._reading.pop(w, None) for w in ids}
        for watchlist_id, change in heard.items():
            if change is not None and change.supersedes(read[watchlist_id]):
                read[watchlist_id] = change
        return {w: watched for w, watched in read.items() if not watched.deleted}

    def end(self) -> None:
        self._feed.leave(self._socket)

    def _list_changed(self, change: portfolio_pb2.WatchlistChange) -> None:
        """A list this socket follows was edited or deleted: follow it as it is now."""
        changed = Watched.of(change.symbols, change.updated_at, deleted=change.deleted)
        if change.id in self._reading:
            if changed.supersedes(self._reading[change.id]):
                self._reading[change.id] = changed
            return
        known = self._lists.get(change.id)
        if known is None or not changed.supersedes(known):
            return  # a list the socket does not follow, or an older change after a newer one
        socket = self._socket
        if changed.deleted:
            del self._lists[change.id]
        elif len(self._followed(changed.symbols, without=change.id)) > MAX_SYMBOLS:
            limit = f"more symbols than a socket follows ({MAX_SYMBOLS})"
            socket.client.refuse(
                _invalid(f"watchlist {change.id} now holds {limit}; it is followed as it was")
            )
            return
        else:
            self._lists[change.id] = changed
        wanted = self._followed()
        self._feed.unfollow(socket, socket.symbols - wanted, ())
        self._feed.follow(socket, wanted, ())

    def _followed(self, *more: set[str], without: str = "") -> set[str]:
        lists = (watched.symbols for key, watched in self._lists.items() if key != without)
        return self._named.union(*lists, *more)

    async def _watchlist(self, watchlist_id: str) -> Watched:
        """A list's symbols and when it last changed, read as the socket's user."""
        if self._portfolio is None:
            raise SocketError("UNAVAILABLE", "watchlists cannot be read here")
        stub = portfolio_pb2_grpc.PortfolioServiceStub(self._portfolio())
        try:
            reply = await stub.GetWatchlist(
                portfolio_pb2.GetWatchlistRequest(id=watchlist_id),
                metadata=call_metadata(self.user.token),
            )
        except grpc.aio.AioRpcError as error:
            raise failure(error, "portfolio") from None
        return Watched.of(reply.watchlist.symbols, reply.watchlist.updated_at)


@dataclass(frozen=True)
class Watched:
    """A watchlist's symbols (or its deletion), and when it last changed (seconds, nanos)."""

    symbols: set[str]
    stamp: tuple[int, int]
    deleted: bool = False

    @classmethod
    def of(cls, symbols: Iterable[str], changed: Timestamp, *, deleted: bool = False) -> Watched:
        return cls(set(symbols), (changed.seconds, changed.nanos), deleted)

    def supersedes(self, known: Watched | None) -> bool:
        """Whether this is the list as it is now rather than `known` (none yet, or as old or
        older): the one comparison of reads and changes."""
        return known is None or self.stamp >= known.stamp
