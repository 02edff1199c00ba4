"""/ws/portfolio following a watchlist edited while it is read, and a session's live sockets
when one holder's older token expires (facade/ws_portfolio.py, facade/sessions.py), without
sockets: the change is not lost to the read, and the session is not ended by a token that is
not its newest (each failed before; found by a review)."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2

from facade.codec import Plans
from facade.envelope import ApiError
from facade.outbox import ClientSocket
from facade.portfolio_feed import PortfolioFeed
from facade.sessions import LiveSessions
from facade.sockets import SocketUser
from facade.ws_portfolio import PortfolioConversation, Watched


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def send_now(self, frame: bytes) -> None:
        self.frames.append(frame)


async def test_an_edit_made_while_the_list_is_being_read_is_not_lost() -> None:
    """A socket subscribes to watchlist w1. GetWatchlist reads the list ({AAPL}, changed at
    t=100); before its answer is back (its quotes are still being fetched), the user edits the
    list in another tab to {MSFT} (t=200) and that `watchlist` change reaches the facade. The
    socket must end up following the list as it is now: MSFT, not AAPL."""
    feed = PortfolioFeed(Plans())
    client = Recorder()
    user = SocketUser("u-1", "s-1", 0.0, "token")
    conversation = PortfolioConversation(feed, cast(ClientSocket, client), user)
    reading = asyncio.Event()
    answer = asyncio.Event()

    async def read_list(watchlist_id: str) -> Watched:
        reading.set()
        await answer.wait()
        return Watched({"AAPL"}, (100, 0))  # what the read saw, before the edit committed

    conversation._watchlist = read_list  # type: ignore[method-assign]
    subscribing = asyncio.create_task(
        conversation.receive("subscribe", {"type": "subscribe", "watchlistIds": ["w1"]})
    )
    await reading.wait()
    edited = portfolio_pb2.WatchlistChange(
        id="w1", symbols=["MSFT"], updated_at=Timestamp(seconds=200)
    )
    feed.publish_event(portfolio_pb2.StreamPortfolioEventsResponse(user_id="u-1", watchlist=edited))
    answer.set()
    await subscribing
    socket = conversation._socket
    assert socket.symbols == {"MSFT"}


# --- sockets of one session: the recheck after logout ------------------------------------------


async def test_a_socket_whose_token_expired_does_not_end_its_sessions_other_live_sockets() -> None:
    """Two tabs of one login (one session). Tab A's socket holds a fresh token (valid); tab B
    opened its socket later with the older token it still had, then closed (or its token ran
    out and the socket was closed for it). The session is not over: tab A's socket must stay
    open. The recheck asks with the token held last -- tab B's, now expired -- reads the 401
    as "the session ended" and closes tab A's live socket."""
    valid = {"fresh"}

    async def validate(token: str) -> object:
        if token not in valid:
            raise ApiError(401, "TOKEN_EXPIRED", "the access token expired")
        return token

    sessions = LiveSessions(0.01, validate)
    ended: list[str] = []
    now = time.time()
    sessions.hold("s-1", "fresh", now + 900, "socket-a", lambda error: ended.append("socket-a"))
    sessions.hold("s-1", "older", now + 30, "socket-b", lambda error: ended.append("socket-b"))
    sessions.release("s-1", "socket-b")  # tab B's socket closed
    try:
        await asyncio.sleep(0.1)  # a few rechecks
    finally:
        await sessions.close()
    assert ended == []
