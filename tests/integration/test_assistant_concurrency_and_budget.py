"""The assistant when things happen at once or go missing: messages written to one session at
once (two tabs) all queue for their place, a session deleted meanwhile is SESSION_NOT_FOUND;
the day's token budget is rebuilt from a ledger of spent tokens that deleting sessions does not
touch (and that counts an answer cut before its first word), and a total lost mid-answer is
never refunded a reservation it did not hold. Also what a model may write that no double holds
(a tool input of 1e999, or of 400 digits): refused as the tool's input, the answer going on, the
session readable, the socket told. And the offline answer's "worth ... in total", which counts
every portfolio, not the first page.

Real users, portfolio and assistant servers (and the real facade where a socket is tested) in
front of the local fake Anthropic API; both database engines where storage decides.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from google.protobuf import json_format
from sqlalchemy import text
from stockfolio.assistant.v1 import assistant_pb2
from stockfolio.portfolio.v1 import portfolio_pb2

from services.assistant.domain import Message, Role, Session, Usage
from services.assistant.repository import Chats, new_id
from services.runtime.db import Database
from services.runtime.errors import NotFound
from services.runtime.migrations import upgrade
from tests.conftest import REDIS_DATABASE_URL, service_database
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import (
    AssistantStack,
    Metadata,
    StartStack,
    tokens_counted_since,
)
from tests.integration.conftest import FacadeInFront
from tests.integration.socket_client import WAIT, Socket, authenticated, receive_until
from tests.rpc_errors import expect_error, reason
from tests.utc_days import one_utc_day, utc_today
from tests.waiting import until

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# The fake's answer "Short answer": 25 input tokens, 2 output.
ANSWER_TOKENS = 27


async def wait_for_tokens(database_url: str, user_id: str, first: date, expected: int) -> None:
    """Until the ledger counts `expected` tokens from the day `first` on (an answer settles just
    after its reply)."""
    counted = -1
    for _ in range(200):
        counted = await tokens_counted_since(database_url, user_id, first)
        if counted == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{counted} tokens counted since {first}, not {expected}")


async def refused_for_budget(stack: AssistantStack, who: Metadata, message: str) -> None:
    refused = await expect_error(stack.send(who, message), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert reason(refused) == "TOKEN_BUDGET_EXHAUSTED"


# --- one session, written at once ------------------------------------------------------------


async def test_messages_sent_at_once_to_one_session_are_all_answered_and_stored(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """Two tabs (or a retry) send to one session at once. The sequence numbers were read
    without a lock: on PostgreSQL two writes took the same one and the unique index made one
    of them a 500. Writers now queue on the session's row."""
    fake_anthropic.default = lambda body: Reply(text="Short answer")
    first_day = utc_today()
    async with assistant_stack(ASSISTANT_MESSAGES_RATE="0") as stack:
        me, user_id = await stack.account()
        first = await stack.send(me, "hello")
        questions = [f"question {n}" for n in range(6)]
        results = await asyncio.gather(
            *(stack.send(me, q, session_id=first.session_id) for q in questions),
            return_exceptions=True,
        )
        failed = [(r.code(), r.details()) for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert failed == []
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=first.session_id), metadata=me
        )
        asked = sorted(m.content for m in got.messages if m.role == "user")
        answers = [m.content for m in got.messages if m.role == "assistant"]
        assert asked == sorted(["hello", *questions])
        assert answers == ["Short answer"] * 7
        await wait_for_tokens(stack.database_url, user_id, first_day, 7 * ANSWER_TOKENS)


@pytest.fixture
def assistant_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    with service_database("assistant", database_url, tmp_path) as url:
        yield url


# Writes sent around the delete (the rest wait for it to be done).
RACING = 20


async def test_a_session_deleted_while_messages_are_written_to_it_is_not_found_for_them(
    assistant_database: str,
) -> None:
    """Each write either lands before the delete (and goes with it) or finds no session
    (SESSION_NOT_FOUND); none fails on the foreign key (a 500 on PostgreSQL), and the tokens
    of every write are counted, stored or not: they were spent."""
    db = Database(assistant_database)
    try:
        chats = Chats(db)
        now = datetime.now(UTC)
        session = Session(new_id(), "u1", None, "title", "model", now, now)
        await chats.start_session(session, Message(new_id(), session.id, Role.USER, "hi", now))

        deleted = asyncio.Event()

        async def write(n: int) -> str:
            if n < RACING:
                await asyncio.sleep(0.002 * n)  # around the delete: either outcome
            else:
                await deleted.wait()  # after it, however slow the machine: no session
            try:
                await chats.add_message(
                    "u1", session.id, Role.ASSISTANT, f"answer {n}", usage=Usage(7, 3)
                )
            except NotFound as error:
                return error.reason
            return "stored"

        async def delete() -> str:
            await asyncio.sleep(0.02)
            await chats.delete_session("u1", session.id)
            deleted.set()
            return "deleted"

        outcomes = await asyncio.gather(*(write(n) for n in range(30)), delete())
        assert outcomes[-1] == "deleted"
        assert set(outcomes[:RACING]) <= {"stored", "SESSION_NOT_FOUND"}
        assert set(outcomes[RACING:-1]) == {"SESSION_NOT_FOUND"}
        async with db.engine.connect() as connection:
            left = (await connection.execute(text("SELECT count(*) FROM chat_messages"))).scalar()
        assert left == 0
        assert await chats.tokens_since("u1", now) == 30 * 10
    finally:
        await db.close()


# --- the day's budget, rebuilt from the ledger ------------------------------------------------


@one_utc_day  # a spent budget is refused again after the restart: not on a new day
async def test_deleting_chat_sessions_does_not_give_back_the_days_token_budget(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """The day's total, once the cache loses it (a restart on the in-process cache, a Redis
    flush), was rebuilt from the stored messages' counts, which DeleteSession deletes: a user
    who spent the budget deleted their chats and had it whole again."""
    budget = {"ASSISTANT_TOKENS_PER_DAY": "60", "ASSISTANT_TOKEN_RESERVE": "30"}
    fake_anthropic.default = lambda body: Reply(text="Short answer")
    first_day = utc_today()
    async with assistant_stack(**budget) as stack:
        me, user_id = await stack.account()
        sessions = [(await stack.send(me, "hello")).session_id for _ in range(2)]
        await refused_for_budget(stack, me, "more")  # 54 spent: 54 + 30 > 60
        for session_id in sessions:
            await stack.assistant.DeleteSession(
                assistant_pb2.DeleteSessionRequest(id=session_id), metadata=me
            )
        await wait_for_tokens(stack.database_url, user_id, first_day, 2 * ANSWER_TOKENS)
    async with assistant_stack(**budget) as stack:  # restarted: the same databases
        await refused_for_budget(stack, me, "more")
        counted = await tokens_counted_since(stack.database_url, user_id, first_day)
        assert counted == 2 * ANSWER_TOKENS


@SQLITE
@one_utc_day  # 501 tokens leave no room for another answer: on their day
async def test_an_answer_cut_before_its_first_word_is_counted_after_a_restart(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """The provider took 500 input tokens, then failed (overloaded_error) before any text:
    they were charged in the cache, but stored nowhere (an incomplete answer was stored only
    with text), so a restart forgot them."""
    budget = {"ASSISTANT_TOKENS_PER_DAY": "540", "ASSISTANT_TOKEN_RESERVE": "50"}
    first_day = utc_today()
    async with assistant_stack(**budget) as stack:
        me, user_id = await stack.account()
        fake_anthropic.replies.append(Reply(text="never said", error_after=0, input_tokens=500))
        failed = await expect_error(stack.send(me, "hello"), grpc.StatusCode.UNAVAILABLE)
        assert reason(failed) == "PROVIDER_OVERLOADED"
        # The input, and the one output token message_start reported: 501 + 50 > 540.
        await wait_for_tokens(stack.database_url, user_id, first_day, 501)
        await refused_for_budget(stack, me, "again")
        listed = await stack.assistant.ListSessions(
            assistant_pb2.ListSessionsRequest(), metadata=me
        )
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=listed.sessions[0].id), metadata=me
        )
        assert [(m.role, m.content) for m in got.messages] == [("user", "hello")]
    async with assistant_stack(**budget) as stack:
        await refused_for_budget(stack, me, "and again")


@SQLITE
@one_utc_day  # one day's total in Redis, and a refusal on it
async def test_losing_the_days_total_mid_answer_refunds_no_reservation_into_the_new_one(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, redis_url: str
) -> None:
    """Redis loses the day's total while an answer waits on the provider; the next answer
    seeds it again from the ledger (which holds nothing of the first). The first answer's
    refund of its unused reservation went into the new total, which never held it: the total
    fell below what was spent, and the user overspent."""
    budget = {
        "ASSISTANT_TOKENS_PER_DAY": "100",
        "ASSISTANT_TOKEN_RESERVE": "50",
        "REDIS_URL": redis_url,
    }
    fake_anthropic.default = lambda body: Reply(text="Short answer")
    first_day = utc_today()
    async with assistant_stack(**budget) as stack:
        me, user_id = await stack.account()
        fake_anthropic.replies.append(Reply(text="Short answer", delay=30))
        first = asyncio.ensure_future(stack.send(me, "first"))
        await until(lambda: bool(fake_anthropic.requests), "the first answer's provider call")
        client = aioredis.Redis.from_url(REDIS_DATABASE_URL)
        try:
            [total_key] = [k async for k in client.scan_iter(match=f"*:tokens:{user_id}:*")]
            await client.delete(total_key)  # evicted (its epoch beside it survives)
            await stack.send(me, "second")  # seeded again: 0, then 27 spent
            fake_anthropic.release()
            await first  # 27 more: 54 spent, 46 left, less than a reservation of 50
            await wait_for_tokens(stack.database_url, user_id, first_day, 2 * ANSWER_TOKENS)
            await until_total(client, total_key, 2 * ANSWER_TOKENS)
        finally:
            await client.aclose()
        await refused_for_budget(stack, me, "third")


async def until_total(client: aioredis.Redis, key: bytes, expected: int) -> None:
    total = None
    for _ in range(100):
        total = int(await client.get(key) or -1)
        if total == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the day's total says {total} tokens spent; {expected} were")


async def test_the_ledger_starts_with_the_tokens_of_the_messages_stored_before_it(
    database_url: str, tmp_path: Path
) -> None:
    """Migration 0002 fills the ledger from the messages already stored, per user and UTC day:
    upgrading must not give anyone today's budget back."""
    url = database_url
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'assistant.db'}"
    await asyncio.to_thread(upgrade, "assistant", url, "0001")  # it runs a loop of its own
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    rows = [  # user, day, input, output
        ("ann", today, 30, 12),
        ("ann", today, 5, 5),
        ("ann", yesterday, 100, 1),
        ("bob", today, 7, 0),
        ("bob", today, 0, 0),
    ]
    db = Database(url)
    try:
        async with db.transaction() as tx:
            for user in ("ann", "bob"):
                await tx.execute(
                    text(
                        "INSERT INTO chat_sessions (id, user_id, title, model, created_at, "
                        "updated_at) VALUES (:id, :user, 't', 'm', :at, :at)"
                    ),
                    {"id": user, "user": user, "at": today},
                )
            for n, (user, at, spent_in, spent_out) in enumerate(rows):
                await tx.execute(
                    text(
                        "INSERT INTO chat_messages (id, session_id, user_id, sequence, role, "
                        "content, tool_calls, incomplete, model, input_tokens, output_tokens, "
                        "created_at) VALUES (:id, :user, :user, :n, 'assistant', 'x', '[]', "
                        "false, 'm', :i, :o, :at)"
                    ),
                    {"id": f"m{n}", "user": user, "n": n, "i": spent_in, "o": spent_out, "at": at},
                )
    finally:
        await db.close()
    await asyncio.to_thread(upgrade, "assistant", url)
    db = Database(url)
    try:
        chats = Chats(db)
        assert await chats.tokens_since("ann", today) == 52
        assert await chats.tokens_since("ann", yesterday) == 153
        assert await chats.tokens_since("bob", today) == 7
        await chats.delete_session("ann", "ann")
        assert await chats.tokens_since("ann", today) == 52
    finally:
        await db.close()


# --- the offline answer -------------------------------------------------------------------------


@SQLITE
async def test_the_offline_worth_counts_every_portfolio_of_the_user(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """ "What is my portfolio worth?" summed the first page of 50 that list_portfolios read:
    a user with 51 was told a sum missing one. The tool reads them all; it lists 50."""
    async with assistant_stack(CLAUDE_API_KEY="") as stack:
        me = await stack.user()
        for number in range(51):
            await stack.portfolio.CreatePortfolio(
                portfolio_pb2.CreatePortfolioRequest(
                    name=f"P{number:02d}",
                    kind=portfolio_pb2.PORTFOLIO_KIND_TRACKING,
                    initial_cash=f"{100 + number}",
                ),
                metadata=me,
            )
        worth = (await stack.send(me, "What is my portfolio worth?")).message.content
        total = sum(Decimal(100 + n) for n in range(51))
        assert f"worth {total:,.2f} USD in total:" in worth
        assert worth.count("\n- P") == 50
        assert worth.endswith("- and 1 more portfolio, not listed here")


# --- numbers no double holds --------------------------------------------------------------------


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def calling_get_quote_with(fake: FakeAnthropic, raw_input: str) -> None:
    """The fake's first round calls get_quote with `raw_input` as its input's JSON text (the
    fake's own encoder could not write 1e999); later rounds answer as the fake does."""
    original = fake._stream
    rounds = 0

    async def scripted(response: web.StreamResponse, reply: Reply, model: str) -> None:
        nonlocal rounds
        rounds += 1
        if rounds > 1:
            return await original(response, reply, model)
        usage = {"input_tokens": 10, "output_tokens": 1}
        start: dict[str, Any] = {
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
        }  # fmt: skip
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_quote", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": raw_input}
        stop = {"stop_reason": "tool_use", "stop_sequence": None}
        for name, data in (
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start",
             {"type": "content_block_start", "index": 0, "content_block": block}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta",
             {"type": "message_delta", "delta": stop, "usage": {"output_tokens": 5}}),
            ("message_stop", {"type": "message_stop"}),
        ):  # fmt: skip
            await response.write(_sse(name, data))
        await response.write_eof()

    fake._stream = scripted  # type: ignore[method-assign]


async def _quote_asked(stack: AssistantStack, me: Metadata) -> tuple[str, assistant_pb2.ToolCall]:
    """ "quote it" asked and answered to the end (its session first, `done` last): the session's
    id and the result of the one tool call the answer made."""
    call = stack.assistant.ChatStream(
        assistant_pb2.ChatStreamRequest(message="quote it"), metadata=me
    )
    events = [event async for event in call]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "session" and kinds[-1] == "done", kinds
    [result] = [e.tool_result for e in events if e.HasField("tool_result")]
    return events[0].session.session_id, result


@SQLITE
async def test_a_tool_input_of_400_digits_is_refused_as_input_and_the_answer_goes_on(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """A number no double holds is valid JSON a confused (or prompt-injected) model may write.
    It broke the stream with INTERNAL, and the stored call made every later read of the
    session fail. It is the tool's bad input now: the model is told, and answers."""
    fake_anthropic.replies.extend(
        [
            Reply(text="Looking.", tools=[("get_quote", {"symbol": 10**400})]),
            Reply(text="That is not a symbol."),
        ]
    )
    async with assistant_stack() as stack:
        me = await stack.user()
        session_id, result = await _quote_asked(stack, me)
        said = json_format.MessageToDict(result.result)["error"]
        assert result.is_error and said.startswith("invalid input: the input is not valid JSON")
        assert "1000000000" in said and "not a finite number" in said
        told = fake_anthropic.requests[-1].tool_results()
        assert [(b["is_error"], json.loads(b["content"])["error"]) for b in told] == [(True, said)]
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session_id), metadata=me
        )
        assert [(m.role, m.content) for m in got.messages] == [
            ("user", "quote it"),
            ("assistant", "Looking."),
            ("assistant", "That is not a symbol."),
        ]
        assert [(c.name, c.is_error) for c in got.messages[1].tool_calls] == [("get_quote", True)]


@SQLITE
async def test_a_session_stored_with_numbers_no_double_holds_stays_readable(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    """A call stored before such input was refused (1e999 was kept as Infinity, 400 digits as
    they came) made GetSession fail for good; read back, those numbers are their text."""
    fake_anthropic.replies.extend(
        [Reply(text="Looking.", tools=[("get_quote", {"symbol": "KO"})]), Reply(text="Done.")]
    )
    async with assistant_stack() as stack:
        me = await stack.user()
        sent = await stack.send(me, "quote KO")
        stored = {"symbol": float("inf"), "limit": 10**400, "fine": 2}
        db = Database(stack.database_url)
        try:
            async with db.transaction() as tx:
                await tx.execute(
                    text("UPDATE chat_messages SET tool_calls = :calls WHERE id = :id"),
                    {
                        "calls": json.dumps(
                            [{"id": "t1", "name": "get_quote", "input": stored, "result": None}]
                        ),
                        "id": sent.messages[1].id,
                    },
                )
        finally:
            await db.close()
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=sent.session_id), metadata=me
        )
        [call] = got.messages[1].tool_calls
        assert json_format.MessageToDict(call.input) == {
            "symbol": "Infinity",
            "limit": str(10**400),
            "fine": 2.0,
        }


@SQLITE
async def test_a_tool_input_of_1e999_over_ws_chat_ends_in_done_and_the_session_reads(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, facade_in_front: FacadeInFront
) -> None:
    """{"symbol": 1e999} parsed to infinity, which the facade cannot write as JSON: the socket
    got neither `error` nor `done` and waited for good, and the session was a 500 over REST."""
    calling_get_quote_with(fake_anthropic, '{"symbol": 1e999}')
    fake_anthropic.default = lambda body: Reply(text="No such symbol.")
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        token = await stack.token()
        ws = await authenticated(client, "/ws/chat", token)
        await ws.send_json({"type": "stream_chat", "message": "quote it"})
        seen = await receive_until(ws, "done")
        session_id = seen[0]["sessionId"]
        [result] = [m for m in seen if m["type"] == "tool_result"]
        assert result["toolCall"]["isError"] is True
        assert "1e999 is not a finite number" in result["toolCall"]["result"]["error"]
        headers = {"Authorization": f"Bearer {token}"}
        async with client.get(f"/api/v1/chat/sessions/{session_id}", headers=headers) as response:
            assert response.status == 200
            body = await response.json()
        assert [m["content"] for m in body["data"]["messages"]] == [
            "quote it",
            "",
            "No such symbol.",
        ]
        await ws.close()


@SQLITE
async def test_a_reply_the_socket_cannot_write_ends_the_answer_with_an_internal_error(
    assistant_stack: StartStack,
    fake_anthropic: FakeAnthropic,
    facade_in_front: FacadeInFront,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever makes a reply unwritable (it was a tool input of infinity), the stream's task
    died with no word: the socket waited for good and stayed BUSY. The answer is cancelled
    now, the socket gets an INTERNAL `error` and takes the next question."""
    import facade.bridge
    import facade.plans

    def unwritable(message: Any, plan: Any) -> Any:
        if message.DESCRIPTOR.name == "ToolCall":
            raise ValueError("Fail to serialize Infinity for Value.number_value")
        return writable(message, plan)

    writable = facade.plans.message_json
    monkeypatch.setattr(facade.bridge, "message_json", unwritable)
    fake_anthropic.replies.append(Reply(text="Looking.", tools=[("get_quote", {"symbol": "KO"})]))
    fake_anthropic.default = lambda body: Reply(text="Fine.")
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        ws: Socket = await authenticated(client, "/ws/chat", await stack.token())
        await ws.send_json({"type": "stream_chat", "message": "quote KO"})
        seen = await receive_until(ws, "error", within=WAIT)
        session_id = seen[0]["sessionId"]
        assert seen[-1] == {
            "type": "error",
            "code": "INTERNAL",
            "message": "the answer's stream failed",
            "sessionId": session_id,
        }
        await ws.send_json({"type": "stream_chat", "message": "again"})
        again = await receive_until(ws, "done")
        assert "".join(m["text"] for m in again if m["type"] == "chunk") == "Fine."
        await ws.close()


@SQLITE
@pytest.mark.parametrize(
    ("raw_input", "said"),
    [
        ('{"symbol": "KO", "x": ' + '{"a": ' * 40 + "{}" + "}" * 41, "nested deeper than 32"),
        ('{"symbol": "\\ud800"}', "a string that is not valid Unicode text"),
    ],
    ids=["40-deep", "lone-surrogate"],
)
async def test_a_tool_input_no_struct_holds_is_refused_and_the_answer_goes_on(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, raw_input: str, said: str
) -> None:
    # Valid JSON a model may write: 40 objects deep (a Struct reader stops at 100 protobuf
    # levels, two a JSON level) or a lone surrogate (no UTF-8 text holds it). Both ended the
    # stream INTERNAL with no `done`.
    calling_get_quote_with(fake_anthropic, raw_input)
    fake_anthropic.default = lambda body: Reply(text="No such symbol.")
    async with assistant_stack() as stack:
        me = await stack.user()
        session_id, result = await _quote_asked(stack, me)
        assert result.is_error
        assert said in json_format.MessageToDict(result.result)["error"]
        got = await stack.assistant.GetSession(
            assistant_pb2.GetSessionRequest(id=session_id), metadata=me
        )
        assert [m.content for m in got.messages] == ["quote it", "", "No such symbol."]
