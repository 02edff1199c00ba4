"""The OpenAPI 3.1 document, generated from the same route table the facade serves.

One source: a route added in the protos appears here as it appears in the router. Schemas come
from the message descriptors with the wire details of codec.py (lowerCamelCase names, int64 as
strings, enums as their short lowercase values). The hand-written part (the facade's own routes,
the shared schemas) is in openapi_static.py, the /docs page in docs_page.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from facade.docs_page import DOCS_CSP, docs_page
from facade.keys import CONFIG, DOCS, OPENAPI
from facade.openapi_static import BEARER, Schema, facade_paths, ref, shared_schemas, success
from facade.plans import EnumNames
from facade.routes import DOMAIN_APIS, WRAPPER_WKTS, FieldPath, Route, is_map, map_value
from facade.rules import (
    element_rules,
    field_rules,
    is_first_message_required,
    is_required,
    item_keywords,
    list_keywords,
    message_keywords,
)

_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_UINT32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UINT64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
}


def humanize(name: str) -> str:
    """ListUsers -> "List users"."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\b)|[A-Z]?[a-z0-9]+|[A-Z]+", name)
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else name


class Schemas:
    """components/schemas, filled as messages and enums are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}

    def enum(self, enum: EnumDescriptor) -> Schema:
        if enum.full_name not in self.components:
            self.components[enum.full_name] = {
                "type": "string",
                "enum": list(EnumNames(enum).choices),
                "description": "Also accepted on input: the full value name "
                f"(e.g. {enum.values[-1].name}), in any case.",
            }
        return ref(enum.full_name)

    def message(self, message: Descriptor) -> Schema:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name in WRAPPER_WKTS:
            inner = self.field(message.fields_by_name["value"])
            return {
                "type": [inner.get("type", "string"), "null"],
                **{k: v for k, v in inner.items() if k != "type"},
            }
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # placeholder: recursive types end here
            self.components[message.full_name] = self.object(message)
        return ref(message.full_name)

    def object(
        self, message: Descriptor, *, without: Iterable[str] = (), closed: bool = False
    ) -> Schema:
        """A message as a JSON object. `closed`: as a request reads it, where the facade
        refuses a field the message does not have (a 422 naming it), so the document says so
        (`additionalProperties: false`, nested messages too); responses stay open, as a
        client should read them."""
        skipped = set(without)
        fields = [f for f in message.fields if f.name not in skipped]
        schema: Schema = {
            "type": "object",
            "properties": {f.json_name: self.field(f, closed=closed) for f in fields},
        }
        required = [f.json_name for f in fields if is_required(f)]
        if required:
            schema["required"] = required
        # Rules across fields (one of several given): each an anyOf of requireds.
        given, words = message_keywords(message, without=skipped)
        if len(given) == 1:
            schema.update(given[0])
        elif given:
            schema["allOf"] = given
        if words:
            schema["description"] = words
        if closed:
            schema["additionalProperties"] = False
        return schema

    def request(self, message: Descriptor) -> Schema:
        """A request message as a body: a closed object, registered once."""
        name = message.full_name
        if name not in self.components:
            self.components[name] = {}
            self.components[name] = self.object(message, closed=True)
        return ref(name)

    def field(self, fd: FieldDescriptor, *, closed: bool = False) -> Schema:
        """A field's schema with its buf.validate rules, as the services enforce them."""
        rules = field_rules(fd)
        if is_map(fd):
            value = self.field(map_value(fd), closed=closed)
            schema: Schema = {"type": "object", "additionalProperties": value}
        elif fd.is_repeated:
            items = rules and element_rules(rules)
            single = self.single(fd, closed=closed)
            schema = {"type": "array", "items": _narrowed(single, fd, items)}
        else:
            return _narrowed(self.single(fd, closed=closed), fd, rules)
        return {**schema, **list_keywords(rules)} if rules else schema

    def single(self, fd: FieldDescriptor, *, closed: bool = False) -> Schema:
        if fd.enum_type is not None:
            return self.enum(fd.enum_type)
        if fd.message_type is not None:
            nested = fd.message_type
            if closed and not _is_well_known(nested):
                # Inline: the same message elsewhere (a response) stays open.
                return self.object(nested, closed=True)
            return self.message(nested)
        kind = fd.type
        if kind in _INT32:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32:
            return {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": r"^-?\d+$"}
        if kind in _UINT64:
            return {"type": "string", "format": "uint64", "pattern": r"^\d+$"}
        if kind == FieldDescriptor.TYPE_DOUBLE:
            return {"type": "number", "format": "double"}
        if kind == FieldDescriptor.TYPE_FLOAT:
            return {"type": "number", "format": "float"}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}


def _is_well_known(message: Descriptor) -> bool:
    return message.full_name in _WELL_KNOWN or message.full_name in WRAPPER_WKTS


def _narrowed(schema: Schema, fd: FieldDescriptor, rules: Any) -> Schema:
    """`schema` with the rules' keywords; an enum narrowed by them replaces its shared $ref."""
    if not rules:
        return schema
    keywords, words = item_keywords(fd, rules)
    if "$ref" in schema and keywords:
        schema = keywords if "enum" in keywords else {"allOf": [schema, keywords]}
    else:
        schema = {**schema, **keywords}
    if words:
        schema["description"] = words
    return schema


def openapi_path(route: Route) -> str:
    """`/api/v1/files/{path=**}` -> `/api/v1/files/{path}`."""
    return re.sub(r"\{([^}=]+)(=[^}]*)?\}", r"{\1}", route.template)


def _parameter(
    name: str,
    where: str,
    path: FieldPath,
    schemas: Schemas,
    *,
    first_message: bool = False,
    **extra: Any,
) -> Schema:
    """`first_message`: the parameter goes into a client stream's first message (a streamed
    body's query string), where a field may be required though later messages leave it empty."""
    leaf = path.leaf
    schema = schemas.field(leaf)
    required = where == "path" or is_required(leaf)
    if first_message and is_first_message_required(leaf):
        required = True
        if leaf.type == FieldDescriptor.TYPE_STRING and "minLength" not in schema:
            schema = {**schema, "minLength": 1}  # a string's absence is its emptiness
    parameter: Schema = {"name": name, "in": where, "required": required, "schema": schema}
    if leaf.is_repeated:
        parameter.update(style="form", explode=True)
        parameter["description"] = f"Repeat the parameter for several values ({name}=a&{name}=b)."
    parameter.update(extra)
    return parameter


def _parameters(route: Route, schemas: Schemas) -> list[Schema]:
    found = []
    for variable in route.variables:
        extra: dict[str, Any] = {}
        if variable.multi_segment:
            extra["description"] = "May contain '/' (several path segments)."
        found.append(_parameter(variable.field.name, "path", variable.field, schemas, **extra))
    for name, path in sorted(route.query.items()):
        if name == ".".join(f.json_name for f in path.fields):
            first = route.streamed_body and len(path.fields) == 1
            found.append(_parameter(name, "query", path, schemas, first_message=first))
    return found


def _request_body(route: Route, schemas: Schemas) -> Schema | None:
    if not route.body:
        return None
    message = route.method.input_type
    if route.streamed_body:
        return {
            "description": "The raw bytes, streamed to the service in chunks as they arrive "
            "(at most MAX_UPLOAD_BYTES, 20 MB by default; more is 413).",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    if route.body == "*":
        bound = {v.field.fields[0].name for v in route.variables if len(v.field.fields) == 1}
        fields = [f for f in message.fields if f.name not in bound]
        schema = (
            schemas.object(message, without=bound, closed=True)
            if bound
            else schemas.request(message)
        )
        given = bool(message_keywords(message, without=bound)[0])
    else:
        fields = [message.fields_by_name[route.body]]
        schema = schemas.field(fields[0], closed=True)
        given = False
    body: Schema = {"content": {"application/json": {"schema": schema}}}
    if any(is_required(f) for f in fields) or given:
        # Without a body, a required field (or one of several) is missing: the body is required.
        body["required"] = True
    return body


def _data_schema(route: Route, schemas: Schemas) -> Schema:
    response_field = route.response_field
    if response_field is not None:
        return schemas.field(response_field)
    if route.paginated:
        return schemas.object(route.method.output_type, without=["pagination"])
    return schemas.message(route.method.output_type)


STREAM_ERRORS = (
    "A call that fails before the stream starts is answered with the error envelope and its "
    "status (never a 200). A failure after that ends the stream with an error record holding "
    "the envelope's `error` object"
)


def _stream(route: Route, schemas: Schemas) -> Schema:
    """A server-streaming route's 200: a raw body, or messages as NDJSON or SSE."""
    if route.raw_body:
        response: Schema = {
            "description": "The body, streamed in chunks as the service writes it; its content "
            "type is the service's (e.g. text/csv). The envelope answers a call that fails "
            "before the first chunk; one that fails later is cut off before the final chunk "
            "(a truncated transfer, never a complete-looking file).",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
        if route.download_name:
            response["headers"] = {
                "Content-Disposition": {
                    "description": f'attachment; filename="{route.download_name}.<extension '
                    'of the content type>"',
                    "schema": {"type": "string"},
                }
            }
        return response
    item = _data_schema(route, schemas)
    return {
        "description": "A stream of messages, each written as itself (no wrapper): "
        "newline-delimited JSON (one message per line), or Server-Sent Events with "
        "`Accept: text/event-stream` (`event: message`, `data: <message>`; comment lines "
        f"are heartbeats). {STREAM_ERRORS}: NDJSON a last line "
        '`{"error": CODE, "message": ..., "details"?: {...}}`, '
        "SSE an `event: error` whose data is that object.",
        "content": {
            "application/x-ndjson": {"schema": item, "x-error-record": ref("StreamError")},
            "text/event-stream": {"schema": {"type": "string"}, "x-message-schema": item},
        },
    }


def _auth_text(route: Route) -> str:
    if route.public:
        return "Public: no token needed."
    text = "Needs `Authorization: Bearer <access token>`."
    if route.rule.required_role:
        text += f" Requires the `{route.rule.required_role}` role."
    return text


def operation(route: Route, schemas: Schemas) -> Schema:
    op: Schema = {
        "operationId": route.operation_id,
        "summary": humanize(route.method.name),
        "description": f"{_auth_text(route)} gRPC: `{route.method.full_name}`.",
        "tags": [route.service],
        "parameters": _parameters(route, schemas),
    }
    body = _request_body(route, schemas)
    if body is not None:
        op["requestBody"] = body
    if route.streaming:
        answer = _stream(route, schemas)
    else:
        answer = success(
            _data_schema(route, schemas), "Success, in the envelope", paginated=route.paginated
        )
    op["responses"] = {
        str(route.success_status): answer,
        "default": {"$ref": "#/components/responses/Error"},
    }
    if not route.public:
        op["security"] = BEARER
    if route.rule.required_role:
        op["x-required-role"] = route.rule.required_role
    op["x-grpc-method"] = route.method.full_name
    return op


def build_openapi(routes: Sequence[Route], *, version: str = "0.1.0") -> Schema:
    schemas = Schemas()
    paths: dict[str, Schema] = {}
    for route in routes:
        paths.setdefault(openapi_path(route), {})[route.verb.lower()] = operation(route, schemas)
    paths.update(facade_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stockfolio API",
            "version": version,
            "description": "REST facade over Stockfolio's gRPC services. Every JSON response "
            "is an envelope: {success, data?, error?, message?, timestamp, correlationId, "
            "service}; lists add pagination. No text field takes the character U+0000 "
            "(PostgreSQL cannot store it): a request with one is a 400 naming the field, "
            "except a file's content and a terminal's input, taken as typed.",
        },
        "tags": [{"name": name} for name in [*DOMAIN_APIS, "facade"]],
        "paths": paths,
        "components": {
            "schemas": {**shared_schemas(), **schemas.components},
            "responses": {
                "Error": {
                    "description": "An error, in the envelope",
                    "content": {"application/json": {"schema": ref("ErrorEnvelope")}},
                }
            },
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def render(routes: Sequence[Route]) -> tuple[bytes, bytes]:
    """The OpenAPI JSON and the docs page, built once at start."""
    spec = build_openapi(routes)
    return json.dumps(spec, separators=(",", ":")).encode(), docs_page(spec).encode()


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def docs(request: web.Request) -> web.Response:
    """The interactive reference is the web app's explorer (Swagger UI in the app's bundle, with
    the signed-in user's token): /docs sends the browser there; `?static` (or a facade without a
    FRONTEND_URL) keeps this self-contained route table."""
    origins = request.app[CONFIG].frontend_origins
    if origins and "static" not in request.query:
        # Returned, not raised: the edge renders raised HTTP errors as envelopes.
        return web.Response(status=302, headers={"Location": f"{origins[0]}/explorer"})
    return web.Response(
        body=request.app[DOCS],
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": DOCS_CSP},
    )
