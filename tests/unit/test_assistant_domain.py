"""The assistant's rules: titles, message checks, the history sent to the provider, the
offline assistant's answers and the translation of provider errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import grpc
import httpx2
import pytest
from anthropic._error_classes import make_status_error
from hypothesis import given
from hypothesis import strategies as st

from services.assistant.budget import seconds_to_midnight
from services.assistant.claude import provider_error
from services.assistant.domain import (
    MAX_TITLE_CHARS,
    Message,
    Role,
    ToolCall,
    check_message,
    check_model,
    check_query,
    provider_history,
    title_from,
)
from services.assistant.offline import OFFLINE_NOTICE, offline_answer
from services.runtime.errors import InvalidArgument
from services.runtime.status import status_code

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def message(role: Role, content: str, **fields: object) -> Message:
    return Message("m", "s", role, content, NOW, **fields)  # type: ignore[arg-type]


def test_a_title_is_the_first_message_on_one_line_cut_at_a_word() -> None:
    assert title_from("  What is\n my   portfolio worth? ") == "What is my portfolio worth?"
    long = "Please compare the dividend yields of every utility company I hold, sector by sector"
    title = title_from(long)
    assert title == "Please compare the dividend yields of every utility company…"
    assert len(title) <= MAX_TITLE_CHARS + 1


@given(st.text(min_size=1, max_size=300).filter(lambda t: t.strip()))
def test_a_title_is_never_longer_than_the_limit_and_never_empty(text: str) -> None:
    title = title_from(text)
    assert 0 < len(title) <= MAX_TITLE_CHARS + 1
    assert "\n" not in title


def test_messages_are_trimmed_and_must_be_neither_empty_nor_oversized() -> None:
    assert check_message("  hi  ", 10) == "hi"
    with pytest.raises(InvalidArgument) as empty:
        check_message(" \n\t", 10)
    assert empty.value.fields == [("message", "must not be empty")]
    with pytest.raises(InvalidArgument) as big:
        check_message("x" * 11, 10)
    assert big.value.fields == [("message", "holds 11 characters; at most 10")]


def test_an_unknown_model_is_refused_listing_the_valid_ones() -> None:
    check_model("a", ["a", "b"])
    with pytest.raises(InvalidArgument) as refused:
        check_model("c", ["a", "b"])
    assert refused.value.reason == "UNKNOWN_MODEL"
    assert refused.value.fields == [("model", "must be one of: a, b")]


def test_a_search_needs_a_word() -> None:
    assert check_query(' "growth", stocks! ') == ["growth", "stocks"]
    with pytest.raises(InvalidArgument):
        check_query(" ?! ")


def test_the_history_alternates_turns_and_replays_tool_calls_with_their_results() -> None:
    call = ToolCall("t1", "list_portfolios", {}, {"portfolios": []})
    history = provider_history(
        [
            message(Role.USER, "q1"),
            message(Role.USER, "q1 again"),
            message(Role.ASSISTANT, "Let me look.", tool_calls=(call,)),
            message(Role.ASSISTANT, "Nothing yet."),
            message(Role.USER, "q2"),
            message(Role.ASSISTANT, "half an ans", incomplete=True),
            message(Role.ASSISTANT, "", incomplete=True),
            message(Role.USER, "q3"),
        ]
    )
    assert [t["role"] for t in history] == ["user", "assistant"] * 3 + ["user"]
    assert history[0]["content"] == [
        {"type": "text", "text": "q1"},
        {"type": "text", "text": "q1 again"},
    ]
    assert history[1]["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "t1", "name": "list_portfolios", "input": {}},
    ]
    assert history[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "content": json.dumps({"portfolios": []}, separators=(",", ":")),
            "is_error": False,
        }
    ]
    assert history[3]["content"] == [{"type": "text", "text": "Nothing yet."}]
    # An incomplete answer keeps its text; an empty one is skipped.
    assert history[5]["content"] == [{"type": "text", "text": "half an ans"}]
    assert history[6]["content"] == [{"type": "text", "text": "q3"}]


def test_a_long_history_sends_its_latest_turns_from_a_users_own_words() -> None:
    call = ToolCall("t1", "get_quote", {"symbol": "AAPL"}, {"price": "1"})
    turns = [
        message(Role.USER, "q0 " + "x" * 100),
        message(Role.ASSISTANT, "a0 " + "y" * 100, tool_calls=(call,)),
        message(Role.USER, "q1 " + "x" * 100),
        message(Role.ASSISTANT, "a1 " + "y" * 100),
        message(Role.USER, "q2"),
    ]
    whole = provider_history(turns)
    assert [t["role"] for t in whole] == ["user", "assistant", "user", "assistant", "user"]
    # Room for the last three turns and part of the fourth: it starts at q1, whole.
    cut = provider_history(turns, max_chars=250)
    assert [t["content"][0].get("text", "")[:2] for t in cut] == ["q1", "a1", "q2"]
    # Room for the tool result's turn (merged with q1) but not the call: q1 without the result.
    cut = provider_history(turns, max_chars=300)
    assert cut[0] == {"role": "user", "content": [{"type": "text", "text": "q1 " + "x" * 100}]}
    # The question itself is always sent, however small the room.
    assert provider_history(turns, max_chars=1) == [
        {"role": "user", "content": [{"type": "text", "text": "q2"}]}
    ]


def test_an_incomplete_answer_keeps_its_text_but_not_its_unrun_tools() -> None:
    unrun = ToolCall("t9", "get_quote", {"symbol": "AAPL"})
    history = provider_history(
        [
            message(Role.USER, "q"),
            message(Role.ASSISTANT, "Partial", tool_calls=(unrun,), incomplete=True),
        ]
    )
    assert history == [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Partial"}]},
    ]


def test_the_offline_answer_totals_values_and_lists_holdings() -> None:
    portfolios: list[dict[str, Any]] = [
        {
            "name": "Core",
            "totalValue": "1500.5",
            "cash": "100",
            "totalGainLoss": "20",
            "currency": "USD",
            "positions": [
                {"symbol": "AAPL", "quantity": "3.000", "marketValue": "1400.5"},
                {"symbol": "OLD", "quantity": "0", "marketValue": "0"},
            ],
        },
        {"name": "Empty", "totalValue": "10", "currency": "USD", "positions": []},
    ]
    worth = offline_answer("What is my portfolio worth?", portfolios)
    assert worth.startswith(OFFLINE_NOTICE)
    assert "worth 1,510.50 USD in total" in worth
    held = offline_answer("what do I hold", portfolios)
    assert "- Core: 3 AAPL (worth 1,400.50)" in held
    assert "OLD" not in held
    assert "- Empty: no open positions" in held
    assert offline_answer("worth?", []).endswith("You have no portfolios yet.")


def _status_error(status: int, body: dict[str, object], **headers: str) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "http://fake/v1/messages")
    response = httpx2.Response(status, headers=headers, json=body, request=request)
    return make_status_error("failed", body=body, response=response)


@pytest.mark.parametrize(
    ("status", "kind", "headers", "code", "why", "wait"),
    [
        (429, "rate_limit_error", {"retry-after": "12"}, "RESOURCE_EXHAUSTED",
         "PROVIDER_RATE_LIMITED", 12.0),
        (529, "overloaded_error", {"retry-after-ms": "2500"}, "UNAVAILABLE",
         "PROVIDER_OVERLOADED", 2.5),
        (401, "authentication_error", {}, "UNAVAILABLE", "PROVIDER_AUTH_FAILED", 300.0),
        # An `error` event inside a 200 stream: its type decides.
        (200, "overloaded_error", {}, "UNAVAILABLE", "PROVIDER_OVERLOADED", 15.0),
        (500, "api_error", {}, "UNAVAILABLE", "PROVIDER_ERROR", 5.0),
    ],
)  # fmt: skip
def test_provider_errors_become_clear_messages_with_retry_hints(
    status: int, kind: str, headers: dict[str, str], code: str, why: str, wait: float
) -> None:
    error = provider_error(
        _status_error(status, {"type": "error", "error": {"type": kind, "message": "x"}}, **headers)
    )
    assert status_code(error) == getattr(grpc.StatusCode, code)
    assert error.reason == why
    assert error.retry_after == wait
    assert "retry" in error.message.lower()


def test_a_timeout_is_its_own_error() -> None:
    error = provider_error(anthropic.APITimeoutError(httpx2.Request("POST", "http://fake/")))
    assert error.reason == "PROVIDER_TIMEOUT"
    assert "in time" in error.message


def test_the_token_budget_renews_at_midnight_utc() -> None:
    assert seconds_to_midnight(NOW) == 12 * 3600


def test_a_keyless_assistant_does_not_load_the_sdk() -> None:
    """The offline default keeps the SDK (and pydantic, httpx2) out of memory: the service's
    idle RSS is held under issue 3's 120 MB."""
    code = (
        "import sys, services.assistant.server\n"
        "print(sorted(m for m in ('anthropic', 'httpx2', 'pydantic') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{repo / 'gen'}"},
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr[-2000:]


def test_the_offline_answer_never_adds_one_currency_to_another() -> None:
    """A yen portfolio beside dollar ones: 999,726.79 JPY was added to the dollars, and the
    sum given with no currency at all."""
    portfolios = [
        {"name": "Growth", "currency": "USD", "totalValue": "9977.90", "cash": "0"},
        {"name": "Yen", "currency": "JPY", "totalValue": "999726.79", "cash": "0"},
        {"name": "Income", "currency": "USD", "totalValue": "22.10", "cash": "0"},
    ]
    answer = offline_answer("what is my portfolio worth?", portfolios)
    assert "worth 999,726.79 JPY and 10,000.00 USD in total:" in answer
    assert "- Yen: 999,726.79 JPY" in answer
