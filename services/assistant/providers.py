"""What every provider of answers is and says: Claude (claude.py) when CLAUDE_API_KEY is set,
else the offline provider (offline.py); server.py picks one.

A provider streams one round of an answer: text deltas, then the tools the model wants run,
then the round's end (stop reason, usage). The conversation (conversation.py) runs the tools
and asks again. Provider failures become domain errors with a retry hint, here and only here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from services.assistant.domain import Usage
from services.runtime.errors import Kind, ResourceExhausted

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
    # Why the input the model wrote cannot be used (not a JSON object of finite numbers): the
    # tool is not run, and the model is told so in its result.
    invalid: str = ""


@dataclass(frozen=True)
class RoundEnd:
    stop_reason: str
    usage: Usage


@dataclass(frozen=True)
class RoundStarted:
    """The provider took the round: what it has counted so far (the input tokens)."""

    usage: Usage


ProviderEvent = TextDelta | ToolUse | RoundEnd | RoundStarted


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

    kind = Kind.UNAVAILABLE
    reason = "PROVIDER_ERROR"


class ProviderRateLimited(ProviderError):
    kind = Kind.RESOURCE_EXHAUSTED
    reason = "PROVIDER_RATE_LIMITED"


class ProviderOverloaded(ProviderError):
    reason = "PROVIDER_OVERLOADED"


class ProviderTimeout(ProviderError):
    reason = "PROVIDER_TIMEOUT"


class ProviderAuthFailed(ProviderError):
    reason = "PROVIDER_AUTH_FAILED"
