"""The assistant's domain: folders, sessions, messages, tool calls and the rules on them.
Plain Python, no I/O."""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.runtime.errors import InvalidArgument
from services.runtime.text_fields import trimmed_text

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

    def refused(self, error: str) -> ToolCall:
        """The call answered with `error`, for the model, without running its tool."""
        return replace(self, result={"error": error}, is_error=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCall:
        """A call as `as_json` stored it (read with `read_stored_json`)."""
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            input=dict(data.get("input") or {}),
            result=data.get("result"),
            is_error=bool(data.get("is_error", False)),
        )


# Digits beyond which an integer is no double's (a double's largest is 1.8e308): a Struct, the
# protobuf JSON mapping and every JSON reader keep numbers as doubles.
_MAX_NUMBER_DIGITS = len(str(int(sys.float_info.max)))


def _loads(text: str, bad: Callable[[str], Any]) -> Any:
    """`text` as JSON: numbers a double holds as numbers, any other as `bad` makes it."""

    def integer(digits: str) -> Any:
        if len(digits.lstrip("-")) > _MAX_NUMBER_DIGITS or abs(int(digits)) > sys.float_info.max:
            return bad(digits)
        return int(digits)

    def real(digits: str) -> Any:
        value = float(digits)
        return value if math.isfinite(value) else bad(digits)

    return json.loads(text, parse_int=integer, parse_float=real, parse_constant=bad)


def _refuse(text: str) -> Any:
    shown = text[:24] + ("…" if len(text) > 24 else "")
    raise ValueError(f"{shown} is not a finite number within a double's range")


def parse_tool_input(text: str) -> dict[str, Any]:
    """A tool's input as the model wrote it (JSON): an object whose numbers are all doubles'.
    ValueError saying what is wrong otherwise (a number like 1e999 or one of 400 digits is
    valid JSON, but no Struct can hold it: the call is refused, not stored)."""
    try:
        value = _loads(text or "{}", _refuse)
    except RecursionError:
        raise ValueError("the input is nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"the input is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError("the input must be a JSON object")
    _check_holdable(value, 1)
    return value


# JSON levels a tool input may nest: each is two protobuf message levels in a Struct, whose
# reader stops at 100 (a valid input 40 deep failed the whole answer when it was sent on).
MAX_TOOL_INPUT_DEPTH = 32


def _check_holdable(value: Any, depth: int) -> None:
    """ValueError for what no Struct (nor the stored UTF-8 text) can hold: nesting past
    MAX_TOOL_INPUT_DEPTH, or a string with a lone surrogate ("\\ud800" is valid JSON)."""
    if depth > MAX_TOOL_INPUT_DEPTH:
        raise ValueError(f"the input is nested deeper than {MAX_TOOL_INPUT_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("the input holds a string that is not valid Unicode text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_holdable(key, depth)
            _check_holdable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_holdable(item, depth + 1)


def read_stored_json(text: str) -> Any:
    """JSON the service stored, with any number no double holds as its text (stored before
    such input was refused: the session must stay readable)."""
    return _loads(text, lambda number: number)


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


@dataclass(frozen=True)
class Transcript:
    """A session and one stretch of its messages (oldest first), with whether older remain."""

    session: Session
    messages: list[Message]
    has_earlier: bool


# Messages a transcript holds unless asked for another number (GetSession's `limit`).
TRANSCRIPT_MESSAGES = 100


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
    return trimmed_text("name", name, most=MAX_FOLDER_NAME_CHARS, if_empty="must not be empty")


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


# The most of a session's history sent with a question, in characters (about a quarter as many
# tokens: well inside the models' 200k-token context, and a bound on what each turn costs). A
# longer session sends its latest turns; the rest stays stored and shown.
HISTORY_CHARS = 400_000
# The most messages read back to build it (each at most ASSISTANT_MAX_MESSAGE_CHARS).
HISTORY_MESSAGES = 400


def provider_history(
    messages: Iterable[Message], max_chars: int = HISTORY_CHARS
) -> list[dict[str, Any]]:
    """A session's messages as the Anthropic Messages API takes them, the latest that fit in
    `max_chars`.

    An assistant message that called tools becomes the assistant's turn (its text and
    `tool_use` blocks) followed by a user turn of `tool_result` blocks. Turns must alternate
    and must not be empty: an incomplete answer keeps only its text (its tool calls never
    ran), an empty one is skipped, and consecutive turns of one role are merged. Cut to fit,
    the history starts with a user's own words (never a tool result whose call was cut).
    """
    return _latest(_turns(messages), max_chars)


def _latest(turns: list[dict[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    size, first = 0, len(turns)
    while first > 0:
        size += sum(_block_chars(block) for block in turns[first - 1]["content"])
        if size > max_chars and first < len(turns):
            break
        first -= 1
    if first == 0:
        return turns
    # Cut: start at a user's turn, without the results of tool calls that were cut off.
    while first < len(turns) - 1:
        head = turns[first]
        words = [block for block in head["content"] if block["type"] != "tool_result"]
        if head["role"] == "user" and words:
            return [{"role": "user", "content": words}, *turns[first + 1 :]]
        first += 1
    return turns[first:]


def _block_chars(block: dict[str, Any]) -> int:
    if block["type"] == "text":
        return len(block["text"])
    if block["type"] == "tool_use":
        return len(json.dumps(block["input"])) + len(block["name"])
    return len(block.get("content", ""))


def _turns(messages: Iterable[Message]) -> list[dict[str, Any]]:
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
