"""The assistant service over gRPC, with real users and portfolio services, on SQLite and
PostgreSQL, driving the official Anthropic SDK against a local fake of the API."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from stockfolio.assistant.v1 import assistant_pb2
from stockfolio.portfolio.v1 import portfolio_pb2

from services.assistant.config import SEED_MODELS
from services.assistant.domain import Role
from services.assistant.repository import Chats
from services.runtime.db import Database
from services.runtime.errors import NotFound
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import AssistantStack, Metadata, StartStack
from tests.rpc_errors import expect_error, reason, retry_after, violations
from tests.utc_days import one_utc_day


async def test_a_message_starts_a_titled_session_and_the_answer_is_stored(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        me = await stack.user()
        fake_anthropic.replies.append(Reply(text="Diversify across sectors.", input_tokens=40))
        sent = await stack.send(me, "  How should I diversify my holdings?  ")
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
        again = await stack.send(me, "And bonds?", session_id=sent.session_id)
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


async def test_a_long_conversation_is_read_newest_first_a_page_at_a_time(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """GetSession gives the newest 100 messages (oldest first) and pages back from the first
    one it gave with `before`: every message once, in order, however many arrive meanwhile."""
    async with assistant_stack() as stack:
        me, user_id = await stack.account()
        fake_anthropic.replies.append(Reply(text="answer 1"))
        session = (await stack.send(me, "question 1")).session_id
        db = Database(stack.database_url)
        try:
            chats = Chats(db)
            for n in range(2, 126):
                await chats.add_message(user_id, session, Role.USER, f"question {n}")
                await chats.add_message(user_id, session, Role.ASSISTANT, f"answer {n}")
            everything = [m.content for m in await chats.messages(user_id, session)]
            assert len(everything) == 250

            def get(**fields: Any) -> Any:
                request = assistant_pb2.GetSessionRequest(id=session, **fields)
                return stack.assistant.GetSession(request, metadata=me)

            newest = await get()
            assert newest.session.id == session
            assert [m.content for m in newest.messages] == everything[-100:]
            assert newest.has_earlier
            # Messages written while the reader pages back do not shift the pages.
            await chats.add_message(user_id, session, Role.USER, "question 126")
            read = [m.content for m in newest.messages]
            before = newest.messages[0].id
            while True:
                page = await get(before=before, limit=60)
                assert len(page.messages) <= 60
                read = [m.content for m in page.messages] + read
                if not page.has_earlier:
                    break
                before = page.messages[0].id
            assert read == everything
            assert len(page.messages) == 30  # 250 = 100 + 60 + 60 + 30
            latest = await get(limit=2)
            assert [m.content for m in latest.messages] == ["answer 125", "question 126"]
        finally:
            await db.close()

        error = await expect_error(get(limit=501), grpc.StatusCode.INVALID_ARGUMENT)
        assert [f for f, _ in violations(error)] == ["limit"]
        # `before` must be a message of this session: not another session's, nor a made-up id.
        fake_anthropic.replies.append(Reply(text="other"))
        other = await stack.send(me, "another conversation")
        for stranger in (other.message.id, "not-a-message"):
            error = await expect_error(get(before=stranger), grpc.StatusCode.INVALID_ARGUMENT)
            assert violations(error) == [("before", "is not a message of this session")]
        # Someone else's session is not found, whatever is asked of it.
        stranger_me = await stack.user()
        call = stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session, limit=1), metadata=stranger_me
        )
        await expect_error(call, grpc.StatusCode.NOT_FOUND)


async def stream(
    stack: AssistantStack, who: Metadata, message: str, session_id: str = ""
) -> list[assistant_pb2.ChatStreamResponse]:
    call = stack.assistant.ChatStream(
        assistant_pb2.ChatStreamRequest(session_id=session_id, message=message), metadata=who
    )
    return [event async for event in call]


async def test_tools_read_the_callers_own_portfolios_with_the_callers_token(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        alice, bob = await stack.user(), await stack.user()
        alpha = await stack.portfolio_with(alice, "Alpha", [("AAPL", "3", "150")])
        await stack.portfolio_with(bob, "Beta", [("MSFT", "2", "300")])
        fake_anthropic.replies.extend(
            [
                Reply(text="Let me check.", tools=[("list_portfolios", {})]),
                Reply(text="You hold 3 AAPL."),
            ]
        )
        events = await stream(stack, alice, "What do I hold?")
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "session"
        assert kinds[-1] == "done"
        assert kinds.index("tool_call") < kinds.index("tool_result") < len(kinds) - 1
        text = "".join(e.chunk.text for e in events if e.HasField("chunk"))
        assert text == "Let me check.You hold 3 AAPL."
        result = next(e.tool_result for e in events if e.HasField("tool_result"))
        assert result.name == "list_portfolios"
        assert not result.is_error
        names = [p["name"] for p in json_format.MessageToDict(result.result)["portfolios"]]
        assert names == ["Alpha"]
        # What went back to the model is Alice's portfolio, never Bob's.
        sent_back = fake_anthropic.requests[-1].tool_results()
        assert len(sent_back) == 1
        assert "Alpha" in sent_back[0]["content"]
        assert "Beta" not in sent_back[0]["content"]
        assert sent_back[0]["tool_use_id"] == result.id
        done = events[-1].done
        assert done.usage.input_tokens == 50  # two provider rounds of 25

        session_id = events[0].session.session_id
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session_id), metadata=alice
        )
        assert [(m.role, m.content) for m in got.messages] == [
            ("user", "What do I hold?"),
            ("assistant", "Let me check."),
            ("assistant", "You hold 3 AAPL."),
        ]
        stored_call = got.messages[1].tool_calls[0]
        assert stored_call.name == "list_portfolios"
        assert json_format.MessageToDict(stored_call.result)["portfolios"][0]["id"] == alpha.id
        assert got.messages[2].id == done.message_id

        # Bob's assistant asked for Alice's portfolio: the portfolio service, called with Bob's
        # token, says it does not exist.
        fake_anthropic.replies.extend(
            [
                Reply(tools=[("get_portfolio", {"portfolio_id": alpha.id})]),
                Reply(text="I cannot see that portfolio."),
            ]
        )
        events = await stream(stack, bob, "Show me portfolio " + alpha.id)
        result = next(e.tool_result for e in events if e.HasField("tool_result"))
        assert result.is_error
        assert json_format.MessageToDict(result.result)["code"] == "NOT_FOUND"
        assert "Alpha" not in fake_anthropic.requests[-1].tool_results()[0]["content"]


async def test_provider_errors_reach_the_user_with_a_retry_hint_and_keep_the_question(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    # Long enough for the fake's answers on a loaded machine; the case that times out waits 30 s.
    async with assistant_stack(CLAUDE_TIMEOUT="2") as stack:
        me = await stack.user()
        first = await stack.send(me, "hello")
        session = first.session_id
        cases = [
            (Reply(status=429, retry_after="7"), grpc.StatusCode.RESOURCE_EXHAUSTED,
             "PROVIDER_RATE_LIMITED", 7.0, "rate limit"),
            (Reply(status=529, retry_after="12"), grpc.StatusCode.UNAVAILABLE,
             "PROVIDER_OVERLOADED", 12.0, "overloaded"),
            (Reply(status=401), grpc.StatusCode.UNAVAILABLE, "PROVIDER_AUTH_FAILED", 300.0,
             "CLAUDE_API_KEY"),
            (Reply(delay=30), grpc.StatusCode.UNAVAILABLE, "PROVIDER_TIMEOUT", 5.0, "in time"),
        ]  # fmt: skip
        for number, (reply, code, why, wait, words) in enumerate(cases):
            fake_anthropic.replies.append(reply)
            error = await expect_error(
                stack.send(me, f"q{number}", session_id=session),
                code,
            )
            assert reason(error) == why
            assert retry_after(error) == wait
            assert words in (error.details() or "")
            assert "retry" in (error.details() or "").lower()
            assert fake_anthropic.api_key not in (error.details() or "")
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session), metadata=me
        )
        # Every question is kept, once; no answer was invented for them.
        assert [(m.role, m.content) for m in got.messages] == [
            ("user", "hello"),
            ("assistant", "Hello from the fake model."),
            ("user", "q0"),
            ("user", "q1"),
            ("user", "q2"),
            ("user", "q3"),
        ]
        # The next question carries them to the model as one user turn (turns alternate).
        fake_anthropic.replies.append(Reply(text="Back."))
        await stack.send(me, "still there?", session_id=session)
        turns = fake_anthropic.requests[-1].messages
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]
        assert [b["text"] for b in turns[-1]["content"]] == [
            "q0",
            "q1",
            "q2",
            "q3",
            "still there?",
        ]


async def test_the_sdk_retries_an_overloaded_provider_when_configured_to(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack(CLAUDE_MAX_RETRIES="1") as stack:
        me = await stack.user()
        fake_anthropic.replies.extend(
            [Reply(status=529, retry_after="0.01"), Reply(text="Second time lucky.")]
        )
        sent = await stack.send(me, "hi")
        assert sent.message.content == "Second time lucky."
        assert len(fake_anthropic.requests) == 2


async def test_a_half_streamed_answer_is_kept_once_marked_incomplete(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        me = await stack.user()
        fake_anthropic.replies.append(
            Reply(text="Markets rose sharply today because", error_after=3)
        )
        call = stack.assistant.ChatStream(
            assistant_pb2.ChatStreamRequest(message="What happened?"), metadata=me
        )
        events: list[assistant_pb2.ChatStreamResponse] = []

        async def read_all() -> None:
            async for event in call:
                events.append(event)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_all()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason(caught.value) == "PROVIDER_OVERLOADED"
        streamed = "".join(e.chunk.text for e in events if e.HasField("chunk"))
        assert streamed == "Markets rose sharply "
        session = events[0].session.session_id
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session), metadata=me
        )
        assert [(m.role, m.content, m.incomplete) for m in got.messages] == [
            ("user", "What happened?", False),
            ("assistant", "Markets rose sharply ", True),
        ]
        # The next turn sends the partial answer as the assistant's, once.
        fake_anthropic.replies.append(Reply(text="Go on."))
        await stream(stack, me, "Finish please", session)
        turns = fake_anthropic.requests[-1].messages
        assert turns[1] == {
            "role": "assistant",
            "content": [{"type": "text", "text": "Markets rose sharply "}],
        }
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session), metadata=me
        )
        assert [m.incomplete for m in got.messages] == [False, True, False, False]


async def test_cancelling_the_stream_stops_the_answer_and_keeps_what_was_streamed(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        me = await stack.user()
        fake_anthropic.replies.append(Reply(text="one two three four five six seven", hold_after=3))
        call = stack.assistant.ChatStream(
            assistant_pb2.ChatStreamRequest(message="count"), metadata=me
        )
        session = ""
        streamed = ""
        async for event in call:
            if event.HasField("session"):
                session = event.session.session_id
            streamed += event.chunk.text
            if streamed == "one two three ":
                break
        call.cancel()
        messages: list[assistant_pb2.ChatMessage] = []

        async def fetch() -> None:
            # The session is written while the provider answers: it may not be there yet.
            with contextlib.suppress(grpc.aio.AioRpcError):
                got = await stack.assistant.GetSession(
                    assistant_pb2.GetSessionRequest(id=session), metadata=me
                )
                messages[:] = list(got.messages)

        async def kept() -> bool:
            await fetch()
            return len(messages) == 2

        for _ in range(500):
            if await kept():
                break
            await asyncio.sleep(0.01)
        assert [(m.role, m.content, m.incomplete) for m in messages] == [
            ("user", "count", False),
            ("assistant", "one two three ", True),
        ]
        fake_anthropic.release()


async def test_folders_organise_a_users_own_sessions_only(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        alice, bob = await stack.user(), await stack.user()
        first = await stack.send(alice, "First chat")
        second = await stack.send(alice, "Second chat")
        created = await stack.assistant.CreateFolder(
            assistant_pb2.CreateFolderRequest(name="  Research  "), metadata=alice
        )
        folder = created.folder
        assert folder.name == "Research"
        renamed = await stack.assistant.UpdateFolder(
            assistant_pb2.UpdateFolderRequest(id=folder.id, name="Ideas"), metadata=alice
        )
        assert (renamed.folder.id, renamed.folder.name) == (folder.id, "Ideas")

        moved = await stack.assistant.UpdateSession(
            assistant_pb2.UpdateSessionRequest(id=first.session_id, folder_id=folder.id),
            metadata=alice,
        )
        assert moved.session.folder_id == folder.id
        assert moved.session.title == "First chat"
        in_folder = await stack.assistant.ListSessions(
            assistant_pb2.ListSessionsRequest(folder_id=folder.id), metadata=alice
        )
        assert [s.id for s in in_folder.sessions] == [first.session_id]
        everything = await stack.assistant.ListSessions(
            assistant_pb2.ListSessionsRequest(limit=1), metadata=alice
        )
        assert everything.pagination.total == 2
        assert everything.pagination.total_pages == 2
        assert len(everything.sessions) == 1

        # Bob sees none of it and can touch none of it.
        assert not (
            await stack.assistant.ListSessions(assistant_pb2.ListSessionsRequest(), metadata=bob)
        ).sessions
        for call in (
            stack.assistant.GetSession(
                assistant_pb2.GetSessionRequest(id=first.session_id), metadata=bob
            ),
            stack.assistant.UpdateFolder(
                assistant_pb2.UpdateFolderRequest(id=folder.id, name="Mine"), metadata=bob
            ),
            stack.assistant.DeleteFolder(
                assistant_pb2.DeleteFolderRequest(id=folder.id), metadata=bob
            ),
            stack.assistant.DeleteSession(
                assistant_pb2.DeleteSessionRequest(id=first.session_id), metadata=bob
            ),
            stack.send(bob, "hi", session_id=first.session_id),
        ):
            await expect_error(call, grpc.StatusCode.NOT_FOUND)
        bobs = await stack.send(bob, "Bob's chat")
        # Nor may Bob file his session in Alice's folder.
        error = await expect_error(
            stack.assistant.UpdateSession(
                assistant_pb2.UpdateSessionRequest(id=bobs.session_id, folder_id=folder.id),
                metadata=bob,
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert reason(error) == "FOLDER_NOT_FOUND"

        # Deleting the folder keeps its sessions, out of any folder.
        await stack.assistant.DeleteFolder(
            assistant_pb2.DeleteFolderRequest(id=folder.id), metadata=alice
        )
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=first.session_id), metadata=alice
        )
        assert got.session.folder_id == ""
        await expect_error(
            stack.assistant.ListSessions(
                assistant_pb2.ListSessionsRequest(folder_id=folder.id), metadata=alice
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        renamed_session = await stack.assistant.UpdateSession(
            assistant_pb2.UpdateSessionRequest(id=second.session_id, title="  Renamed  "),
            metadata=alice,
        )
        assert renamed_session.session.title == "Renamed"
        await stack.assistant.DeleteSession(
            assistant_pb2.DeleteSessionRequest(id=second.session_id), metadata=alice
        )
        error = await expect_error(
            stack.assistant.GetSession(
                assistant_pb2.GetSessionRequest(id=second.session_id), metadata=alice
            ),
            grpc.StatusCode.NOT_FOUND,
        )
        assert reason(error) == "SESSION_NOT_FOUND"
        await expect_error(
            stack.assistant.CreateFolder(
                assistant_pb2.CreateFolderRequest(name="   "), metadata=alice
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_search_finds_only_the_users_own_messages(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        alice, bob = await stack.user(), await stack.user()
        fake_anthropic.replies.extend(
            [
                Reply(text="A dividend reinvestment plan buys more shares."),
                Reply(text="Growth stocks rarely pay out."),
                Reply(text="Utilities pay a steady dividend."),
            ]
        )
        for who, question in (
            (alice, "Explain dividend reinvestment"),
            (alice, "What about growth stocks?"),
            (bob, "Which sectors pay a dividend?"),
        ):
            await stack.send(who, question)
        found = await stack.assistant.SearchMessages(
            assistant_pb2.SearchMessagesRequest(q="dividend"), metadata=alice
        )
        assert sorted(m.content for m in found.messages) == [
            "A dividend reinvestment plan buys more shares.",
            "Explain dividend reinvestment",
        ]
        assert found.pagination.total == 2
        both_words = await stack.assistant.SearchMessages(
            assistant_pb2.SearchMessagesRequest(q="Growth STOCKS"), metadata=alice
        )
        assert sorted(m.content for m in both_words.messages) == [
            "Growth stocks rarely pay out.",
            "What about growth stocks?",
        ]
        bobs = await stack.assistant.SearchMessages(
            assistant_pb2.SearchMessagesRequest(q="dividend"), metadata=bob
        )
        assert sorted(m.content for m in bobs.messages) == [
            "Utilities pay a steady dividend.",
            "Which sectors pay a dividend?",
        ]
        assert all(m.session_id for m in bobs.messages)
        nothing = await stack.assistant.SearchMessages(
            assistant_pb2.SearchMessagesRequest(q="utilities"), metadata=alice
        )
        assert list(nothing.messages) == []
        await expect_error(
            stack.assistant.SearchMessages(
                assistant_pb2.SearchMessagesRequest(q="  "), metadata=alice
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_bad_input_is_refused_before_anything_is_stored_or_sent(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack(ASSISTANT_MAX_MESSAGE_CHARS="50") as stack:
        me = await stack.user()
        for text, description in (
            ("", "is required"),
            ("   \n ", "must not be empty"),
            ("x" * 51, "holds 51 characters; at most 50"),
        ):
            error = await expect_error(
                stack.send(me, text),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert violations(error) == [("message", description)]
        error = await expect_error(
            stack.send(me, "hi", model="gpt-4"),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert reason(error) == "UNKNOWN_MODEL"
        [(field, description)] = violations(error)
        assert field == "model"
        for model in (*SEED_MODELS, "claude-fake-2-20260101"):
            assert model in description
        error = await expect_error(
            stack.send(me, "hi", session_id="no-such-session"),
            grpc.StatusCode.NOT_FOUND,
        )
        assert reason(error) == "SESSION_NOT_FOUND"
        listed = await stack.assistant.ListSessions(
            assistant_pb2.ListSessionsRequest(), metadata=me
        )
        assert list(listed.sessions) == []
        assert fake_anthropic.requests == []


async def test_models_are_the_seeds_and_the_providers(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        me = await stack.user()
        listed = await stack.assistant.ListModels(assistant_pb2.ListModelsRequest(), metadata=me)
        assert [m.id for m in listed.models] == [*SEED_MODELS, "claude-fake-2-20260101"]
        assert listed.models[-1].name == "Claude Fake 2"
        sent = await stack.send(me, "hi", model="claude-fake-2-20260101")
        assert sent.message.model == "claude-fake-2-20260101"
        assert fake_anthropic.requests[-1].body["model"] == "claude-fake-2-20260101"
        # The session keeps its model for the next message.
        await stack.send(me, "again", session_id=sent.session_id)
        assert fake_anthropic.requests[-1].body["model"] == "claude-fake-2-20260101"


@one_utc_day  # the third answer is refused for the day's spent budget: not on a new day
async def test_messages_per_minute_and_tokens_per_day_are_limited_per_user(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    limits = {
        "ASSISTANT_MESSAGES_RATE": "3/minute",
        "ASSISTANT_TOKENS_PER_DAY": "60",
        "ASSISTANT_TOKEN_RESERVE": "20",
    }
    async with assistant_stack(**limits) as stack:
        me, other = await stack.user(), await stack.user()
        # 25 + 3 tokens each: 56 of 60 spent; a third answer's reserve of 20 does not fit.
        for _ in range(2):
            await stack.send(me, "hi")
        error = await expect_error(
            stack.send(me, "hi"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert reason(error) == "TOKEN_BUDGET_EXHAUSTED"
        assert "60 tokens" in (error.details() or "")
        assert 0 < retry_after(error) <= 86400
        error = await expect_error(
            stack.send(me, "hi"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert reason(error) == "MESSAGE_RATE_LIMITED"
        assert 0 < retry_after(error) <= 60
        # Another user has budgets of their own.
        sent = await stack.send(other, "hi")
        assert sent.message.content == "Hello from the fake model."
        assert len(fake_anthropic.requests) == 3


async def test_without_a_key_the_offline_assistant_answers_through_the_same_tools(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack(CLAUDE_API_KEY="") as stack:
        me = await stack.user()
        await stack.portfolio_with(me, "Long term", [("AAPL", "3", "150")], cash="1000")
        await stack.portfolio_with(me, "Play money", [("MSFT", "2", "300")], cash="600")
        worth = await stack.send(me, "What is my portfolio worth?")
        portfolios = (
            await stack.portfolio.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=me)
        ).portfolios
        total = sum(Decimal(p.total_value) for p in portfolios)
        text = worth.message.content
        assert "offline" in text
        assert f"worth {total:,.2f} USD in total" in text
        assert "Long term" in text
        assert "Play money" in text
        # It read them through the list_portfolios tool, stored with its result.
        tool_message = worth.messages[1]
        assert [c.name for c in tool_message.tool_calls] == ["list_portfolios"]
        assert not tool_message.tool_calls[0].is_error

        held = await stack.send(me, "What do I hold?", session_id=worth.session_id)
        assert "3 AAPL" in held.message.content
        assert "2 MSFT" in held.message.content
        other = await stack.send(me, "Write me a poem")
        assert "offline" in other.message.content
        assert [m.role for m in other.messages] == ["user", "assistant"]
        assert fake_anthropic.requests == []


async def test_an_answer_under_way_when_the_server_stops_is_kept_incomplete(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        me, user_id = await stack.account()
        fake_anthropic.replies.append(Reply(text="alpha beta gamma delta", hold_after=2))
        call = stack.assistant.ChatStream(
            assistant_pb2.ChatStreamRequest(message="Tell me"), metadata=me
        )
        session = ""
        streamed = ""
        async for event in call:
            session = session or event.session.session_id
            streamed += event.chunk.text
            if streamed == "alpha beta ":
                break
        # The server stops with the answer held mid-stream by the provider.
        await stack.running.server.stop(0)
        db = Database(stack.database_url)
        kept: list[Any] = []
        try:
            # The cancelled answer writes what it streamed after its question, whose write (the
            # session's first) may itself still be under way on a loaded machine.
            for _ in range(500):
                with contextlib.suppress(NotFound):
                    kept = await Chats(db).messages(user_id, session)
                if len(kept) == 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            await db.close()
        assert [(m.role.value, m.content, m.incomplete) for m in kept] == [
            ("user", "Tell me", False),
            ("assistant", "alpha beta ", True),
        ]
        fake_anthropic.release()
