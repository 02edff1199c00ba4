"""Hostile clients on the facade's sockets: each refusal is a well-formed error on a socket that
stays usable, and every message the protocol answers gets its answer. Real users, portfolio and
assistant services behind the real facade (a fake Anthropic)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import WSMsgType

from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import StartStack
from tests.integration.conftest import FacadeInFront
from tests.integration.socket_client import WAIT, Socket, authenticated, receive_until


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


async def closed_with(ws: Socket) -> tuple[list[dict[str, Any]], int | None]:
    """Messages up to the close, and the close code."""
    seen = []
    while True:
        message = await ws.receive(timeout=WAIT)
        if message.type is WSMsgType.TEXT:
            seen.append(json.loads(message.data))
            continue
        return seen, ws.close_code


async def pong_after(ws: Socket) -> list[dict[str, Any]]:
    await ws.send_json({"type": "ping"})
    return (await receive_until(ws, "pong"))[:-1]


# --- 1: an oversized token --------------------------------------------------------------------


async def test_an_oversized_token_is_refused_as_invalid_not_as_too_many_sockets(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        ws = await client.ws_connect("/ws/portfolio")
        await ws.send_json({"type": "auth", "token": "a" * 20_000})
        seen, code = await closed_with(ws)
        assert ([m["code"] for m in seen], code) == (["TOKEN_INVALID"], 4401), seen


async def test_renewing_with_an_oversized_token_is_refused_as_invalid(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        ws = await authenticated(client, "/ws/chat", await stack.token())
        await ws.send_json({"type": "auth", "token": "a" * 20_000})
        refused = await pong_after(ws)
        assert [m["code"] for m in refused] == ["TOKEN_INVALID"], refused
        await ws.close()


# --- 2: a second stop -----------------------------------------------------------------------


async def test_a_second_stop_while_the_first_takes_effect_is_answered(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        fake_anthropic.replies.append(Reply(text="one two three four five six", hold_after=2))
        ws = await authenticated(client, "/ws/chat", await stack.token())
        await ws.send_json({"type": "stream_chat", "message": "count slowly"})
        session_id = (await receive_until(ws, "session"))[-1]["sessionId"]
        streamed = ""
        while streamed != "one two ":
            message = await ws.receive_json(timeout=WAIT)
            if message["type"] == "chunk":
                streamed += message["text"]
        # A double click on "Stop": two stops in one TCP write.
        transport = ws._writer.transport
        written: list[Any] = []
        write = transport.write
        transport.write = written.append  # type: ignore[method-assign,assignment]
        try:
            await ws.send_json({"type": "stop"})
            await ws.send_json({"type": "stop"})
        finally:
            transport.write = write  # type: ignore[method-assign]
        write(b"".join(bytes(piece) for piece in written))
        got = await pong_after(ws)
        got += await pong_after(ws)  # the first stop's `stopped` comes from the answer's task
        fake_anthropic.release()
        answers = sorted(m.get("code", m["type"]) for m in got if m["type"] != "chunk")
        # Each stop answered: one `stopped`, and NOT_STREAMING for the other.
        assert answers == ["NOT_STREAMING", "stopped"], got
        assert {"type": "stopped", "sessionId": session_id} in got
        await ws.close()


# --- 3: a chat message past 64 KiB ----------------------------------------------------------


async def test_a_chat_message_past_64_kib_is_refused_and_the_socket_stays_open(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        ws = await authenticated(client, "/ws/chat", await stack.token())
        # 25,000 characters of Japanese (a pasted document): 75 KB as UTF-8.
        await ws.send_str(
            json.dumps({"type": "stream_chat", "message": "日本語" * 8_334}, ensure_ascii=False)
        )
        message = await ws.receive(timeout=WAIT)
        assert message.type is WSMsgType.TEXT, (message, ws.close_code)
        assert json.loads(message.data)["code"] == "PAYLOAD_TOO_LARGE"
        assert await pong_after(ws) == []
        await ws.close()
