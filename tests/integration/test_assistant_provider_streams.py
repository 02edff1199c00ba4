"""The provider's stream going wrong midway, through the real assistant service and the local fake
Anthropic API writing raw SSE: an event that is not JSON, a body that ends cleanly before
`message_stop` (a proxy closing it), a connection reset. Each is a provider failure (503 with a
retry hint, never a 500), the text streamed so far is kept and marked incomplete, and the round
is charged what the provider reported (an answer cut off is charged what it had used). And what
a long session sends: its latest turns within the history bound."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiohttp import web
from stockfolio.assistant.v1 import assistant_pb2

from services.assistant.domain import HISTORY_CHARS, Message, Role
from services.assistant.repository import Chats, new_id
from services.runtime.clock import utc_now
from services.runtime.db import Database
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import AssistantStack, Metadata, StartStack
from tests.utc_days import one_utc_day


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def event(name: str, data: dict[str, Any] | str) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    return f"event: {name}\ndata: {body}\n\n".encode()


START = event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 500, "output_tokens": 1},
        },
    },
)
BLOCK = event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
NOT_JSON = event("content_block_delta", "{not json")


def delta(text: str) -> bytes:
    return event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


@dataclass
class Scripted(Reply):
    """Raw SSE bytes, then a clean end of the body, or a reset connection (`cut`)."""

    script: list[bytes] = field(default_factory=list)
    cut: bool = False


class ScriptedAnthropic(FakeAnthropic):
    async def _stream(self, response: web.StreamResponse, reply: Reply, model: str) -> None:
        if not isinstance(reply, Scripted):
            return await super()._stream(response, reply, model)
        for piece in reply.script:
            await response.write(piece)
        if reply.cut:
            request = response._req  # the fake cuts its own connection
            assert request is not None and request.transport is not None
            request.transport.abort()
            return
        await response.write_eof()


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    async with ScriptedAnthropic() as fake:
        yield fake


async def stored(stack: AssistantStack, who: Metadata) -> list[tuple[str, str, bool]]:
    listed = await stack.assistant.ListSessions(assistant_pb2.ListSessionsRequest(), metadata=who)
    got = await stack.assistant.GetSession(
        assistant_pb2.GetSessionRequest(id=listed.sessions[0].id), metadata=who
    )
    return [(m.role, m.content, m.incomplete) for m in got.messages]


@pytest.mark.parametrize(
    ("script", "cut", "said"),
    [
        ([START, BLOCK, delta("Half "), delta("an "), NOT_JSON], False, "malformed stream"),
        ([START, BLOCK, delta("Half "), delta("an ")], False, "ended early"),
        ([START, BLOCK, delta("Half "), delta("an ")], True, "broke midway"),
    ],
    ids=["not-json", "no-message-stop", "reset"],
)
async def test_a_stream_gone_wrong_midway_is_a_provider_failure_keeping_the_text(
    assistant_stack: StartStack,
    fake_anthropic: FakeAnthropic,
    script: list[bytes],
    cut: bool,
    said: str,
) -> None:
    async with assistant_stack() as stack:
        me = await stack.user()
        fake_anthropic.replies.append(Scripted(script=script, cut=cut))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.send(me, "hello")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert said in (caught.value.details() or "")
        assert await stored(stack, me) == [
            ("user", "hello", False),
            ("assistant", "Half an ", True),
        ]


@one_utc_day  # the later answers are refused for the day's spent budget: not on a new day
async def test_a_round_cut_by_a_malformed_stream_is_charged_to_the_budget(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    # 500 input tokens reported at message_start, one per delta: 501 + the 100 reserved for the
    # next answer is more than the 600 a day.
    budget = {"ASSISTANT_TOKENS_PER_DAY": "600", "ASSISTANT_TOKEN_RESERVE": "100"}
    async with assistant_stack(**budget) as stack:
        me = await stack.user()
        for _ in range(3):
            fake_anthropic.replies.append(Scripted(script=[START, BLOCK, delta("Half "), NOT_JSON]))
        outcomes = []
        for _ in range(3):
            try:
                await stack.send(me, "hello")
                outcomes.append("OK")
            except grpc.aio.AioRpcError as error:
                outcomes.append(error.code().name)
        assert outcomes == ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
        assert len(fake_anthropic.requests) == 1


async def test_a_long_session_sends_its_latest_turns_within_the_history_bound(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """90 earlier turns of 5,000-character questions and answers (each within the message
    limit), as a session grows over months: it sent every one, 912,186 characters, past the
    model's context window, so every further question failed."""
    async with assistant_stack(ASSISTANT_TOKENS_PER_DAY="0") as stack:
        me, user_id = await stack.account()
        first = await stack.send(me, "hello")
        db = Database(stack.database_url)
        try:
            chats = Chats(db)
            for i in range(90):
                for role in (Role.USER, Role.ASSISTANT):
                    text = f"{i} {role.value} " + "x" * 5000
                    await chats.append(
                        user_id, Message(new_id(), first.session_id, role, text, utc_now())
                    )
        finally:
            await db.close()
        fake_anthropic.replies.append(Reply(text="ok"))
        await stack.send(me, "one more question", session_id=first.session_id)
        sent = fake_anthropic.requests[-1].body["messages"]
        texts = [block["text"] for turn in sent for block in turn["content"]]
        assert sum(map(len, texts)) <= HISTORY_CHARS
        assert texts[-1] == "one more question"
        assert sent[0]["role"] == "user" and texts[0].split()[1] == "user"
        # The latest turns, in order, up to the bound: 39 questions and answers of the 90.
        numbers = [int(text.split()[0]) for text in texts[:-1]]
        assert numbers == sorted(numbers) and numbers[-1] == 89
        assert len(numbers) == 2 * (HISTORY_CHARS // (2 * 5_008))
