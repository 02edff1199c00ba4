"""The live feed behind /ws/portfolio: two upstream streams per portfolio replica (prices, and
trades and values), deduplicated and fanned out (README, "Streams and WebSockets")."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any

import grpc
from prometheus_client import Counter, Gauge
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from facade.bridge import Bridge
from facade.outbox import ClientSocket, json_frame
from facade.plans import Plans, message_json
from facade.routes import DOMAIN_APIS
from services.runtime.auth import ServiceCredentials
from services.runtime.channels import create_channel
from services.runtime.streams import follow_forever
from services.runtime.tasks import cancel_all

# Events remembered to recognise one arriving again from another replica.
REMEMBERED_EVENTS = 10_000
EVENT_KINDS = frozenset(
    {"trade", "trade_deleted", "trade_updated", "portfolio_value", "order", "alert", "watchlist"}
)

UPSTREAMS_LIVE = Gauge(
    "stockfolio_ws_upstream_streams",
    "Upstream gRPC streams the facade holds open for its sockets, by stream.",
    ["stream"],
)
MARKET_STEP = Gauge(
    "stockfolio_ws_market_step",
    "The last market step (seq) the facade delivered to /ws/portfolio sockets.",
)
MARKET_RESYNCS = Counter(
    "stockfolio_ws_market_resyncs_total",
    "Gaps in the market's steps told to every /ws/portfolio socket with a resync message.",
)
UPSTREAM_RESTARTS = Counter(
    "stockfolio_ws_upstream_restarts_total",
    "Upstream gRPC streams reopened after they ended or failed, by stream.",
    ["stream"],
)


class FeedSocket:
    """One /ws/portfolio socket: whose it is and what it follows."""

    __slots__ = ("client", "on_watchlist", "portfolios", "symbols", "user_id")

    def __init__(
        self,
        client: ClientSocket,
        user_id: str,
        on_watchlist: Callable[[portfolio_pb2.WatchlistChange], None] | None = None,
    ) -> None:
        """`on_watchlist`: told when a watchlist of the user changes (the socket may follow it)."""
        self.client = client
        self.user_id = user_id
        self.symbols: set[str] = set()
        # Most sockets follow no portfolio: they share one empty set until they do.
        self.portfolios: frozenset[str] = frozenset()
        self.on_watchlist = on_watchlist


class PortfolioFeed:
    """Who gets which price, trade and portfolio value."""

    def __init__(self, plans: Plans, flush: Callable[[], None] = lambda: None) -> None:
        # Called after a whole market step is queued: its frames go out at once, not at the
        # end of the outbox's window.
        self._flush = flush
        self._quote_plan = plans.plan(portfolio_pb2.Quote.DESCRIPTOR)
        service = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]
        self._events = Bridge.of(
            service,
            "StreamPortfolioEvents",
            plans,
            nested={
                "trade": "trade",
                "trade_deleted": "trade",
                "trade_updated": "trade",
                "order": "order",
            },
        )
        # What its sockets send (facade/ws_portfolio.py): a Subscription to add or to take away.
        self.subscriptions = Bridge(
            portfolio_pb2.Subscription.DESCRIPTOR,
            plans,
            renames={"subscribe": "", "unsubscribe": ""},
            strict=True,
        )
        self._by_symbol: dict[str, set[ClientSocket]] = {}
        self._by_user: dict[str, set[FeedSocket]] = {}
        # symbol -> its last `price` frame, for new followers and resyncs.
        self._last_prices: dict[str, bytes] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.seq = 0  # the last market step delivered
        self.term = 0  # the market leader's term at that step
        self.resyncs = 0

    def join(self, socket: FeedSocket) -> None:
        self._by_user.setdefault(socket.user_id, set()).add(socket)

    def leave(self, socket: FeedSocket) -> None:
        self.unfollow(socket, list(socket.symbols), list(socket.portfolios))
        mine = self._by_user.get(socket.user_id, set())
        mine.discard(socket)
        if not mine:
            self._by_user.pop(socket.user_id, None)

    def follow(self, socket: FeedSocket, symbols: Iterable[str], portfolios: Iterable[str]) -> None:
        """Add to what a socket follows; a newly followed symbol's last price is sent at once."""
        for symbol in set(symbols) - socket.symbols:
            socket.symbols.add(symbol)
            self._by_symbol.setdefault(symbol, set()).add(socket.client)
            if (last := self._last_prices.get(symbol)) is not None:
                socket.client.send(last)
        socket.portfolios = socket.portfolios.union(portfolios)

    def unfollow(
        self, socket: FeedSocket, symbols: Iterable[str], portfolios: Iterable[str]
    ) -> None:
        for symbol in socket.symbols.intersection(symbols):
            socket.symbols.discard(symbol)
            followers = self._by_symbol[symbol]
            followers.discard(socket.client)
            if not followers:
                del self._by_symbol[symbol]
        socket.portfolios = socket.portfolios.difference(portfolios)

    # --- upstream messages --------------------------------------------------------------------

    def publish_step(self, message: portfolio_pb2.StreamMarketResponse) -> None:
        """A market step's quotes. Every replica serves the deployment's numbered steps (its
        StreamMarket numbers each batch), so each step arrives once per replica."""
        restarted = message.term > self.term and message.seq <= self.seq
        if message.seq <= self.seq and not restarted:
            return  # delivered already, from another replica's stream
        # The first step this facade sees continues nothing: no socket has missed anything.
        gap = self.seq > 0 and (restarted or message.resync or message.since_seq > self.seq)
        self.seq, self.term = message.seq, max(self.term, message.term)
        MARKET_STEP.set(self.seq)
        for quote in message.quotes:
            price = message_json(quote, self._quote_plan)
            del price["source"], price["stale"]  # not in the seed's `price` message
            frame = self._last_prices[quote.symbol] = json_frame({"type": "price", **price})
            if not gap:
                # Sends never wait and never change the index, so the set is walked as it is.
                for client in self._by_symbol.get(quote.symbol, ()):
                    client.send(frame)
        if gap:
            self.resyncs += 1
            MARKET_RESYNCS.inc()
            resync = json_frame({"type": "resync", "seq": message.seq})
            for sockets in self._by_user.values():
                for socket in sockets:
                    socket.client.send(resync)
                    for symbol in socket.symbols:
                        if (last := self._last_prices.get(symbol)) is not None:
                            socket.client.send(last)
        self._flush()

    def publish_event(self, event: portfolio_pb2.StreamPortfolioEventsResponse) -> None:
        mine = self._by_user.get(event.user_id)
        kind = event.WhichOneof("event")
        if not mine or kind not in EVENT_KINDS or self._again(event):
            return  # no socket of its user here, a kind this facade does not know, or a copy
        _, value, message = self._events.reply(event)
        if kind == "watchlist":  # for the sockets that follow it; nothing is sent as such
            for socket in list(mine):
                if socket.on_watchlist is not None:
                    socket.on_watchlist(value)
            return
        frame = json_frame(message)
        for socket in mine:
            # A value goes to the sockets following its portfolio; the rest to all the owner's.
            if kind != "portfolio_value" or value.portfolio_id in socket.portfolios:
                socket.client.send(frame)

    def _again(self, event: portfolio_pb2.StreamPortfolioEventsResponse) -> bool:
        """Whether this event was delivered already: another replica's stream carries the same
        event, byte for byte (its hub relays what the first one serialized)."""
        key = hashlib.blake2b(event.SerializeToString(deterministic=True), digest_size=16).digest()
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > REMEMBERED_EVENTS:
            self._seen.popitem(last=False)
        return False


class Upstreams:
    """The feed's upstream streams: two per portfolio replica, kept open until closed."""

    def __init__(
        self, addresses: Sequence[str], credentials: ServiceCredentials, feed: PortfolioFeed
    ) -> None:
        self._addresses = tuple(addresses)
        self._credentials = credentials
        self._feed = feed
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.live = 0  # streams open now

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for address in self._addresses:
            channel = create_channel([address], [DOMAIN_APIS["portfolio"]], probe=True)
            self._channels.append(channel)
            stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
            market = functools.partial(stub.StreamMarket, portfolio_pb2.StreamMarketRequest())
            events = functools.partial(
                stub.StreamPortfolioEvents, portfolio_pb2.StreamPortfolioEventsRequest()
            )
            feed = self._feed
            for name, stream, handle in (
                ("market", market, feed.publish_step),
                ("events", events, feed.publish_event),
            ):
                follow = follow_forever(
                    functools.partial(self._open, name, stream),
                    handle,
                    name=name,
                    restarts=UPSTREAM_RESTARTS.labels(name),
                    log_extra={"upstreamAddress": address},
                )
                self._tasks.append(loop.create_task(follow, name=f"upstream-{name}-{address}"))

    async def close(self) -> None:
        await cancel_all(self._tasks)  # they retry on errors: cancelled until each ends
        await asyncio.gather(*(channel.close() for channel in self._channels))
        self._tasks.clear()
        self._channels.clear()

    async def _open(
        self, name: str, open_call: Any, live: asyncio.Event
    ) -> AsyncGenerator[Any, None]:
        """One stream from a replica, counted while it is live."""
        call = open_call(metadata=self._credentials.metadata(), wait_for_ready=True)
        gauge = UPSTREAMS_LIVE.labels(name)
        try:
            await call.initial_metadata()  # the replica has subscribed us: ticks flow
            if not call.done():
                live.set()
                self.live += 1
                gauge.inc()
            async for message in call:
                yield message
        finally:
            call.cancel()
            if live.is_set():
                self.live -= 1
                gauge.dec()
