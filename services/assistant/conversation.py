"""One answer, from the user's message to the assistant's last word: checks and limits, the
session, the provider's rounds, the tools run between them, and what is stored.

An answer runs in a task of its own (Answer) that feeds its events to whoever reads them (a
stream or a whole-answer call). When the reader goes away (a `stop`, a client that hangs up)
or the service shuts down, the task is cancelled: what was streamed so far is stored, marked
incomplete, exactly once. A provider failure midway does the same, then reaches the caller
as an error with a retry hint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from services.assistant.budget import Reservation, TokenBudget
from services.assistant.config import SEED_MODELS, AssistantConfig
from services.assistant.domain import (
    HISTORY_MESSAGES,
    Message,
    Role,
    Session,
    ToolCall,
    Usage,
    check_message,
    check_model,
    provider_history,
    title_from,
)
from services.assistant.providers import (
    Provider,
    ProviderError,
    RoundEnd,
    RoundStarted,
    TextDelta,
    ToolUse,
)
from services.assistant.repository import Chats, new_id
from services.assistant.tools import PortfolioTools
from services.runtime.clock import utc_now
from services.runtime.context import Identity
from services.runtime.errors import ResourceExhausted
from services.runtime.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Seconds a text chunk (after the first) waits for more text to go out with it.
CHUNK_WINDOW = 0.05
TOOL_ROUNDS_NOTE = "\n\n(I stopped reading your data here: too many tool calls for one answer.)"
BUDGET_NOTE = "(I stopped here: today's assistant token budget is spent.)"


@dataclass(frozen=True)
class SessionStarted:
    session: Session


@dataclass(frozen=True)
class Chunk:
    session_id: str
    text: str


@dataclass(frozen=True)
class ToolCalled:
    call: ToolCall


@dataclass(frozen=True)
class ToolAnswered:
    call: ToolCall


@dataclass(frozen=True)
class Done:
    session_id: str
    message: Message
    usage: Usage
    # Every message this answer stored, the user's first.
    messages: list[Message] = field(default_factory=list)


AnswerEvent = SessionStarted | Chunk | ToolCalled | ToolAnswered | Done


class Answer:
    """An answer running in its own task; iterate it for its events (its error, if it failed,
    comes last). Leaving the iteration early cancels the answer."""

    _END = object()

    def __init__(
        self,
        events: AsyncIterator[AnswerEvent],
        running: set[asyncio.Task[None]],
        reservation: Reservation | None = None,
    ):
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump(events, reservation))
        running.add(self._task)
        self._task.add_done_callback(running.discard)

    async def _pump(
        self, events: AsyncIterator[AnswerEvent], reservation: Reservation | None
    ) -> None:
        try:
            async for event in events:
                self._queue.put_nowait(event)
        finally:
            self._queue.put_nowait(self._END)
            if reservation is not None:
                # However the answer ended (even cancelled before it began): settled once.
                await asyncio.shield(reservation.settle())

    async def __aiter__(self) -> AsyncIterator[AnswerEvent]:
        """The answer's events. The first text chunk goes out at once; each later one gathers
        the text that arrives within CHUNK_WINDOW after it (tokens come every ~20 ms): a few
        tokens per message rather than one, and one wake-up per window rather than per token.
        Measured with 200 answers streaming at once (bench/assistant.py): the p99 time to a
        first chunk went from about 1.5 s to under 1 s, new calls waiting less behind the
        tokens of those already streaming."""
        loop = asyncio.get_running_loop()
        waiting: object = None
        first = True
        try:
            while True:
                event = waiting if waiting is not None else await self._queue.get()
                waiting = None
                if event is self._END:
                    break
                if isinstance(event, Chunk):
                    text = event.text
                    deadline = loop.time() + (0.0 if first else CHUNK_WINDOW)
                    first = False
                    while waiting is None:
                        if self._queue.empty():
                            # One wake-up per window, not one per token.
                            remaining = deadline - loop.time()
                            if remaining <= 0:
                                break
                            await asyncio.sleep(remaining)
                            if self._queue.empty():
                                break
                        after = self._queue.get_nowait()
                        if isinstance(after, Chunk):
                            text += after.text
                        else:
                            waiting = after
                    event = Chunk(event.session_id, text)
                yield cast(AnswerEvent, event)
            await self._task
        finally:
            if not self._task.done():
                self._task.cancel()
                # The answer keeps what it streamed before this returns: whoever stopped it
                # (a client, a shutting-down server) finds it stored.
                await asyncio.wait({self._task})


class Assistant:
    def __init__(
        self,
        config: AssistantConfig,
        chats: Chats,
        provider: Provider,
        tools: PortfolioTools,
        limiter: RateLimiter,
        budget: TokenBudget,
    ) -> None:
        self._config = config
        self._budget = budget
        self._chats = chats
        self._provider = provider
        self._tools = tools
        self._limiter = limiter
        self._running: set[asyncio.Task[None]] = set()
        self._models: list[tuple[str, str]] = []
        self._models_until = 0.0
        self._models_lock = asyncio.Lock()

    # --- models --------------------------------------------------------------------------------

    async def models(self) -> list[tuple[str, str]]:
        """The seed's models, the configured default, then what the provider lists (asked
        once per `models_ttl`, by one caller at a time; the others wait for its answer)."""
        if time.monotonic() >= self._models_until:
            async with self._models_lock:
                if time.monotonic() >= self._models_until:
                    await self._refresh_models()
        return self._models

    async def _refresh_models(self) -> None:
        try:
            listed = await self._provider.models()
            ttl = self._config.models_ttl
        except ProviderError as error:
            log.warning("cannot list the provider's models", extra={"error": error.message})
            listed, ttl = [], min(30.0, self._config.models_ttl)
        found: dict[str, str] = {m: m for m in SEED_MODELS}
        found.setdefault(self._config.claude_model, self._config.claude_model)
        for model_id, name in listed:
            found[model_id] = name
        self._models = list(found.items())
        self._models_until = time.monotonic() + ttl

    async def _check_model(self, model: str) -> None:
        """The seed's models and the default need no look-up; any other is checked against
        the provider's list."""
        if model in SEED_MODELS or model == self._config.claude_model:
            return
        check_model(model, [m for m, _ in await self.models()])

    # --- answers -------------------------------------------------------------------------------

    async def start(
        self, identity: Identity, session_id: str, text: str, model: str
    ) -> tuple[Answer, Session | None]:
        """Check the message, its model, its session and the user's limits, then start the
        answer. Every refusal is raised here, before anything is stored."""
        text = check_message(text, self._config.max_message_chars)
        session = await self._chats.session(identity.user_id, session_id) if session_id else None
        model = model.strip() or (session.model if session else self._config.claude_model)
        await self._check_model(model)
        await self._check_rate(identity.user_id)
        # Last: nothing below refuses, so the reservation is always settled by the Answer.
        reservation = await self._budget.reserve(identity.user_id)
        events = self._answer(identity, session, text, model, reservation)
        return Answer(events, self._running, reservation), session

    async def reply(self, identity: Identity, session_id: str, text: str, model: str) -> Done:
        """The whole answer at once (SendMessage): started as `start` starts it, read to its
        end (its reservation settled), its Done."""
        answer, _ = await self.start(identity, session_id, text, model)
        done: Done | None = None
        async for event in answer:
            if isinstance(event, Done):
                done = event
        if done is None:
            raise AssertionError("an answer always ends with Done or an error")
        return done

    async def _check_rate(self, user_id: str) -> None:
        rate = self._config.messages_rate
        decision = await self._limiter.hit(f"messages:{user_id}", rate)
        if not decision.allowed:
            raise ResourceExhausted(
                f"too many messages: at most {rate.limit} per {rate.window:g} s; "
                f"retry in {max(1, round(decision.reset_after))} s",
                retry_after=decision.reset_after,
                reason="MESSAGE_RATE_LIMITED",
            )

    async def _answer(
        self,
        identity: Identity,
        session: Session | None,
        text: str,
        model: str,
        reservation: Reservation,
    ) -> AsyncIterator[AnswerEvent]:
        user_id = identity.user_id
        now = datetime.now(UTC)
        # The question is written while the provider is already asked (the first token does not
        # wait for the write); every later write waits for it (`asked_saved`), so the order of
        # the session's messages is the order they happened in.
        if session is None:
            session = Session(new_id(), user_id, None, title_from(text), model, now, now)
            asked = Message(new_id(), session.id, Role.USER, text, now)
            save = self._chats.start_session(session, asked)
            history = [asked]
            yield SessionStarted(session)
        else:
            history = await self._chats.messages(user_id, session.id, latest=HISTORY_MESSAGES)
            asked = Message(new_id(), session.id, Role.USER, text, now)
            save = self._chats.append(user_id, asked)
            history.append(asked)
        asked_saved = asyncio.get_running_loop().create_task(save)
        stored = [asked]
        total = Usage()
        content = ""
        end = RoundEnd("end_turn", Usage())
        for round_number in range(1, self._config.max_tool_rounds + 1):
            # The first round's tokens were reserved before the answer started.
            if round_number > 1 and not await reservation.more():
                content, end = BUDGET_NOTE, RoundEnd("budget", Usage())
                yield Chunk(session.id, BUDGET_NOTE)
                break
            # Text streamed in this round, not stored yet: kept, marked incomplete, if the
            # round ends early; and what the round had used by then, charged.
            parts: list[str] = []
            started = Usage()
            charged = False
            try:
                uses: list[ToolUse] = []
                end = RoundEnd("end_turn", Usage())
                async for event in self._provider.stream(
                    model=model,
                    messages=provider_history(history),
                    tools=self._tools.definitions,
                ):
                    if isinstance(event, TextDelta):
                        if event.text:
                            parts.append(event.text)
                            yield Chunk(session.id, event.text)
                    elif isinstance(event, ToolUse):
                        uses.append(event)
                    elif isinstance(event, RoundStarted):
                        started = event.usage
                    else:
                        end = event
                reservation.charge(end.usage.total)
                charged = True
                total = total + end.usage
                content = "".join(parts)
                if not uses or end.stop_reason != "tool_use":
                    break
                if round_number == self._config.max_tool_rounds:
                    content += TOOL_ROUNDS_NOTE
                    yield Chunk(session.id, TOOL_ROUNDS_NOTE)
                    break
                calls = []
                for use in uses:
                    call = ToolCall(use.id, use.name, use.input)
                    yield ToolCalled(call)
                    if use.invalid:
                        answered = call.refused(f"invalid input: {use.invalid}")
                    else:
                        answered = await self._tools.run(call, identity)
                    yield ToolAnswered(answered)
                    calls.append(answered)
                await asyncio.shield(asked_saved)
                message = await self._chats.add_message(
                    user_id,
                    session.id,
                    Role.ASSISTANT,
                    content,
                    tool_calls=calls,
                    model=model,
                    usage=end.usage,
                )
            except (ProviderError, asyncio.CancelledError, GeneratorExit):
                if charged:
                    used = end.usage  # the round ended; its tools or its write did not
                else:
                    # Cut short before its end: the input, and a token per delta streamed.
                    used = Usage(started.input_tokens, max(started.output_tokens, len(parts)))
                    reservation.charge(used.total)
                await self._keep_incomplete(
                    user_id, session.id, "".join(parts), model, asked_saved, used
                )
                raise
            history.append(message)
            stored.append(message)
        try:
            await asyncio.shield(asked_saved)
            final = await self._chats.add_message(
                user_id, session.id, Role.ASSISTANT, content, model=model, usage=end.usage
            )
        except asyncio.CancelledError:
            # Its usage was charged with its round's end; the stored count needs it too.
            await self._keep_incomplete(user_id, session.id, content, model, asked_saved, end.usage)
            raise
        stored.append(final)
        yield Done(session.id, final, total, stored)

    async def _keep_incomplete(
        self,
        user_id: str,
        session_id: str,
        text: str,
        model: str,
        asked_saved: asyncio.Task[None],
        usage: Usage,
    ) -> None:
        """Store what was streamed of an answer cut short (once), after the question, with the
        tokens it used; cut before its first word, only its tokens are counted (the day's
        budget is rebuilt from them). Shielded: a second cancellation (shutdown) must not lose
        the write half-way."""
        try:
            await asyncio.shield(asked_saved)
            if text:
                await asyncio.shield(
                    self._chats.add_message(
                        user_id,
                        session_id,
                        Role.ASSISTANT,
                        text,
                        incomplete=True,
                        model=model,
                        usage=usage,
                    )
                )
            else:
                await asyncio.shield(self._chats.record_usage(user_id, utc_now(), usage.total))
        except (ProviderError, asyncio.CancelledError):
            raise
        except Exception:  # the session was deleted meanwhile, the database is down...
            log.exception("cannot keep an incomplete answer", extra={"sessionId": session_id})

    async def drain(self) -> None:
        """At shutdown: stop every answer under way (each keeps what it streamed)."""
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
