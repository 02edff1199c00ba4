"""Claude through the official Anthropic SDK (services/assistant/server.py imports this
module only when CLAUDE_API_KEY is set), and the one translation of the SDK's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import anthropic
import httpx2

from services.assistant.config import AssistantConfig
from services.assistant.domain import Usage, parse_tool_input
from services.assistant.providers import (
    DEFAULT_RETRY_AFTER,
    SYSTEM_PROMPT,
    ProviderAuthFailed,
    ProviderError,
    ProviderEvent,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderTimeout,
    RoundEnd,
    RoundStarted,
    TextDelta,
    ToolUse,
)


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


def _retry_in(kind: type[ProviderError], what: str, wait: float) -> ProviderError:
    """`kind` of error saying what went wrong and when to retry (`wait` seconds)."""
    return kind(f"{what}; retry in {_seconds(wait)}", retry_after=wait)


def provider_error(error: anthropic.AnthropicError) -> ProviderError:
    """One translation of the SDK's errors (HTTP statuses and in-stream `error` events)."""
    timeout = DEFAULT_RETRY_AFTER["timeout"]
    if isinstance(error, anthropic.APITimeoutError):
        return _retry_in(ProviderTimeout, "the AI provider did not answer in time", timeout)
    if isinstance(error, anthropic.APIConnectionError):
        return _retry_in(ProviderError, "the AI provider cannot be reached", timeout)
    if not isinstance(error, anthropic.APIStatusError):
        return ProviderError("the AI provider failed; retry shortly", retry_after=5.0)
    kind = error.type or ""
    status = error.status_code
    if kind == "rate_limit_error" or status == 429:
        wait = _retry_after(error, DEFAULT_RETRY_AFTER["rate"])
        return _retry_in(ProviderRateLimited, "the AI provider's rate limit was reached", wait)
    if kind == "overloaded_error" or status == 529:
        wait = _retry_after(error, DEFAULT_RETRY_AFTER["overloaded"])
        return _retry_in(ProviderOverloaded, "the AI provider is overloaded", wait)
    if kind in {"authentication_error", "permission_error"} or status in {401, 403}:
        wait = DEFAULT_RETRY_AFTER["auth"]
        return ProviderAuthFailed(
            "the AI provider refused this server's API key (CLAUDE_API_KEY); an administrator "
            f"must fix it. Retry later (in {_seconds(wait)} or more)",
            retry_after=wait,
        )
    if kind == "timeout_error" or status in {408, 504}:
        return _retry_in(ProviderTimeout, "the AI provider timed out", timeout)
    detail = (error.api_message or "")[:200]
    what = f"the AI provider failed ({detail or f'HTTP {status}'})"
    return _retry_in(ProviderError, what, _retry_after(error, 5.0))


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
        stopped = False  # message_stop came: the answer is whole
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
                        yield RoundStarted(Usage(input_tokens, output_tokens))
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        output_tokens = event.usage.output_tokens
                    elif event.type == "message_stop":
                        stopped = True
        except anthropic.AnthropicError as error:
            raise provider_error(error) from None
        except httpx2.TimeoutException:
            # The SDK wraps transport errors of the request, not those of reading its stream.
            what = "the AI provider stopped answering midway"
            raise _retry_in(ProviderTimeout, what, DEFAULT_RETRY_AFTER["timeout"]) from None
        except httpx2.TransportError:
            what = "the connection to the AI provider broke midway"
            raise _retry_in(ProviderError, what, DEFAULT_RETRY_AFTER["timeout"]) from None
        except (ValueError, AttributeError, KeyError, TypeError):
            # An event that is not JSON, or lacks a field the wire format has: the SDK builds
            # events without checking them. The provider's fault, not ours: a retry may do.
            what = "the AI provider sent a malformed stream"
            raise _retry_in(ProviderError, what, DEFAULT_RETRY_AFTER["timeout"]) from None
        if not stopped:
            # The body ended cleanly before message_stop (a proxy closing it): what came is
            # only the start of an answer.
            what = "the AI provider's answer ended early"
            raise _retry_in(ProviderError, what, DEFAULT_RETRY_AFTER["timeout"])
        for use_id, name, parts in uses.values():
            try:
                yield ToolUse(use_id, name, parse_tool_input("".join(parts)))
            except ValueError as error:
                yield ToolUse(use_id, name, {}, invalid=str(error))
        yield RoundEnd(stop_reason, Usage(input_tokens, output_tokens))

    async def close(self) -> None:
        await self._client.close()
