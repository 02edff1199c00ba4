"""One WebSocket bridge for every gRPC stream, as routes.py is one for REST: socket messages
fill a request's oneof, replies go out as `{"type": which, ...}` (README, "The facade")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from facade.codec import check_object, describe_parse_error
from facade.envelope import ApiError, from_rpc_error
from facade.outbox import SocketError
from facade.plans import Plans, message_json
from facade.routes import is_map
from services.runtime.auth import bearer
from services.runtime.context import CORRELATION_HEADER, correlation_id
from services.runtime.validation import violations

JsonObject = dict[str, Any]
Metadata = tuple[tuple[str, str], ...]
_INT64 = {FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64}


def call_metadata(token: str) -> Metadata:
    """A call made for a socket's user: with their own token and the correlation id."""
    return (bearer(token), (CORRELATION_HEADER, correlation_id.get()))


def unknown_type(kind: str, takes: Iterable[str]) -> SocketError:
    """The refusal of a message type the socket does not take, naming those it does."""
    listed = ", ".join(("auth", "ping", *takes))
    return SocketError(
        "UNKNOWN_TYPE", f"unknown message type {kind[:40]!r}; this socket takes: {listed}"
    )


def refusal(error: ApiError) -> SocketError:
    return SocketError(error.code, error.message, error.retry_after)


def failure(error: grpc.aio.AioRpcError, service: str) -> SocketError:
    """A failed call as the socket says it, mapped by the same table as REST."""
    return refusal(from_rpc_error(error, service))


class Bridge:
    """Socket messages as requests of one message type (a stream method's, or one of a socket's
    own) and a stream's replies as socket messages."""

    def __init__(
        self,
        request: Descriptor,
        plans: Plans,
        *,
        reply: Descriptor | None = None,
        renames: Mapping[str, str] | None = None,
        nested: Mapping[str, str] | None = None,
        also: tuple[str, ...] = (),
        strict: bool = False,
    ) -> None:
        """`renames`: socket type -> request field ("" for the whole request); `nested`: reply
        field -> the key its JSON goes under; `also`: the socket's own types (for UNKNOWN_TYPE);
        `strict`: a key the request does not know is refused, not left out."""
        self._plans = plans
        self._request_class = message_factory.GetMessageClass(request)
        fields: dict[str, FieldDescriptor | None] = {
            field.name: field for oneof in request.oneofs for field in oneof.fields
        }
        for kind, name in (renames or {}).items():
            fields[kind] = fields.pop(name) if name else None
        self._fields = fields
        self.takes = (*fields, *also)
        self._reply_oneof = reply.oneofs[0].name if reply is not None else ""
        self._nested = nested or {}
        self._strict = strict

    @classmethod
    def of(cls, service: ServiceDescriptor, name: str, plans: Plans, **options: Any) -> Bridge:
        """The bridge of a stream method: its request's oneof fields in, its reply's out."""
        method = service.methods_by_name[name]
        return cls(method.input_type, plans, reply=method.output_type, **options)

    def request(self, kind: str, message: JsonObject) -> Message:
        """The request a socket message stands for; SocketError when the socket refuses it."""
        if kind not in self._fields:
            raise unknown_type(kind, self.takes)
        request = self._request_class()
        field = self._fields[kind]
        if field is None:
            self._parse(message, request)
        elif field.message_type is not None:
            target = getattr(request, field.name)
            target.SetInParent()
            self._parse(message, target)
        else:
            value = message.get(field.json_name)
            if field.type == FieldDescriptor.TYPE_BYTES:
                if not isinstance(value, str):
                    raise SocketError("VALIDATION_ERROR", f"{field.json_name} must be a string")
                value = value.encode()
            setattr(request, field.name, value)
        found = violations(request)
        if found:
            # The first few: a list of 200 bad items would be answered with 200 sentences.
            sentence = "; ".join(f"{name}: {description}" for name, description in found[:3])
            raise SocketError("VALIDATION_ERROR", sentence)
        return request

    def _parse(self, message: JsonObject, target: Message) -> None:
        plan = self._plans.plan(cast(Descriptor, target.DESCRIPTOR))
        # Only the keys the message type knows: the seed's clients send more (`type`, ...).
        # A strict bridge leaves out only `type`, so that check_object refuses the others.
        known = {
            key: value
            for key, value in message.items()
            if key in plan.by_key or (self._strict and key != "type")
        }
        try:
            check_object(known, plan)
            json_format.ParseDict(known, target)
        except ApiError as error:
            raise refusal(error) from None
        except json_format.ParseError as error:
            raise refusal(describe_parse_error(error)) from None

    def reply(self, response: Message) -> tuple[str, Any, JsonObject]:
        """The reply's oneof field, its value, and the socket message it becomes (a scalar's
        value as it is: bytes are the caller's to decode)."""
        which = response.WhichOneof(self._reply_oneof) or ""
        value = getattr(response, which) if which else response
        if not isinstance(value, Message):
            return which, value, {"type": which, which: value}
        descriptor = cast(Descriptor, value.DESCRIPTOR)
        data = message_json(value, self._plans.plan(descriptor))
        _numbers(data, descriptor)
        nest = self._nested.get(which)
        return which, value, {"type": which, **({nest: data} if nest else data)}


def _numbers(data: JsonObject, descriptor: Descriptor) -> None:
    """64-bit integers as JSON numbers (the proto3 mapping writes strings), in place."""
    for field in descriptor.fields:
        value = data.get(field.json_name)
        if value is None or is_map(field):
            continue
        items = value if field.is_repeated else [value]
        if field.cpp_type in _INT64:
            data[field.json_name] = [int(v) for v in items] if field.is_repeated else int(value)
        elif field.message_type is not None and not field.message_type.full_name.startswith(
            "google.protobuf."
        ):
            for item in items:
                _numbers(item, field.message_type)
