"""The assistant through the real facade: its REST routes (envelopes, statuses, Retry-After),
its SSE stream, and /ws/chat (streamed answers, stop, typing and presence relays, across two
facade replicas sharing Redis). Real users, portfolio and assistant services run behind it;
only Anthropic is faked, by a local server speaking its wire format.

SQLite only here: what is tested is the facade's translation; the service's own tests cover
both database engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import grpc
import pytest
from stockfolio.assistant.v1 import assistant_pb2

from services.assistant.config import SEED_MODELS
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import StartStack, token_of
from tests.integration.conftest import Client, FacadeInFront
from tests.integration.socket_client import WAIT, Socket, authenticated, receive_until


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """Every service's database on SQLite (see the module docstring)."""
    return sqlite_url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: Client, method: str, path: str, token: str, body: Any = None
) -> tuple[int, dict[str, Any], Any]:
    async with client.request(method, path, headers=bearer(token), json=body) as response:
        return response.status, dict(response.headers), await response.json()


async def connect(client: Client, token: str) -> Socket:
    return await authenticated(client, "/ws/chat", token)


async def quiet(ws: Socket) -> list[dict[str, Any]]:
    """What the socket got before a ping's pong (messages are handled in order)."""
    await ws.send_json({"type": "ping"})
    return (await receive_until(ws, "pong"))[:-1]


async def join(ws: Socket, session_id: str) -> None:
    """`ws` joins the session; the facade confirms it, and says nothing else."""
    await ws.send_json({"type": "join_session", "sessionId": session_id})
    assert await quiet(ws) == [{"type": "joined", "sessionId": session_id}]


async def chunks_until(ws: Socket, text: str) -> None:
    """Read the answer streaming to `ws` until its chunks add up to `text`."""
    streamed = ""
    while streamed != text:
        message = await ws.receive_json(timeout=WAIT)
        if message["type"] == "chunk":
            streamed += message["text"]


# --- REST ------------------------------------------------------------------------------------


async def test_rest_routes_answer_in_the_envelope(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        token = await stack.token()
        fake_anthropic.replies.append(Reply(text="Hold fewer stocks.", input_tokens=30))
        status, _, body = await call(
            client, "POST", "/api/v1/chat/message", token, {"message": "Am I too diversified?"}
        )
        assert status == 200
        assert body["success"] is True
        data = body["data"]
        session_id = data["sessionId"]
        assert data["message"]["content"] == "Hold fewer stocks."
        assert data["message"]["role"] == "assistant"
        assert data["message"]["incomplete"] is False
        assert data["usage"] == {"inputTokens": "30", "outputTokens": "3"}
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"]

        status, _, body = await call(client, "GET", "/api/v1/chat/sessions", token)
        assert status == 200
        assert [(s["id"], s["title"]) for s in body["data"]] == [
            (session_id, "Am I too diversified?")
        ]
        assert body["pagination"] == {"page": 1, "limit": 20, "total": 1, "totalPages": 1}

        status, _, body = await call(client, "GET", "/api/v1/chat/models", token)
        assert [m["id"] for m in body["data"]] == [*SEED_MODELS, "claude-fake-2-20260101"]

        status, _, body = await call(client, "GET", "/api/v1/chat/search?q=diversified", token)
        assert status == 200
        assert [m["content"] for m in body["data"]] == ["Am I too diversified?"]

        status, _, body = await call(
            client, "POST", "/api/v1/assistant/folders", token, {"name": "Strategy"}
        )
        assert status == 201
        folder_id = body["data"]["id"]
        assert body["data"]["name"] == "Strategy"
        status, _, body = await call(
            client, "PUT", f"/api/v1/assistant/folders/{folder_id}", token, {"name": "Plans"}
        )
        assert (status, body["data"]["name"]) == (200, "Plans")
        status, _, body = await call(
            client, "PUT", f"/api/v1/chat/sessions/{session_id}", token, {"folderId": folder_id}
        )
        assert (status, body["data"]["folderId"]) == (200, folder_id)
        status, _, body = await call(
            client, "GET", f"/api/v1/chat/sessions?folderId={folder_id}", token
        )
        assert [s["id"] for s in body["data"]] == [session_id]
        status, _, body = await call(client, "GET", f"/api/v1/chat/sessions/{session_id}", token)
        assert [m["content"] for m in body["data"]["messages"]] == [
            "Am I too diversified?",
            "Hold fewer stocks.",
        ]
        status, _, _ = await call(client, "DELETE", f"/api/v1/assistant/folders/{folder_id}", token)
        assert status == 200
        status, _, body = await call(client, "GET", f"/api/v1/chat/sessions/{session_id}", token)
        assert body["data"]["session"]["folderId"] == ""


async def test_rest_refusals_have_their_statuses_and_hints(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    limits = {"ASSISTANT_MAX_MESSAGE_CHARS": "100", "ASSISTANT_MESSAGES_RATE": "4/minute"}
    async with assistant_stack(**limits) as stack, facade_in_front(stack.addresses) as client:
        alice, bob = await stack.token(), await stack.token()
        for text in ("", "y" * 101):
            status, _, body = await call(
                client, "POST", "/api/v1/chat/message", alice, {"message": text}
            )
            assert status == 422
            assert body["error"] == "VALIDATION_ERROR"
            assert body["details"]["fields"][0]["field"] == "message"
        status, _, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi", "model": "gpt-x"}
        )
        assert status == 422
        assert body["error"] == "UNKNOWN_MODEL"
        assert all(model in body["message"] for model in SEED_MODELS)
        status, _, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi", "sessionId": "nope"}
        )
        assert (status, body["error"]) == (404, "SESSION_NOT_FOUND")
        status, _, body = await call(
            client, "PUT", "/api/v1/assistant/folders/nope", alice, {"name": "x"}
        )
        assert (status, body["error"]) == (404, "FOLDER_NOT_FOUND")

        # The provider's own rate limit: 429 with its Retry-After, and a message that says so.
        fake_anthropic.replies.append(Reply(status=429, retry_after="9"))
        status, headers, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi"}
        )
        assert status == 429
        assert headers["Retry-After"] == "9"
        assert body["error"] == "PROVIDER_RATE_LIMITED"
        assert body["details"]["retryAfter"] == 9
        assert "retry in 9 s" in body["message"]
        fake_anthropic.replies.append(Reply(status=529))
        status, headers, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi"}
        )
        assert (status, body["error"]) == (503, "PROVIDER_OVERLOADED")
        assert int(headers["Retry-After"]) > 0

        # Alice's own limit: her fifth message this minute (only the checked ones counted).
        status, _, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi"}
        )
        assert status == 200
        session = body["data"]["sessionId"]
        status, _, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi"}
        )
        assert status == 200
        status, headers, body = await call(
            client, "POST", "/api/v1/chat/message", alice, {"message": "hi"}
        )
        assert (status, body["error"]) == (429, "MESSAGE_RATE_LIMITED")
        assert 0 < int(headers["Retry-After"]) <= 60

        # Bob sees nothing of Alice's.
        status, _, body = await call(client, "GET", f"/api/v1/chat/sessions/{session}", bob)
        assert status == 404
        status, _, body = await call(client, "GET", "/api/v1/chat/sessions", bob)
        assert body["data"] == []
        status, _, body = await call(client, "GET", "/api/v1/chat/search?q=hi", bob)
        assert body["data"] == []
        status, _, _ = await call(client, "GET", "/api/v1/chat/sessions", "not-a-token")
        assert status == 401


async def test_the_stream_route_serves_server_sent_events(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        token = await stack.token()
        fake_anthropic.replies.append(Reply(text="Streaming works."))
        headers = {**bearer(token), "Accept": "text/event-stream"}
        async with client.post(
            "/api/v1/chat/stream", headers=headers, json={"message": "Stream?"}
        ) as response:
            assert response.status == 200
            text = await response.text()
        events = [
            json.loads(line.removeprefix("data: "))
            for line in text.splitlines()
            if line.startswith("data: ")
        ]
        assert "session" in events[0]
        assert "".join(e["chunk"]["text"] for e in events if "chunk" in e) == "Streaming works."
        assert events[-1]["done"]["usage"]["inputTokens"] == "25"


# --- /ws/chat ----------------------------------------------------------------------------------


async def test_stream_chat_streams_chunks_then_done(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        me = await stack.account()
        token = token_of(me[0])
        await stack.portfolio_with(me[0], "Core", [("AAPL", "1", "100")])
        fake_anthropic.replies.extend(
            [
                Reply(text="Checking.", tools=[("list_portfolios", {})]),
                Reply(text="You hold one AAPL share."),
            ]
        )
        ws = await connect(client, token)
        await ws.send_json({"type": "stream_chat", "message": "What do I hold?"})
        got = await receive_until(ws, "done")
        kinds = [m["type"] for m in got]
        assert kinds[0] == "session"
        session_id = got[0]["sessionId"]
        assert got[0]["title"] == "What do I hold?"
        assert "tool_call" in kinds
        assert "tool_result" in kinds
        result = next(m for m in got if m["type"] == "tool_result")
        assert result["toolCall"]["name"] == "list_portfolios"
        assert result["toolCall"]["result"]["portfolios"][0]["name"] == "Core"
        text = "".join(m["text"] for m in got if m["type"] == "chunk")
        assert text == "Checking.You hold one AAPL share."
        assert all(m["sessionId"] == session_id for m in got)
        done = got[-1]
        assert done["usage"]["inputTokens"] == 50
        stored = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session_id), metadata=me[0]
        )
        assert stored.messages[-1].id == done["messageId"]
        assert stored.messages[-1].content == "You hold one AAPL share."

        # Bad requests are refused on the socket, which stays open.
        await ws.send_json({"type": "stream_chat", "message": "   "})
        error = (await receive_until(ws, "error"))[-1]
        assert error["code"] == "VALIDATION_ERROR"
        await ws.send_json({"type": "dance"})
        error = (await receive_until(ws, "error"))[-1]
        assert error["code"] == "UNKNOWN_TYPE"
        # A provider failure ends the answer with its code and retry hint.
        fake_anthropic.replies.append(Reply(text="a b c d", error_after=2))
        await ws.send_json({"type": "stream_chat", "message": "again", "sessionId": session_id})
        got = await receive_until(ws, "error")
        assert "".join(m["text"] for m in got if m["type"] == "chunk") == "a b "
        assert got[-1]["code"] == "PROVIDER_OVERLOADED"
        assert got[-1]["retryAfter"] > 0
        assert got[-1]["sessionId"] == session_id
        await ws.close()


async def test_stop_cancels_the_answer_and_keeps_what_was_streamed(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        me = await stack.user()
        token = token_of(me)
        fake_anthropic.replies.append(Reply(text="one two three four five six", hold_after=2))
        ws = await connect(client, token)
        await ws.send_json({"type": "stream_chat", "message": "count slowly"})
        got = await receive_until(ws, "session")
        session_id = got[-1]["sessionId"]
        await chunks_until(ws, "one two ")
        await ws.send_json({"type": "stop"})
        stopped = (await receive_until(ws, "stopped"))[-1]
        assert stopped["sessionId"] == session_id
        messages: list[assistant_pb2.ChatMessage] = []
        deadline = time.monotonic() + WAIT
        while len(messages) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                found = await stack.assistant.GetSession(
                    assistant_pb2.GetSessionRequest(id=session_id), metadata=me
                )
                messages = list(found.messages)
            await asyncio.sleep(0.02)
        assert [(m.role, m.content, m.incomplete) for m in messages] == [
            ("user", "count slowly", False),
            ("assistant", "one two ", True),
        ]
        await ws.send_json({"type": "stop"})
        assert (await receive_until(ws, "error"))[-1]["code"] == "NOT_STREAMING"
        fake_anthropic.release()
        await ws.close()


async def test_typing_and_presence_reach_the_other_sockets_in_the_session_only(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        alice_meta, alice_id = await stack.account()
        alice = token_of(alice_meta)
        bob = await stack.token()
        one = await stack.send(alice_meta, "first")
        two = await stack.send(alice_meta, "second")
        phone, laptop, tablet = [await connect(client, alice) for _ in range(3)]
        await join(phone, one.session_id)
        await join(laptop, one.session_id)
        await join(tablet, two.session_id)
        joined = await receive_until(phone, "user_joined")
        assert joined[-1] == {
            "type": "user_joined",
            "sessionId": one.session_id,
            "userId": alice_id,
        }

        await phone.send_json({"type": "typing_start", "sessionId": one.session_id})
        typing = await receive_until(laptop, "typing")
        assert typing[-1] == {
            "type": "typing",
            "sessionId": one.session_id,
            "userId": alice_id,
            "active": True,
        }
        await phone.send_json({"type": "typing_stop", "sessionId": one.session_id})
        assert (await receive_until(laptop, "typing"))[-1]["active"] is False
        # Not to the sender, not to another session.
        assert [m["type"] for m in await quiet(phone)] == []
        assert [m["type"] for m in await quiet(tablet)] == []

        # Typing needs a joined session; Bob cannot join Alice's.
        await tablet.send_json({"type": "typing_start", "sessionId": one.session_id})
        assert (await receive_until(tablet, "error"))[-1]["code"] == "NOT_JOINED"
        intruder = await connect(client, bob)
        await intruder.send_json({"type": "join_session", "sessionId": one.session_id})
        error = (await receive_until(intruder, "error"))[-1]
        assert error["code"] == "SESSION_NOT_FOUND"
        await intruder.send_json({"type": "typing_start", "sessionId": one.session_id})
        assert (await receive_until(intruder, "error"))[-1]["code"] == "NOT_JOINED"
        assert [m["type"] for m in await quiet(laptop)] == []

        await laptop.send_json({"type": "leave_session", "sessionId": one.session_id})
        assert await quiet(laptop) == [{"type": "left", "sessionId": one.session_id}]
        left = await receive_until(phone, "user_left")
        assert left[-1]["userId"] == alice_id
        await phone.send_json({"type": "typing_start", "sessionId": one.session_id})
        assert await quiet(laptop) == []
        # A socket that closes leaves its sessions too.
        await tablet.send_json({"type": "join_session", "sessionId": one.session_id})
        assert (await receive_until(phone, "user_joined"))[-1]["sessionId"] == one.session_id
        await tablet.close()
        left = await receive_until(phone, "user_left")
        assert left[-1] == {"type": "user_left", "sessionId": one.session_id, "userId": alice_id}
        for ws in (phone, laptop, intruder):
            await ws.close()


class SharedChat(NamedTuple):
    """One user's chat session, and a socket of theirs on each of two facade replicas."""

    user_id: str
    session_id: str
    first: Socket
    second: Socket


@pytest.fixture
async def shared_chat(
    assistant_stack: StartStack,
    fake_anthropic: FakeAnthropic,
    facade_in_front: FacadeInFront,
    redis_url: str,
) -> AsyncIterator[SharedChat]:
    """Two facade replicas sharing Redis, in front of one assistant stack."""
    async with (
        assistant_stack() as stack,
        facade_in_front(stack.addresses, REDIS_URL=redis_url) as first,
        facade_in_front(stack.addresses, REDIS_URL=redis_url) as second,
    ):
        meta, user_id = await stack.account()
        token = token_of(meta)
        chat = await stack.send(meta, "shared")
        sockets = await connect(first, token), await connect(second, token)
        yield SharedChat(user_id, chat.session_id, *sockets)
        for ws in sockets:
            await ws.close()


async def test_relays_cross_facade_replicas_through_redis(shared_chat: SharedChat) -> None:
    here, there = shared_chat.first, shared_chat.second
    for ws in (here, there):
        await join(ws, shared_chat.session_id)
    await there.send_json({"type": "typing_start", "sessionId": shared_chat.session_id})
    typing = await receive_until(here, "typing")
    assert typing[-1] == {
        "type": "typing",
        "sessionId": shared_chat.session_id,
        "userId": shared_chat.user_id,
        "active": True,
    }
    assert [m["type"] for m in await quiet(there)] == []


async def test_every_socket_in_the_session_sees_the_answer_in_order_across_replicas(
    shared_chat: SharedChat, fake_anthropic: FakeAnthropic
) -> None:
    session_id = shared_chat.session_id
    asker, watcher = shared_chat.first, shared_chat.second
    await join(watcher, session_id)

    fake_anthropic.replies.append(Reply(text="alpha beta gamma delta"))
    await asker.send_json({"type": "stream_chat", "message": "go", "sessionId": session_id})
    asked = await receive_until(asker, "done")
    seen = await receive_until(watcher, "done")
    # The same messages, in the same order, on the other replica's socket.
    assert seen == asked
    assert "".join(m["text"] for m in seen if m["type"] == "chunk") == "alpha beta gamma delta"
    assert all(m["sessionId"] == session_id for m in seen)
    # The asker is not sent its own answer twice.
    assert await quiet(asker) == []

    # A stopped answer ends for the watcher too.
    fake_anthropic.replies.append(Reply(text="one two three four", hold_after=2))
    await asker.send_json({"type": "stream_chat", "message": "again", "sessionId": session_id})
    await chunks_until(watcher, "one two ")
    await asker.send_json({"type": "stop"})
    assert (await receive_until(watcher, "stopped"))[-1] == {
        "type": "stopped",
        "sessionId": session_id,
    }
    fake_anthropic.release()


async def test_a_refused_stream_naming_another_users_session_reaches_none_of_its_sockets(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        alice = await stack.user()
        mine = await stack.send(alice, "my private chat")
        laptop = await connect(client, token_of(alice))
        await laptop.send_json({"type": "join_session", "sessionId": mine.session_id})
        assert await quiet(laptop) == [{"type": "joined", "sessionId": mine.session_id}]

        intruder = await connect(client, await stack.token())
        await intruder.send_json({"type": "join_session", "sessionId": mine.session_id})
        assert (await receive_until(intruder, "error"))[-1]["code"] == "SESSION_NOT_FOUND"
        await intruder.send_json(
            {"type": "stream_chat", "sessionId": mine.session_id, "message": "hi"}
        )
        assert (await receive_until(intruder, "error"))[-1]["code"] == "SESSION_NOT_FOUND"
        # The refusal went to the intruder alone: it was published on Alice's session before.
        assert await quiet(laptop) == []
        await laptop.close()
        await intruder.close()


async def test_a_stop_read_with_its_stream_chat_stops_it_and_frees_the_socket(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        me = await stack.user()
        ws = await connect(client, token_of(me))
        # Both frames in one TCP write: the facade reads the stop before the answer ever ran.
        transport = ws._writer.transport  # the client's own connection
        written: list[bytes | bytearray | memoryview] = []
        write = transport.write
        transport.write = written.append  # type: ignore[method-assign,assignment]
        try:
            await ws.send_str(json.dumps({"type": "stream_chat", "message": "hello"}))
            await ws.send_str(json.dumps({"type": "stop"}))
        finally:
            transport.write = write  # type: ignore[method-assign]
        write(b"".join(bytes(piece) for piece in written))
        frames = await receive_until(ws, "stopped")
        assert frames[-1] == {"type": "stopped", "sessionId": ""}
        # The socket takes a new answer (it answered BUSY for good).
        fake_anthropic.replies.append(Reply(text="Second answer."))
        await ws.send_json({"type": "stream_chat", "message": "again"})
        answered = await receive_until(ws, "done")
        assert "".join(f["text"] for f in answered if f["type"] == "chunk") == ("Second answer.")
        await ws.send_json({"type": "stop"})
        assert (await receive_until(ws, "error"))[-1]["code"] == "NOT_STREAMING"
        await ws.close()
