"""The assistant service's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.runtime.account_deletions import DEFAULT_INTERVAL as DEFAULT_PURGE_INTERVAL
from services.runtime.account_deletions import purge_interval
from services.runtime.config import Env, RuntimeConfig
from services.runtime.ratelimit import Rate, parse_rate

# The seed's model ids: always offered, whatever the provider lists besides.
SEED_MODELS = (
    "claude-3-5-sonnet-20241022",
    "claude-3-5-haiku-20241022",
    "claude-3-opus-20240229",
    "claude-3-sonnet-20240229",
    "claude-3-haiku-20240307",
)
DEFAULT_MODEL = SEED_MODELS[0]


@dataclass(frozen=True)
class AssistantConfig:
    runtime: RuntimeConfig
    # Unset: the offline provider answers (and says so).
    claude_api_key: str | None = field(repr=False)
    # The model a message gets when it names none.
    claude_model: str
    # Most tokens one provider call may write.
    max_tokens: int
    # The Anthropic API's address (a local fake in tests); None: the SDK's default.
    anthropic_base_url: str | None
    # Seconds the SDK waits on the provider (connect, and between streamed bytes).
    anthropic_timeout: float
    # The SDK's own retries of 429, 5xx and 529 answers before an error reaches the user.
    anthropic_max_retries: int
    # Characters one user message may hold.
    max_message_chars: int
    # Messages one user may send per window (0: unlimited).
    messages_rate: Rate
    # Provider tokens (input + output) one user may spend per UTC day (0: unlimited).
    tokens_per_day: int
    # Tokens of that budget reserved before each provider round, settled to its real usage
    # after (services/assistant/budget.py); by default the round's output bound, max_tokens.
    token_reserve: int
    # Provider round trips one answer may take while calling tools.
    max_tool_rounds: int
    # Seconds a provider's model list is reused before it is asked again.
    models_ttl: float
    # Seconds between two reads of the users service's account deletions (erasure.py).
    purge_interval: float = DEFAULT_PURGE_INTERVAL


def load_assistant_config(
    runtime: RuntimeConfig, environ: Mapping[str, str] | None = None
) -> AssistantConfig:
    env = Env(runtime.environ if environ is None else environ)
    return AssistantConfig(
        runtime=runtime,
        claude_api_key=env.optional("CLAUDE_API_KEY"),
        claude_model=env.str("CLAUDE_MODEL", DEFAULT_MODEL),
        max_tokens=env.int("MAX_TOKENS", 4096, minimum=1, maximum=200_000),
        anthropic_base_url=env.optional("ANTHROPIC_BASE_URL"),
        anthropic_timeout=env.float("CLAUDE_TIMEOUT", 60.0, minimum=0.01),
        anthropic_max_retries=env.int("CLAUDE_MAX_RETRIES", 2, maximum=10),
        max_message_chars=env.int("ASSISTANT_MAX_MESSAGE_CHARS", 10_000, minimum=1),
        messages_rate=parse_rate(
            "ASSISTANT_MESSAGES_RATE", env.str("ASSISTANT_MESSAGES_RATE", "20/minute")
        ),
        tokens_per_day=env.int("ASSISTANT_TOKENS_PER_DAY", 200_000, maximum=2**40),
        token_reserve=env.int(
            "ASSISTANT_TOKEN_RESERVE",
            env.int("MAX_TOKENS", 4096, minimum=1, maximum=200_000),
            minimum=1,
            maximum=2**40,
        ),
        max_tool_rounds=env.int("ASSISTANT_MAX_TOOL_ROUNDS", 5, minimum=1, maximum=20),
        models_ttl=env.float("ASSISTANT_MODELS_TTL", 600.0),
        purge_interval=purge_interval(env),
    )
