"""Who writes the answers: Claude through the official Anthropic SDK when CLAUDE_API_KEY is set,
else an offline provider that says it is offline and still answers simple portfolio questions
through the same tools.

A provider streams one round of an answer: text deltas, then the tools the model wants run,
then the round's end (stop reason, usage). The conversation (conversation.py) runs the tools
and asks again. Provider failures become domain errors with a retry hint, here and only here.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, cast

import anthropic
import grpc
import httpx2

from services.assistant.config import AssistantConfig
from services.assistant.domain import Usage
from services.runtime.errors import ResourceExhausted

OFFLINE_NOTICE = (
    "I'm running offline (no CLAUDE_API_KEY is configured), so I can only answer simple "
    'questions about your portfolios, such as "what is my portfolio worth?" or '
    '"what do I hold?".'
)
SYSTEM_PROMPT = (
    "You are Stockfolio's assistant. You help the user understand their own stock portfolios. "
    "Use the tools to read their portfolios, positions, trades, performance and quotes rather "
    "than guessing; amounts are decimal strings in the portfolio's currency. Be concise. You "
    "cannot place trades."
)
# Seconds a client is told to wait when the provider gives no hint of its own.
DEFAULT_RETRY_AFTER = {"rate": 30.0, "overloaded": 15.0, "timeout": 5.0, "auth": 300.0}


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class RoundEnd:
    stop_reason: str
    usage: Usage


ProviderEvent = TextDelta | ToolUse | RoundEnd


class Provider(Protocol):
    @property
    def offline(self) -> bool: ...

    async def models(self) -> list[tuple[str, str]]:
        """Model ids (and display names) the provider offers besides the seed's."""
        ...

    def stream(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> AsyncIterator[ProviderEvent]: ...

    async def close(self) -> None: ...


# --- errors --------------------------------------------------------------------------------------


class ProviderError(ResourceExhausted):
    """The AI provider could not answer. UNAVAILABLE (503) with a retry hint, except a rate
    limit (RESOURCE_EXHAUSTED, 429); the message says what happened and what to do."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "PROVIDER_ERROR"


class ProviderRateLimited(ProviderError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "PROVIDER_RATE_LIMITED"


class ProviderOverloaded(ProviderError):
    reason = "PROVIDER_OVERLOADED"


class ProviderTimeout(ProviderError):
    reason = "PROVIDER_TIMEOUT"


class ProviderAuthFailed(ProviderError):
    reason = "PROVIDER_AUTH_FAILED"


def _retry_after(error: anthropic.APIStatusError, default: float) -> float:
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return max(1.0, float(raw) * scale)
            except ValueError:
                continue
    return default


def _seconds(value: float) -> str:
    return f"{max(1, round(value))} s"


def provider_error(error: anthropic.AnthropicError) -> ProviderError:
    """One translation of the SDK's errors (HTTP statuses and in-stream `error` events)."""
    if isinstance(error, anthropic.APITimeoutError):
        wait = DEFAULT_RETRY_AFTER["timeout"]
        return ProviderTimeout(
            f"the AI provider did not answer in time; retry in {_seconds(wait)}", retry_after=wait
        )
    if isinstance(error, anthropic.APIConnectionError):
        wait = DEFAULT_RETRY_AFTER["timeout"]
        return ProviderError(
            f"the AI provider cannot be reached; retry in {_seconds(wait)}", retry_after=wait
        )
    if not isinstance(error, anthropic.APIStatusError):
        return ProviderError("the AI provider failed; retry shortly", retry_after=5.0)
    kind = error.type or ""
    status = error.status_code
    if kind == "rate_limit_error" or status == 429:
        wait = _retry_after(error, DEFAULT_RETRY_AFTER["rate"])
        return ProviderRateLimited(
            f"the AI provider's rate limit was reached; retry in {_seconds(wait)}",
            retry_after=wait,
        )
    if kind == "overloaded_error" or status == 529:
        wait = _retry_after(error, DEFAULT_RETRY_AFTER["overloaded"])
        return ProviderOverloaded(
            f"the AI provider is overloaded; retry in {_seconds(wait)}", retry_after=wait
        )
    if kind in {"authentication_error", "permission_error"} or status in {401, 403}:
        wait = DEFAULT_RETRY_AFTER["auth"]
        return ProviderAuthFailed(
            "the AI provider refused this server's API key (CLAUDE_API_KEY); an administrator "
            f"must fix it. Retry later (in {_seconds(wait)} or more)",
            retry_after=wait,
        )
    if kind == "timeout_error" or status in {408, 504}:
        wait = DEFAULT_RETRY_AFTER["timeout"]
        return ProviderTimeout(
            f"the AI provider timed out; retry in {_seconds(wait)}", retry_after=wait
        )
    detail = (error.api_message or "")[:200]
    wait = _retry_after(error, 5.0)
    return ProviderError(
        f"the AI provider failed ({detail or f'HTTP {status}'}); retry in {_seconds(wait)}",
        retry_after=wait,
    )


# --- Anthropic -----------------------------------------------------------------------------------


class AnthropicProvider:
    """Claude through the official SDK: its async client on its aiohttp transport (measured
    here: a third less CPU per streamed token than its default one), streamed messages read as
    the API's raw events (the SDK's accumulating helper costs another third), tool use."""

    offline = False

    def __init__(self, config: AssistantConfig) -> None:
        assert config.claude_api_key is not None
        self._client = anthropic.AsyncAnthropic(
            api_key=config.claude_api_key,
            base_url=config.anthropic_base_url,
            timeout=config.anthropic_timeout,
            max_retries=config.anthropic_max_retries,
            http_client=anthropic.DefaultAioHttpClient(),
        )
        self._max_tokens = config.max_tokens

    async def models(self) -> list[tuple[str, str]]:
        try:
            page = await self._client.models.list(limit=100)
        except anthropic.AnthropicError as error:
            raise provider_error(error) from None
        return [(m.id, m.display_name or m.id) for m in page.data]

    async def stream(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> AsyncIterator[ProviderEvent]:
        """One round: `message_start` (input tokens), text deltas as they come, each
        `tool_use` block's input assembled from its `input_json_delta` pieces, `message_delta`
        (stop reason, output tokens). An `error` event raises inside the SDK's iterator."""
        input_tokens = output_tokens = 0
        stop_reason = "end_turn"
        uses: dict[int, tuple[str, str, list[str]]] = {}
        try:
            events = await self._client.messages.create(
                model=model,
                max_tokens=self._max_tokens,
                system=SYSTEM_PROMPT,
                messages=cast(Any, messages),
                tools=cast(Any, tools),
                stream=True,
            )
            async with events:
                async for event in events:
                    if event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta":
                            yield TextDelta(delta.text)
                        elif delta.type == "input_json_delta" and event.index in uses:
                            uses[event.index][2].append(delta.partial_json)
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            uses[event.index] = (block.id, block.name, [])
                    elif event.type == "message_start":
                        input_tokens = event.message.usage.input_tokens
                        output_tokens = event.message.usage.output_tokens
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens
        except anthropic.AnthropicError as error:
            raise provider_error(error) from None
        except httpx2.TimeoutException:
            # The SDK wraps transport errors of the request, not those of reading its stream.
            wait = DEFAULT_RETRY_AFTER["timeout"]
            raise ProviderTimeout(
                f"the AI provider stopped answering midway; retry in {_seconds(wait)}",
                retry_after=wait,
            ) from None
        except httpx2.TransportError:
            wait = DEFAULT_RETRY_AFTER["timeout"]
            raise ProviderError(
                f"the connection to the AI provider broke midway; retry in {_seconds(wait)}",
                retry_after=wait,
            ) from None
        for use_id, name, parts in uses.values():
            try:
                arguments = json.loads("".join(parts) or "{}")
            except ValueError:
                arguments = {}
            yield ToolUse(use_id, name, arguments if isinstance(arguments, dict) else {})
        yield RoundEnd(stop_reason, Usage(input_tokens, output_tokens))

    async def close(self) -> None:
        await self._client.close()


# --- offline -------------------------------------------------------------------------------------

_WORTH = re.compile(r"\b(worth|value|valued|total|balance|how much)\b", re.IGNORECASE)
_HOLD = re.compile(r"\b(hold|holding|holdings|own|positions?|stocks?|shares)\b", re.IGNORECASE)


def _last_user_turn(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    for turn in reversed(messages):
        if turn.get("role") == "user":
            return list(turn.get("content") or [])
    return []


def _money(text: object) -> str:
    try:
        return f"{Decimal(str(text)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(text)


def _quantity(text: object) -> str:
    try:
        return format(Decimal(str(text)).normalize(), "f")
    except (InvalidOperation, ValueError):
        return str(text)


def offline_answer(question: str, portfolios: list[dict[str, Any]]) -> str:
    """What the offline assistant says once it has read the caller's portfolios."""
    if not portfolios:
        return f"{OFFLINE_NOTICE}\n\nYou have no portfolios yet."
    lines = [OFFLINE_NOTICE, ""]
    if _WORTH.search(question):
        total = sum((Decimal(str(p.get("totalValue") or 0)) for p in portfolios), Decimal(0))
        lines.append(f"Your portfolios are worth {_money(total)} in total:")
        for p in portfolios:
            lines.append(
                f"- {p.get('name', '?')}: {_money(p.get('totalValue', '0'))} "
                f"{p.get('baseCurrency', '')} (cash {_money(p.get('cash', '0'))}, "
                f"gain/loss {_money(p.get('totalGainLoss', '0'))})".replace("  ", " ")
            )
    else:
        lines.append("You hold:")
        for p in portfolios:
            positions = [x for x in p.get("positions", []) if Decimal(str(x["quantity"])) != 0]
            if not positions:
                lines.append(f"- {p.get('name', '?')}: no open positions")
                continue
            held = ", ".join(
                f"{_quantity(x['quantity'])} {x['symbol']} "
                f"(worth {_money(x.get('marketValue', '0'))})"
                for x in positions
            )
            lines.append(f"- {p.get('name', '?')}: {held}")
    return "\n".join(lines)


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


class OfflineProvider:
    """No model: reads the portfolios through the same tools and answers from them."""

    offline = True

    async def models(self) -> list[tuple[str, str]]:
        return []

    async def stream(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
    ) -> AsyncIterator[ProviderEvent]:
        turn = _last_user_turn(messages)
        results = [b for b in turn if b.get("type") == "tool_result"]
        question = next(
            (
                t["text"]
                for m in reversed(messages)
                if m.get("role") == "user"
                for t in m.get("content", [])
                if t.get("type") == "text"
            ),
            "",
        )
        if not results and (_WORTH.search(question) or _HOLD.search(question)):
            yield ToolUse(f"offline_{len(messages)}", "list_portfolios", {})
            yield RoundEnd("tool_use", Usage())
            return
        if results:
            data = json.loads(results[-1].get("content") or "{}")
            if results[-1].get("is_error"):
                text = f"{OFFLINE_NOTICE}\n\nI could not read your portfolios: {data.get('error')}"
            else:
                text = offline_answer(question, list(data.get("portfolios", [])))
        else:
            text = OFFLINE_NOTICE
        for word in _words(text):
            yield TextDelta(word)
        yield RoundEnd("end_turn", Usage())

    async def close(self) -> None:
        return None


def create_provider(config: AssistantConfig) -> Provider:
    if config.claude_api_key:
        return AnthropicProvider(config)
    return OfflineProvider()
