"""The REST route table, built at start from the protos' google.api.http rules.

As in grpc-gateway and Envoy's transcoder, routes are data: each annotated unary or
server-streaming RPC becomes a Route (verb, path template, which request fields the path, body
and query string fill, and what the response carries). One generic handler serves the unary
ones, another the streams (facade/streaming.py), a third the uploads (facade/uploads.py):
client-streaming RPCs whose rule's `body` names a `google.api.HttpBody` request field. Other
client-streaming RPCs, bidirectional ones and internal RPCs get no route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from stockfolio.assistant.v1 import assistant_pb2
from stockfolio.portfolio.v1 import portfolio_pb2
from stockfolio.terminal.v1 import terminal_pb2
from stockfolio.users.v1 import users_pb2
from stockfolio.workspace.v1 import workspace_pb2

from services.runtime.descriptors import MethodRule, method_rule

# The domain services behind the facade, by the name their config and health use.
DOMAIN_APIS: Mapping[str, ServiceDescriptor] = {
    "users": users_pb2.DESCRIPTOR.services_by_name["UsersService"],
    "assistant": assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"],
    "terminal": terminal_pb2.DESCRIPTOR.services_by_name["TerminalService"],
    "workspace": workspace_pb2.DESCRIPTOR.services_by_name["WorkspaceService"],
    "portfolio": portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"],
}

PAGINATION_TYPE = "stockfolio.common.v1.Pagination"
# The transcoding convention for a raw response body (a download), as in grpc-gateway.
HTTP_BODY_TYPE = "google.api.HttpBody"
# Well-known types that read from one JSON string (and so from one query parameter).
STRING_WKTS = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
WRAPPER_WKTS = frozenset(
    f"google.protobuf.{name}"
    for name in (
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    )
)
QUERY_DEPTH = 3

_VARIABLE = re.compile(r"\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:=([^{}]*))?\}")
_CREATES = re.compile(r"^(Create[A-Z0-9]|Register$)")


@dataclass(frozen=True)
class FieldPath:
    """A request field, possibly nested (`a.b`), as the path or query string names it."""

    name: str
    fields: tuple[FieldDescriptor, ...]

    @property
    def leaf(self) -> FieldDescriptor:
        return self.fields[-1]

    @property
    def proto_path(self) -> str:
        return ".".join(f.name for f in self.fields)


@dataclass(frozen=True)
class PathVariable:
    placeholder: str  # the aiohttp match_info key
    field: FieldPath
    multi_segment: bool


@dataclass(frozen=True)
class Route:
    service: str
    method: MethodDescriptor
    verb: str
    template: str  # as written in the proto, e.g. /api/v1/files/{path=**}
    aiohttp_path: str
    variables: tuple[PathVariable, ...]
    body: str  # "" (no body), "*" (the whole request) or a request field name
    response_body: str  # "" (the whole response) or a response field name
    rule: MethodRule
    operation_id: str
    success_status: int
    query: Mapping[str, FieldPath]  # query parameter name -> field (JSON and proto names)
    paginated: bool  # the response has a stockfolio.common.v1.Pagination `pagination`
    streaming: bool = False  # server-streaming: answered as a stream, not an envelope
    raw_body: bool = False  # streams google.api.HttpBody chunks: the body itself
    # Client-streaming: the raw request body is streamed to the service in chunks, each one
    # the `body` field (a google.api.HttpBody) of one request message (facade/uploads.py).
    streamed_body: bool = False
    # A raw body whose request chooses a `format` is a file download: its base name (the
    # path's last literal segment); the extension follows the content type. "" otherwise.
    download_name: str = ""

    @property
    def public(self) -> bool:
        return self.rule.public

    @property
    def body_field(self) -> FieldDescriptor | None:
        if self.body in {"", "*"}:
            return None
        return self.method.input_type.fields_by_name[self.body]

    @property
    def response_field(self) -> FieldDescriptor | None:
        if not self.response_body:
            return None
        return self.method.output_type.fields_by_name[self.response_body]


def is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return bool(message is not None and message.GetOptions().map_entry)


def map_value(field: FieldDescriptor) -> FieldDescriptor:
    """The value field of a map field's entry type."""
    assert field.message_type is not None
    return field.message_type.fields_by_name["value"]


def resolve_field(message: Descriptor, dotted: str, *, where: str) -> FieldPath:
    """`a.b` -> the descriptors on the way; path fields must end in a singular scalar."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for part in dotted.split("."):
        if current is None:
            raise ValueError(f"{where}: {dotted!r} goes through a field that is not a message")
        field = current.fields_by_name.get(part)
        if field is None:
            raise ValueError(f"{where}: {current.full_name} has no field {part!r}")
        if field.is_repeated:
            raise ValueError(f"{where}: {dotted!r} goes through repeated field {part!r}")
        fields.append(field)
        current = field.message_type
    if current is not None and current.full_name not in STRING_WKTS | WRAPPER_WKTS:
        raise ValueError(f"{where}: {dotted!r} is a message; path variables must be scalars")
    return FieldPath(dotted, tuple(fields))


def _segments_regex(pattern: str) -> str:
    # `[\s\S]`, not `.`: a decoded path may hold a newline, which the service must see (and
    # refuse with its rule), not fall past every route into aiohttp's plain-text 404.
    return "/".join(
        r"[\s\S]+" if s == "**" else "[^/]+" if s == "*" else re.escape(s)
        for s in pattern.split("/")
    )


def _literal(text: str, counter: list[int]) -> str:
    """Literal template text; bare `*` / `**` segments become unnamed aiohttp variables."""
    parts = text.split("/")
    for index, part in enumerate(parts):
        if part in {"*", "**"}:
            counter[0] += 1
            parts[index] = f"{{_w{counter[0]}:{_segments_regex(part)}}}"
        elif any(c in part for c in "{}*"):
            raise ValueError(f"unsupported path segment {part!r}")
    return "/".join(parts)


def parse_template(
    template: str, message: Descriptor, *, where: str
) -> tuple[str, tuple[PathVariable, ...]]:
    """A google.api.http path template -> an aiohttp path and the variables it binds."""
    if not template.startswith("/"):
        raise ValueError(f"{where}: path {template!r} must start with '/'")
    pieces: list[str] = []
    variables: list[PathVariable] = []
    counter = [0]
    position = 0
    for match in _VARIABLE.finditer(template):
        pieces.append(_literal(template[position : match.start()], counter))
        dotted, pattern = match.group(1), match.group(2) or "*"
        field = resolve_field(message, dotted, where=where)
        placeholder = dotted if "." not in dotted else f"_v{len(variables)}"
        if pattern == "*":
            pieces.append(f"{{{placeholder}}}")
        else:
            pieces.append(f"{{{placeholder}:{_segments_regex(pattern)}}}")
        variables.append(PathVariable(placeholder, field, "**" in pattern or "/" in pattern))
        position = match.end()
    pieces.append(_literal(template[position:], counter))
    names = [v.field.proto_path for v in variables]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: {template!r} binds a field twice")
    return "".join(pieces), tuple(variables)


def query_fields(
    message: Descriptor, excluded: frozenset[str], *, prefix: tuple[FieldDescriptor, ...] = ()
) -> dict[str, FieldPath]:
    """Request fields the query string may set: those not bound by the path or the body.

    Each is reachable by its JSON (lowerCamelCase) name and its proto name; nested messages by
    dotted names (`a.b=`), a few levels deep.
    """
    found: dict[str, FieldPath] = {}
    for field in message.fields:
        chain = (*prefix, field)
        proto_path = ".".join(f.name for f in chain)
        if proto_path in excluded or is_map(field):
            continue
        nested = field.message_type
        if nested is not None and nested.full_name not in STRING_WKTS | WRAPPER_WKTS:
            if field.is_repeated or len(chain) >= QUERY_DEPTH:
                continue
            found.update(query_fields(nested, excluded, prefix=chain))
            continue
        for name in {proto_path, ".".join(f.json_name for f in chain)}:
            found[name] = FieldPath(name, chain)
    return found


def _excluded(route_body: str, variables: Iterable[PathVariable]) -> frozenset[str]:
    bound = {v.field.proto_path for v in variables}
    if route_body:
        bound.add(route_body)
    return frozenset(bound)


def _pattern(rule: http_pb2.HttpRule) -> tuple[str, str] | None:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), str(getattr(rule, kind))


def routes_for_method(service: str, method: MethodDescriptor) -> list[Route]:
    """The routes of one RPC: its http rule and any additional bindings."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    if method.client_streaming and (
        method.server_streaming or not _streams_http_body(method, options)
    ):
        return []  # no REST form but a streamed HttpBody body; WebSockets bridge the others
    rule = method_rule(method)
    if rule.internal:
        return []  # service-to-service only (service tokens): never published over REST
    streaming = method.server_streaming
    raw_body = streaming and method.output_type.full_name == HTTP_BODY_TYPE
    top = options.Extensions[annotations_pb2.http]
    found: list[Route] = []
    for index, binding in enumerate([top, *top.additional_bindings]):
        where = f"{method.full_name} binding {index}"
        pattern = _pattern(binding)
        if pattern is None:
            raise ValueError(f"{where}: http rule names no verb and path")
        verb, template = pattern
        aiohttp_path, variables = parse_template(template, method.input_type, where=where)
        if binding.body not in {"", "*"}:
            body_field = method.input_type.fields_by_name.get(binding.body)
            if body_field is None:
                raise ValueError(f"{where}: body {binding.body!r} is not a request field")
        response_fields = method.output_type.fields_by_name
        if binding.response_body and binding.response_body not in response_fields:
            raise ValueError(f"{where}: response_body {binding.response_body!r} is unknown")
        if binding.body == "*":
            query: dict[str, FieldPath] = {}
        else:
            excluded = _excluded(binding.body, variables)
            query = query_fields(method.input_type, excluded)
        if raw_body and binding.response_body:
            raise ValueError(f"{where}: an HttpBody stream cannot name a response_body")
        pagination = None if streaming else method.output_type.fields_by_name.get("pagination")
        operation_id = f"{method.containing_service.name}_{method.name}"
        found.append(
            Route(
                service=service,
                method=method,
                verb=verb,
                template=template,
                aiohttp_path=aiohttp_path,
                variables=variables,
                body=binding.body,
                response_body=binding.response_body,
                rule=rule,
                operation_id=operation_id if index == 0 else f"{operation_id}_{index}",
                success_status=201 if _CREATES.match(method.name) else 200,
                query=query,
                paginated=bool(
                    pagination is not None
                    and pagination.message_type is not None
                    and pagination.message_type.full_name == PAGINATION_TYPE
                ),
                streaming=streaming,
                raw_body=raw_body,
                streamed_body=method.client_streaming,
                download_name=(
                    _last_literal(template)
                    if raw_body and "format" in method.input_type.fields_by_name
                    else ""
                ),
            )
        )
    return found


def _streams_http_body(method: MethodDescriptor, options: descriptor_pb2.MethodOptions) -> bool:
    """A client-streaming RPC whose every binding's `body` is one google.api.HttpBody field."""
    top = options.Extensions[annotations_pb2.http]
    for binding in [top, *top.additional_bindings]:
        field = method.input_type.fields_by_name.get(binding.body)
        if field is None or field.is_repeated or field.message_type is None:
            return False
        if field.message_type.full_name != HTTP_BODY_TYPE:
            return False
    return True


def _last_literal(template: str) -> str:
    """`/api/v1/export` -> `export`; `/v1/{name=reports/*}:download` -> `download`."""
    literals = [
        part
        for segment in _VARIABLE.sub("", template).replace(":", "/").split("/")
        if (part := segment.strip("*")) and re.fullmatch(r"[A-Za-z0-9_.-]+", part)
    ]
    return literals[-1] if literals else "download"


def build_routes(apis: Mapping[str, ServiceDescriptor] = DOMAIN_APIS) -> tuple[Route, ...]:
    """Every transcoded route of every domain service; a clash between two is an error."""
    routes: list[Route] = []
    seen: dict[tuple[str, str], str] = {}
    for service, descriptor in apis.items():
        for method in descriptor.methods:
            for route in routes_for_method(service, method):
                key = (route.verb, route.aiohttp_path)
                if key in seen:
                    raise ValueError(
                        f"{route.verb} {route.template} is bound by both {seen[key]} "
                        f"and {method.full_name}"
                    )
                seen[key] = method.full_name
                routes.append(route)
    return tuple(routes)


def route_prefixes(routes: Iterable[Route], depth: int = 3) -> list[str]:
    """Where a service's routes live: the leading literal segments, e.g. /api/v1/portfolios."""
    found: list[str] = []
    for route in routes:
        literal: list[str] = []
        for segment in route.template.strip("/").split("/"):
            if "{" in segment or "*" in segment or len(literal) == depth:
                break
            literal.append(segment.split(":", 1)[0])
        prefix = "/" + "/".join(literal)
        if prefix not in found:
            found.append(prefix)
    return found
