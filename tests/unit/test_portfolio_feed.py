"""The /ws/portfolio fan-out index, without sockets: who gets which price, and when the
frames of a market step are flushed."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2

from facade.codec import Plans
from facade.outbox import ClientSocket
from facade.portfolio_feed import FeedSocket, PortfolioFeed
from tests.recording_socket import Recorder


def quote(symbol: str, price: str, seconds: int) -> portfolio_pb2.Quote:
    return portfolio_pb2.Quote(
        symbol=symbol, price=price, change="0", change_percent="0", time=Timestamp(seconds=seconds)
    )


def follower(feed: PortfolioFeed, user: str, *symbols: str) -> Recorder:
    recorder = Recorder()
    socket = FeedSocket(cast(ClientSocket, recorder), user)
    feed.join(socket)
    feed.follow(socket, symbols, ())
    return recorder


def numbered(seq: int, since: int, *quotes: portfolio_pb2.Quote, **flags: object) -> Any:
    return portfolio_pb2.StreamMarketResponse(
        quotes=quotes,
        seq=seq,
        since_seq=since,
        term=int(cast(int, flags.get("term", 1))),
        resync=bool(flags.get("resync", False)),
    )


def test_a_market_step_reaches_each_follower_once_and_is_flushed_once() -> None:
    flushes: list[int] = []
    feed = PortfolioFeed(Plans(), flush=lambda: flushes.append(1))
    ann = follower(feed, "ann", "AAPL", "MSFT")
    bob = follower(feed, "bob", "MSFT")
    step = numbered(
        7, 6, quote("AAPL", "187.42", 100), quote("MSFT", "410.10", 100), quote("KO", "62", 100)
    )
    feed.publish_step(step)
    assert [(m["symbol"], m["price"]) for m in ann.messages()] == [
        ("AAPL", "187.42"),
        ("MSFT", "410.10"),
    ]
    assert [(m["symbol"], m["price"]) for m in bob.messages()] == [("MSFT", "410.10")]
    assert flushes == [1]
    # The same step again (from another replica) is not delivered twice.
    feed.publish_step(step)
    assert len(ann.frames) == 2 and len(bob.frames) == 1


def test_numbered_steps_from_two_replicas_are_delivered_once_each() -> None:
    feed = PortfolioFeed(Plans())
    ann = follower(feed, "ann", "AAPL")
    first = numbered(7, 6, quote("AAPL", "187.00", 100))
    second = numbered(8, 7, quote("AAPL", "187.50", 101))
    for step in (first, first, second, first, second):  # both replicas' streams, interleaved
        feed.publish_step(step)
    assert [m["price"] for m in ann.messages()] == ["187.00", "187.50"]
    assert feed.resyncs == 0


def test_a_gap_in_the_steps_sends_a_resync_then_the_latest_price_of_each_followed_symbol() -> None:
    feed = PortfolioFeed(Plans())
    ann = follower(feed, "ann", "AAPL", "KO")
    bob = follower(feed, "bob", "MSFT")
    feed.publish_step(numbered(7, 6, quote("AAPL", "187.00", 100), quote("KO", "62.00", 100)))
    # Steps 8 and 9 never arrived: step 10 covers only what changed after step 9.
    feed.publish_step(numbered(10, 9, quote("AAPL", "190.00", 103)))
    assert [m["type"] for m in ann.messages()] == ["price", "price", "resync", "price", "price"]
    assert ann.messages()[2] == {"type": "resync", "seq": 10}
    assert {(m["symbol"], m["price"]) for m in ann.messages()[3:]} == {
        ("AAPL", "190.00"),
        ("KO", "62.00"),
    }
    # A socket following nothing the step names is still told.
    assert bob.messages() == [{"type": "resync", "seq": 10}]
    assert feed.resyncs == 1


def test_a_replica_that_reloaded_the_market_or_a_new_leader_counting_lower_is_a_resync() -> None:
    feed = PortfolioFeed(Plans())
    ann = follower(feed, "ann", "AAPL")
    feed.publish_step(numbered(7, 6, quote("AAPL", "187.00", 100)))
    feed.publish_step(numbered(8, 7, quote("AAPL", "188.00", 101), resync=True))
    feed.publish_step(numbered(3, 2, quote("AAPL", "150.00", 102), term=2))
    feed.publish_step(numbered(4, 3, quote("AAPL", "151.00", 103), term=2))
    types = [(m["type"], m.get("price") or m.get("seq")) for m in ann.messages()]
    assert types == [
        ("price", "187.00"),
        ("resync", 8),
        ("price", "188.00"),
        ("resync", 3),
        ("price", "150.00"),
        ("price", "151.00"),
    ]


def event(user: str, **one: Any) -> portfolio_pb2.StreamPortfolioEventsResponse:
    return portfolio_pb2.StreamPortfolioEventsResponse(user_id=user, **one)


def test_an_event_from_every_replica_reaches_each_of_its_sockets_once() -> None:
    feed = PortfolioFeed(Plans())
    ann, ann_tab, bob = (Recorder() for _ in range(3))
    sockets = [FeedSocket(cast(ClientSocket, r), u) for r, u in ((ann, "a"), (ann_tab, "a"))]
    sockets.append(FeedSocket(cast(ClientSocket, bob), "b"))
    for socket in sockets:
        feed.join(socket)
    feed.follow(sockets[1], (), ["p1"])
    trade = event("a", trade=portfolio_pb2.Trade(id="t1", portfolio_id="p1", symbol="AAPL"))
    value = event(
        "a", portfolio_value=portfolio_pb2.PortfolioValue(portfolio_id="p1", total_value="10")
    )
    placed = event("a", order=portfolio_pb2.Order(id="o1", status=portfolio_pb2.ORDER_STATUS_OPEN))
    filled = event(
        "a", order=portfolio_pb2.Order(id="o1", status=portfolio_pb2.ORDER_STATUS_FILLED)
    )
    for one in (trade, value, placed, filled):
        feed.publish_event(one)
    # The second replica's stream: the same events, as its hub decoded them from the first's.
    for one in (filled, trade, value, placed):
        feed.publish_event(type(one).FromString(one.SerializeToString()))
    feed.publish_event(event("a", trade=portfolio_pb2.Trade(id="t2", portfolio_id="p1")))

    def kinds(recorder: Recorder) -> list[tuple[str, str]]:
        found = []
        for message in recorder.messages():
            inner: Any = message.get("trade") or message.get("order") or message
            found.append((message["type"], inner.get("id") or inner.get("portfolioId")))
        return found

    assert kinds(ann) == [("trade", "t1"), ("order", "o1"), ("order", "o1"), ("trade", "t2")]
    assert kinds(ann_tab) == [
        ("trade", "t1"),
        ("portfolio_value", "p1"),  # only the socket following the portfolio gets its value
        ("order", "o1"),
        ("order", "o1"),
        ("trade", "t2"),
    ]
    assert [m["order"]["status"] for m in ann.messages() if m["type"] == "order"] == [
        "open",
        "filled",
    ]
    assert bob.frames == []
