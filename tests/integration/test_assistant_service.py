"""The assistant service over gRPC, with real users and portfolio services, on SQLite and
PostgreSQL, driving the official Anthropic SDK against a local fake of the API."""

from __future__ import annotations

import json

import grpc
import pytest
from stockfolio.assistant.v1 import assistant_pb2

from services.assistant.config import SEED_MODELS
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import (  # noqa: F401 - fixtures
    StartStack,
    assistant_stack,
    fake_anthropic,
    stack_databases,
    until,
)
from tests.rpc_errors import expect_error, reason, violations


async def test_a_message_starts_a_titled_session_and_the_answer_is_stored(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        me = await stack.user()
        fake_anthropic.replies.append(Reply(text="Diversify across sectors.", input_tokens=40))
        sent = await stack.assistant.SendMessage(
            assistant_pb2.SendMessageRequest(message="  How should I diversify my holdings?  "),
            metadata=me,
        )
        assert sent.message.content == "Diversify across sectors."
        assert sent.message.role == "assistant"
        assert sent.message.model == SEED_MODELS[0]
        assert not sent.message.incomplete
        assert (sent.usage.input_tokens, sent.usage.output_tokens) == (40, 3)
        assert [m.role for m in sent.messages] == ["user", "assistant"]
        # The SDK sent the key, the default model and the user's words.
        request = fake_anthropic.requests[-1]
        assert request.api_key == fake_anthropic.api_key
        assert request.body["model"] == SEED_MODELS[0]
        assert request.body["stream"] is True
        assert request.messages == [
            {
                "role": "user",
                "content": [{"type": "text", "text": "How should I diversify my holdings?"}],
            }
        ]
        assert {t["name"] for t in request.body["tools"]} >= {"list_portfolios", "get_quote"}

        listed = await stack.assistant.ListSessions(
            assistant_pb2.ListSessionsRequest(), metadata=me
        )
        assert [s.id for s in listed.sessions] == [sent.session_id]
        assert listed.sessions[0].title == "How should I diversify my holdings?"
        assert listed.pagination.total == 1

        # A second message in the same session carries the history.
        fake_anthropic.replies.append(Reply(text="Bonds too."))
        again = await stack.assistant.SendMessage(
            assistant_pb2.SendMessageRequest(session_id=sent.session_id, message="And bonds?"),
            metadata=me,
        )
        assert again.session_id == sent.session_id
        assert [m["role"] for m in fake_anthropic.requests[-1].messages] == [
            "user",
            "assistant",
            "user",
        ]
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=sent.session_id), metadata=me
        )
        assert [(m.role, m.content) for m in got.messages] == [
            ("user", "How should I diversify my holdings?"),
            ("assistant", "Diversify across sectors."),
            ("user", "And bonds?"),
            ("assistant", "Bonds too."),
        ]
        assert got.messages[1].usage.input_tokens == 40
