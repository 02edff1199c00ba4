"""The assistant's daily token budget is reserved before a provider round and settled after it:
answers asked at once cannot overshoot it together, unused reservations are refunded, and an
answer stopped midway is charged what it had used. A real assistant server (with real users
and portfolio services) in front of the local fake Anthropic API, on both cache backends: the
in-process one and Redis. SQLite only: the budget lives in the cache."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from stockfolio.assistant.v1 import assistant_pb2

from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import StartStack, tokens_counted_since
from tests.rpc_errors import reason
from tests.utc_days import one_utc_day, utc_today
from tests.waiting import until

HELD = 30.0  # the fake holds each answer this long at most (until released)


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture(params=["inprocess", "redis"])
def cache_environment(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "inprocess":
        return {}
    return {"REDIS_URL": str(request.getfixturevalue("redis_url"))}


@one_utc_day  # seven answers share one day's budget: not when it renews among them
async def test_concurrent_answers_get_exactly_the_reservations_that_fit_the_budget(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, cache_environment: dict[str, str]
) -> None:
    # 300 tokens a day, 100 reserved per round: three answers at once, not four.
    budget = {"ASSISTANT_TOKENS_PER_DAY": "300", "ASSISTANT_TOKEN_RESERVE": "100"}
    first = utc_today()
    async with assistant_stack(**budget, **cache_environment) as stack:
        me, user_id = await stack.account()
        fake_anthropic.default = lambda body: Reply(text="Fine thanks", delay=HELD)

        async def ask() -> assistant_pb2.SendMessageResponse | grpc.aio.AioRpcError:
            try:
                return await stack.assistant.SendMessage(
                    assistant_pb2.SendMessageRequest(message="hello"), metadata=me
                )
            except grpc.aio.AioRpcError as error:
                return error

        calls = [asyncio.ensure_future(ask()) for _ in range(7)]
        # The refused ones are answered while the others still wait on the provider.
        await until(lambda: sum(c.done() for c in calls) == 4, "four refusals")
        await until(lambda: len(fake_anthropic.requests) == 3, "three provider calls")
        fake_anthropic.release()
        results = await asyncio.gather(*calls)

        answered = [r for r in results if isinstance(r, assistant_pb2.SendMessageResponse)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(answered) == 3
        assert [(r.code(), reason(r)) for r in refused] == [
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOKEN_BUDGET_EXHAUSTED")
        ] * 4
        assert "budget of 300 tokens" in (refused[0].details() or "")
        assert len(fake_anthropic.requests) == 3
        # Each answer used 25 + 2 tokens: 81 spent, the rest of their reservations refunded,
        # so another answer fits (81 + 100 <= 300); without the refunds, 300 would be held.
        assert [a.usage.input_tokens + a.usage.output_tokens for a in answered] == [27] * 3
        assert await tokens_counted_since(stack.database_url, user_id, first) == 81
        await stack.assistant.SendMessage(
            assistant_pb2.SendMessageRequest(message="again"), metadata=me
        )
        assert await tokens_counted_since(stack.database_url, user_id, first) == 108
        # Another user's budget is their own.
        other = await stack.user()
        await stack.assistant.SendMessage(
            assistant_pb2.SendMessageRequest(message="hello"), metadata=other
        )


@one_utc_day  # the last answer is refused for the day's spent budget: not on a new day
async def test_an_answer_stopped_midway_is_charged_what_it_used(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic, cache_environment: dict[str, str]
) -> None:
    budget = {"ASSISTANT_TOKENS_PER_DAY": "100", "ASSISTANT_TOKEN_RESERVE": "50"}
    first = utc_today()
    async with assistant_stack(**budget, **cache_environment) as stack:
        me, user_id = await stack.account()
        fake_anthropic.replies.append(Reply(text="one two three four five", hold_after=3))
        call = stack.assistant.ChatStream(
            assistant_pb2.ChatStreamRequest(message="tell me"), metadata=me
        )
        text = ""
        async for event in call:
            if event.WhichOneof("event") == "chunk":
                text += event.chunk.text
                if text.split() == ["one", "two", "three"]:
                    break
        call.cancel()

        async def stored() -> int:
            return await tokens_counted_since(stack.database_url, user_id, first)

        # 25 input tokens and 3 streamed: charged and stored with the incomplete answer.
        deadline = asyncio.get_running_loop().time() + 10
        while await stored() != 28:
            assert asyncio.get_running_loop().time() < deadline, await stored()
            await asyncio.sleep(0.05)
        fake_anthropic.release()
        # 28 + a reserve of 50 fits; that answer uses 25 + 2: 55 spent, and 55 + 50 > 100.
        fake_anthropic.replies.append(Reply(text="Short answer"))
        await stack.assistant.SendMessage(
            assistant_pb2.SendMessageRequest(message="again"), metadata=me
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.assistant.SendMessage(
                assistant_pb2.SendMessageRequest(message="more"), metadata=me
            )
        assert reason(caught.value) == "TOKEN_BUDGET_EXHAUSTED"
        assert await stored() == 55
