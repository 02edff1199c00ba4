"""The assistant's domain: folders, sessions, messages, tool calls and the rules on them.
Plain Python, no I/O."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.runtime.errors import InvalidArgument

MAX_TITLE_CHARS = 60
MAX_FOLDER_NAME_CHARS = 100
MAX_QUERY_CHARS = 200


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True)
class ToolCall:
    """One tool the model asked for; `result` is filled once it ran."""

    id: str
    name: str
    input: dict[str, Any]
    result: dict[str, Any] | None = None
    is_error: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "input": self.input,
            "result": self.result,
            "is_error": self.is_error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCall:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            input=dict(data.get("input") or {}),
            result=data.get("result"),
            is_error=bool(data.get("is_error", False)),
        )


@dataclass(frozen=True)
class Folder:
    id: str
    user_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    folder_id: str | None
    title: str
    model: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Message:
    id: str
    session_id: str
    role: Role
    content: str
    created_at: datetime
    tool_calls: tuple[ToolCall, ...] = ()
    incomplete: bool = False
    model: str = ""
    usage: Usage = field(default_factory=Usage)


def check_message(text: str, max_chars: int) -> str:
    """A user's message as it will be sent: trimmed, not empty, not oversized."""
    trimmed = text.strip()
    if not trimmed:
        raise InvalidArgument.field("message", "must not be empty")
    if len(trimmed) > max_chars:
        raise InvalidArgument.field(
            "message", f"holds {len(trimmed)} characters; at most {max_chars}"
        )
    return trimmed


def check_model(model: str, valid: Sequence[str]) -> None:
    if model not in valid:
        raise InvalidArgument(
            f"model: unknown model {model[:100]!r}; valid: {', '.join(valid)}",
            fields=[("model", f"must be one of: {', '.join(valid)}")],
            reason="UNKNOWN_MODEL",
        )


def check_folder_name(name: str) -> str:
    trimmed = name.strip()
    if not trimmed:
        raise InvalidArgument.field("name", "must not be empty")
    if len(trimmed) > MAX_FOLDER_NAME_CHARS:
        raise InvalidArgument.field("name", f"must be at most {MAX_FOLDER_NAME_CHARS} characters")
    return trimmed


def check_title(title: str) -> str:
    trimmed = " ".join(title.split())
    if not trimmed:
        raise InvalidArgument.field("title", "must not be empty")
    if len(trimmed) > MAX_TITLE_CHARS * 3:
        raise InvalidArgument.field("title", f"must be at most {MAX_TITLE_CHARS * 3} characters")
    return trimmed


def check_query(q: str) -> list[str]:
    """The words of a search; at least one is needed."""
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidArgument.field("q", f"must be at most {MAX_QUERY_CHARS} characters")
    words = [w for w in (word.strip("\"'.,;:!?()") for word in q.split()) if w]
    if not words:
        raise InvalidArgument.field("q", "must name at least one word")
    return words


def title_from(message: str) -> str:
    """A session's title: its first message, on one line, cut at a word near 60 characters."""
    flat = " ".join(message.split())
    if len(flat) <= MAX_TITLE_CHARS:
        return flat
    cut = flat[:MAX_TITLE_CHARS].rsplit(" ", 1)[0] or flat[:MAX_TITLE_CHARS]
    return cut.rstrip(",.;:") + "…"


def provider_history(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """A session's messages as the Anthropic Messages API takes them.

    An assistant message that called tools becomes the assistant's turn (its text and
    `tool_use` blocks) followed by a user turn of `tool_result` blocks. Turns must alternate
    and must not be empty: an incomplete answer keeps only its text (its tool calls never
    ran), an empty one is skipped, and consecutive turns of one role are merged.
    """
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        text = [{"type": "text", "text": message.content}] if message.content else []
        if message.role is Role.USER:
            add("user", text)
            continue
        ran = [c for c in message.tool_calls if c.result is not None and not message.incomplete]
        uses = [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in ran]
        add("assistant", text + uses)
        add("user", [tool_result_block(c) for c in ran])
    return turns


def tool_result_block(call: ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": json.dumps(call.result, separators=(",", ":")),
        "is_error": call.is_error,
    }
