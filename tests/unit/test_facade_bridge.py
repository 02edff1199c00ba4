"""The generic WebSocket bridge (facade/bridge.py): socket messages to request oneof fields,
replies to socket messages, the rename table, call metadata and failures."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from stockfolio.assistant.v1 import assistant_pb2
from stockfolio.terminal.v1 import terminal_pb2

from facade.bridge import Bridge, call_metadata, failure
from facade.outbox import SocketError
from facade.plans import Plans
from facade.ws_chat import chat_bridge
from facade.ws_terminal import terminal_bridge
from services.runtime.context import correlation_id


@pytest.fixture
def terminal() -> Bridge:
    return terminal_bridge(Plans())


@pytest.fixture
def chat() -> Bridge:
    return chat_bridge(Plans())


def refused(bridge: Bridge, message: dict[str, Any]) -> SocketError:
    with pytest.raises(SocketError) as refusal:
        bridge.request(message["type"], message)
    return refusal.value


def test_a_socket_type_fills_the_request_oneof_field_of_its_name(terminal: Bridge) -> None:
    join = terminal.request("join", {"type": "join", "sessionId": "s1", "noReplay": True})
    assert join == terminal_pb2.AttachTerminalRequest(
        join=terminal_pb2.TerminalJoin(session_id="s1", no_replay=True)
    )
    resize = terminal.request("resize", {"type": "resize", "cols": 90, "rows": 33})
    assert resize == terminal_pb2.AttachTerminalRequest(
        resize=terminal_pb2.TerminalSize(cols=90, rows=33)
    )


def test_bytes_fields_take_text_as_utf8_and_keys_the_message_does_not_know_are_ignored(
    terminal: Bridge,
) -> None:
    data = terminal.request("data", {"type": "data", "data": "ls é\r", "seq": 7})
    assert data == terminal_pb2.AttachTerminalRequest(data="ls é\r".encode())


def test_an_unknown_type_is_refused_naming_every_type_the_socket_takes(terminal: Bridge) -> None:
    error = refused(terminal, {"type": "launch"})
    assert (error.code, error.message) == (
        "UNKNOWN_TYPE",
        "unknown message type 'launch'; this socket takes: "
        "auth, ping, join, data, resize, disconnect",
    )


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ({"type": "data", "data": 5}, "data must be a string"),
        ({"type": "resize", "cols": 2000, "rows": 10}, "resize.cols: must be between 1 and 1000"),
        ({"type": "resize", "cols": "wide", "rows": 10}, "cols must be an integer"),
        ({"type": "join"}, "join.sessionId: is required"),
        ({"type": "join", "sessionId": "x" * 129}, "join.sessionId: must be at most 128"),
    ],
)
def test_requests_are_checked_by_the_protos_own_rules_before_they_go(
    terminal: Bridge, message: dict[str, Any], says: str
) -> None:
    error = refused(terminal, message)
    assert error.code == "VALIDATION_ERROR"
    assert says in error.message


def test_the_rename_table_maps_a_seed_type_to_the_whole_request(chat: Bridge) -> None:
    request = chat.request(
        "stream_chat", {"type": "stream_chat", "sessionId": "s1", "message": "hi", "model": None}
    )
    assert request == assistant_pb2.ChatStreamRequest(session_id="s1", message="hi")
    assert refused(chat, {"type": "stream_chat", "message": "   "}).code == "VALIDATION_ERROR"
    assert chat.takes == (
        "stream_chat",
        "stop",
        "join_session",
        "leave_session",
        "typing_start",
        "typing_stop",
    )


def test_replies_become_type_and_json_nested_where_the_table_says(
    terminal: Bridge, chat: Bridge
) -> None:
    exit_reply = terminal_pb2.AttachTerminalResponse(
        exit=terminal_pb2.TerminalExit(code=3, reason="exited")
    )
    assert terminal.reply(exit_reply)[2] == {"type": "exit", "code": 3, "reason": "exited"}
    joined = terminal_pb2.AttachTerminalResponse(
        joined=terminal_pb2.Terminal(session_id="s1", state=terminal_pb2.TERMINAL_STATE_RUNNING)
    )
    which, value, reply = terminal.reply(joined)
    assert (which, value.session_id, reply["type"]) == ("joined", "s1", "joined")
    assert reply["terminal"]["sessionId"] == "s1" and reply["terminal"]["state"] == "running"
    call = assistant_pb2.ChatStreamResponse(tool_call=assistant_pb2.ToolCall(id="t", name="n"))
    assert chat.reply(call)[2]["toolCall"]["name"] == "n"
    output = terminal_pb2.AttachTerminalResponse(data=b"\xc3")
    assert terminal.reply(output)[:2] == ("data", b"\xc3")


def test_64_bit_counts_are_json_numbers_on_sockets(chat: Bridge) -> None:
    done = assistant_pb2.ChatStreamResponse(
        done=assistant_pb2.Done(
            session_id="s1",
            message_id="m1",
            usage=assistant_pb2.Usage(input_tokens=50, output_tokens=3),
        )
    )
    assert chat.reply(done)[2] == {
        "type": "done",
        "sessionId": "s1",
        "messageId": "m1",
        "usage": {"inputTokens": 50, "outputTokens": 3},
    }


def test_calls_carry_the_sockets_token_and_the_correlation_id() -> None:
    reset = correlation_id.set("corr-1")
    try:
        assert dict(call_metadata("tok")) == {
            "authorization": "Bearer tok",
            "x-correlation-id": "corr-1",
        }
    finally:
        correlation_id.reset(reset)


def rpc_error(code: grpc.StatusCode, details: str, retry_after: int = 0) -> grpc.aio.AioRpcError:
    """A failed call as a service answers it: the status, with a retry hint when given."""
    status = status_pb2.Status(code=code.value[0], message=details)
    if retry_after:
        status.details.add().Pack(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after))
        )
    trailers = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailers, details)


def test_failed_calls_map_by_the_facades_one_table_with_the_retry_hint() -> None:
    missing = failure(rpc_error(grpc.StatusCode.NOT_FOUND, "no such session"), "terminal")
    assert (missing.code, missing.message, missing.retry_after) == (
        "NOT_FOUND",
        "no such session",
        None,
    )
    assert missing.reply(sessionId="s1") == {
        "type": "error",
        "code": "NOT_FOUND",
        "message": "no such session",
        "sessionId": "s1",
    }
    busy = failure(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", 2), "assistant")
    assert (busy.code, busy.message) == ("RESOURCE_EXHAUSTED", "slow down")
    assert busy.reply()["retryAfter"] == 2
