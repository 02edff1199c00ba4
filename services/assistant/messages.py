"""Domain objects as protobuf messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from stockfolio.assistant.v1 import assistant_pb2

from services.assistant.conversation import AnswerEvent, Chunk, Done, SessionStarted, ToolCalled
from services.assistant.domain import Folder, Message, Session, ToolCall, Usage
from services.runtime.timestamps import timestamp


def usage_message(usage: Usage) -> assistant_pb2.Usage:
    return assistant_pb2.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


def struct(data: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if data is None:
        return None
    found = struct_pb2.Struct()
    found.update(data)
    return found


def tool_call_message(call: ToolCall) -> assistant_pb2.ToolCall:
    return assistant_pb2.ToolCall(
        id=call.id,
        name=call.name,
        input=struct(call.input),
        result=struct(call.result),
        is_error=call.is_error,
    )


def folder_message(folder: Folder) -> assistant_pb2.Folder:
    return assistant_pb2.Folder(
        id=folder.id, name=folder.name, created_at=timestamp(folder.created_at)
    )


def session_message(session: Session) -> assistant_pb2.ChatSession:
    return assistant_pb2.ChatSession(
        id=session.id,
        title=session.title,
        folder_id=session.folder_id or "",
        model=session.model,
        created_at=timestamp(session.created_at),
        updated_at=timestamp(session.updated_at),
    )


def chat_message(message: Message) -> assistant_pb2.ChatMessage:
    return assistant_pb2.ChatMessage(
        id=message.id,
        session_id=message.session_id,
        role=message.role.value,
        content=message.content,
        created_at=timestamp(message.created_at),
        incomplete=message.incomplete,
        tool_calls=[tool_call_message(c) for c in message.tool_calls],
        model=message.model,
        usage=usage_message(message.usage),
    )


def stream_event(event: AnswerEvent) -> assistant_pb2.ChatStreamResponse:
    if isinstance(event, SessionStarted):
        started = assistant_pb2.SessionStarted(
            session_id=event.session.id, title=event.session.title
        )
        return assistant_pb2.ChatStreamResponse(session=started)
    if isinstance(event, Chunk):
        chunk = assistant_pb2.Chunk(session_id=event.session_id, text=event.text)
        return assistant_pb2.ChatStreamResponse(chunk=chunk)
    if isinstance(event, ToolCalled):
        return assistant_pb2.ChatStreamResponse(tool_call=tool_call_message(event.call))
    if isinstance(event, Done):
        done = assistant_pb2.Done(
            session_id=event.session_id,
            message_id=event.message.id,
            usage=usage_message(event.usage),
        )
        return assistant_pb2.ChatStreamResponse(done=done)
    return assistant_pb2.ChatStreamResponse(tool_result=tool_call_message(event.call))
