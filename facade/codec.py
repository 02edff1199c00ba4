"""JSON <-> protobuf for the transcoded routes: the proto3 JSON mapping plus our wire details.

google.protobuf.json_format does the conversion. Around it: enums travel in their short
lowercase form (TRADE_SIDE_BUY <-> "buy"; either form is accepted on input), path variables and
query parameters fill request fields, and bad input is answered 400/422 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, cast

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from multidict import MultiMapping

from facade.envelope import ApiError
from facade.plans import (
    ENUM,
    MESSAGE,
    SCALAR,
    EnumNames,
    FieldSpec,
    JsonObject,
    MessagePlan,
    Plans,
    message_json,
)
from facade.routes import STRING_WKTS, WRAPPER_WKTS, FieldPath, Route

# Named here too, where routes, rules and the document have always found them.
__all__ = ["EnumNames", "Plans", "RouteCodec", "message_json"]
MAX_DEPTH = 32

_INT_RANGES: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_FLOATS = {FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE}
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def invalid(name: str, description: str) -> ApiError:
    return ApiError.validation(name, description)


# --- request JSON: shape checks and enum aliases ------------------------------------------


def _scalar_error(fd: FieldDescriptor, value: object) -> str | None:
    """What is wrong with a JSON value for a scalar field, if anything (ParseDict does ranges)."""
    cpp = fd.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return None if isinstance(value, str) else "must be a string"
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return None if isinstance(value, bool) else "must be true or false"
    if cpp in _INT_RANGES:
        ok = isinstance(value, int | str) and not isinstance(value, bool)
        return None if ok or isinstance(value, float) else "must be an integer"
    if cpp in _FLOATS:
        ok = isinstance(value, int | float | str) and not isinstance(value, bool)
        return None if ok else "must be a number"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_object(value: JsonObject, plan: MessagePlan, path: str = "", depth: int = 0) -> None:
    """Reject unknown fields and wrong shapes by name; rewrite enum aliases to full names."""
    if depth > MAX_DEPTH:
        raise invalid(path, "is nested too deeply")
    for key, item in value.items():
        spec = plan.by_key.get(key)
        where = _join(path, key)
        if spec is None:
            raise invalid(where, f"is not a field of {plan.descriptor.name} (known: {plan.known})")
        if item is None:
            continue
        if spec.map_value is not None:
            if not isinstance(item, dict):
                raise invalid(where, "must be an object")
            for map_key, map_item in item.items():
                if map_item is not None:
                    item[map_key] = _check_value(
                        map_item, spec.map_value, f"{where}.{map_key}", depth
                    )
        elif spec.repeated:
            if not isinstance(item, list):
                raise invalid(where, "must be a list")
            for index, element in enumerate(item):
                if element is None:
                    raise invalid(f"{where}[{index}]", "must not be null")
                item[index] = _check_value(element, spec, f"{where}[{index}]", depth)
        else:
            value[key] = _check_value(item, spec, where, depth)


def _check_value(value: Any, spec: FieldSpec, where: str, depth: int) -> Any:
    kind = spec.kind
    if kind == ENUM:
        assert spec.enum is not None
        name = spec.enum.resolve(value)
        if name is None:
            raise invalid(where, f"{value!r} is not allowed; {spec.enum.expected()}")
        return name
    if kind == MESSAGE:
        if not isinstance(value, dict):
            raise invalid(where, "must be an object")
        assert spec.message is not None
        check_object(value, spec.message, where, depth + 1)
        return value
    if kind == SCALAR:
        problem = _scalar_error(spec.field, value)
        if problem is not None:
            raise invalid(where, problem)
    return value


# --- ParseDict errors, named -------------------------------------------------------------

_AT = re.compile(r" at \"?([A-Za-z_]\w*((?:\.\w+|\[\d+\])*))\"?")
_FAILED = re.compile(r"Failed to parse (\S+) field: ")
_DESCRIPTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"out of range", re.I), "is out of range"),
    (re.compile(r"integer|int\(\)", re.I), "must be an integer"),
    (re.compile(r"float|NaN", re.I), "must be a number"),
    (
        re.compile(r"timestamp|timezone", re.I),
        "must be an RFC 3339 time such as 2024-01-31T09:30:00Z",
    ),
    (re.compile(r"duration", re.I), "must be a duration such as 1.5s"),
    (re.compile(r"surrogate|utf-?8|unicode", re.I), "must be valid Unicode text"),
    (re.compile(r"base64|padding", re.I), "must be base64"),
)


def describe_parse_error(error: Exception) -> ApiError:
    """Name the field a json_format.ParseError is about, with a plain description."""
    text = str(error)
    located = [m.group(2).lstrip(".") for m in _AT.finditer(text)]
    names = _FAILED.findall(text)
    where = max(located, key=len) if located and any(located) else ".".join(names)
    deepest: BaseException = error
    while deepest.__cause__ is not None:
        deepest = deepest.__cause__
    detail = _AT.split(str(deepest), maxsplit=1)[0].strip().rstrip(".")
    description = next((d for p, d in _DESCRIPTIONS if p.search(detail)), f"is invalid: {detail}")
    return invalid(where or "body", description)


# --- query strings and path variables ----------------------------------------------------


def parse_text(fd: FieldDescriptor, text: str, name: str, enums: Plans) -> Any:
    """A path or query value for a scalar, enum or string-valued well-known type field."""
    cpp = fd.cpp_type
    if fd.enum_type is not None:
        names = enums.enum(fd.enum_type)
        found = names.resolve(text)
        if found is None:
            raise invalid(name, f"{text!r} is not allowed; {names.expected()}")
        return names.number_by_name[found]
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if fd.type == FieldDescriptor.TYPE_BYTES:
            try:
                return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                raise invalid(name, "must be base64") from None
        return text
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise invalid(name, "must be true or false")
    if cpp in _INT_RANGES:
        low, high = _INT_RANGES[cpp]
        try:
            number = int(text)
        except ValueError:
            raise invalid(name, "must be an integer") from None
        if not low <= number <= high:
            raise invalid(name, "is out of range")
        return number
    if cpp in _FLOATS:
        try:
            return float(text)
        except ValueError:
            raise invalid(name, "must be a number") from None
    raise invalid(name, "cannot be given here")


def _set_well_known(target: Message, text: str, name: str, enums: Plans) -> None:
    full_name = target.DESCRIPTOR.full_name
    if full_name in WRAPPER_WKTS:
        value_field = cast(FieldDescriptor, target.DESCRIPTOR.fields_by_name["value"])
        setattr(target, "value", parse_text(value_field, text, name, enums))  # noqa: B010
        return
    if full_name == "google.protobuf.Timestamp" and _DATE_ONLY.match(text):
        text += "T00:00:00Z"  # a plain date means its start, in UTC
    try:
        getattr(target, "FromJsonString")(text)  # noqa: B009 - not on the Message base type
    except ValueError:
        if full_name == "google.protobuf.Timestamp":
            raise invalid(name, "must be an RFC 3339 time such as 2024-01-31T09:30:00Z") from None
        raise invalid(name, "is malformed") from None


def assign(message: Message, path: FieldPath, text: str, name: str, enums: Plans) -> None:
    """Set (or, for repeated fields, append) one field from one text value."""
    holder: Any = message
    for fd in path.fields[:-1]:
        holder = getattr(holder, fd.name)
    leaf = path.leaf
    if leaf.message_type is not None:
        target = (
            getattr(holder, leaf.name).add() if leaf.is_repeated else getattr(holder, leaf.name)
        )
        _set_well_known(target, text, name, enums)
        return
    value = parse_text(leaf, text, name, enums)
    if leaf.is_repeated:
        getattr(holder, leaf.name).append(value)
    else:
        setattr(holder, leaf.name, value)


# --- one route's codec -------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ApiError(400, "BAD_REQUEST", f"malformed JSON: {_why(error)}") from None


def _why(error: ValueError | RecursionError) -> str:
    """What the parser refused, in words that send the client to the right fix."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "not valid UTF-8"
    if isinstance(error, json.JSONDecodeError):
        return str(error)
    return "a number too long" if "digits" in str(error) else str(error)


def _pop_path(value: JsonObject, path: FieldPath) -> None:
    """Drop a path-bound field from the body (the path wins), by either of its names."""
    holder: Any = value
    for fd in path.fields[:-1]:
        holder = holder.get(fd.json_name, holder.get(fd.name)) if isinstance(holder, dict) else None
    if isinstance(holder, dict):
        holder.pop(path.leaf.json_name, None)
        holder.pop(path.leaf.name, None)


# Replies up to this size, this many per route, have their JSON remembered (see encode_raw).
_MEMO_MAX_BYTES = 4096
_MEMO_ENTRIES = 1024


class RouteCodec:
    """Builds one route's request from path, query and body, and shapes its response."""

    def __init__(self, route: Route, plans: Plans) -> None:
        self.route = route
        self._plans = plans
        self.request_class: type[Message] = message_factory.GetMessageClass(route.method.input_type)
        self.response_class: type[Message] = message_factory.GetMessageClass(
            route.method.output_type
        )
        self._request_plan = plans.plan(route.method.input_type)
        self._response_plan = plans.plan(route.method.output_type)
        self._memo: dict[bytes, tuple[Any, dict[str, int] | None]] = {}
        self._variables = tuple((v.placeholder, v.field) for v in route.variables)
        body_field = route.body_field
        self._body_key = body_field.json_name if body_field is not None else ""
        self._body_is_object = route.body == "*" or (
            body_field is not None
            and body_field.message_type is not None
            and not body_field.is_repeated
            and body_field.message_type.full_name not in STRING_WKTS | WRAPPER_WKTS
        )
        response_field = route.response_field
        self._data_key = response_field.json_name if response_field is not None else ""
        self._query_names = sorted(
            name
            for name, path in route.query.items()
            if name == ".".join(f.json_name for f in path.fields)
        )
        self._singular: frozenset[str] = frozenset(
            name for name, path in route.query.items() if not path.leaf.is_repeated
        )

    # request

    def decode(
        self, match_info: Mapping[str, str], query: MultiMapping[str], body: bytes
    ) -> Message:
        message = self.request_class()
        if self.route.body and body.strip():
            self._read_body(message, parse_json(body))
        if query:
            self._read_query(message, query)
        for placeholder, path in self._variables:
            assign(message, path, match_info[placeholder], path.name, self._plans)
        return message

    def _read_body(self, message: Message, value: Any) -> None:
        if self._body_is_object and not isinstance(value, dict):
            raise ApiError(400, "BAD_REQUEST", "the request body must be a JSON object")
        if self._body_key:
            value = {self._body_key: value}
        else:
            for _, path in self._variables:
                _pop_path(value, path)
        check_object(value, self._request_plan)
        try:
            json_format.ParseDict(value, message)
        except json_format.ParseError as error:
            raise describe_parse_error(error) from None

    def _read_query(self, message: Message, query: MultiMapping[str]) -> None:
        unknown: list[str] = []
        seen: set[str] = set()
        for name, text in query.items():
            path = self.route.query.get(name)
            if path is None:
                unknown.append(name)
                continue
            if name in self._singular:
                if name in seen:
                    raise invalid(name, "is given more than once")
                seen.add(name)
            assign(message, path, text, name, self._plans)
        if unknown:
            names = sorted(set(unknown))
            known = self._query_names
            hint = f" (known: {', '.join(known)})" if known else " (this route takes none)"
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"unknown query parameter{'s' if len(names) > 1 else ''}: {', '.join(names)}{hint}",
                fields=[(n, "is not a parameter of this route") for n in names],
            )

    # response

    def encode_raw(self, raw: bytes) -> tuple[Any, dict[str, int] | None]:
        """`encode` for a reply still in wire form, remembering recent small replies.

        Reading a profile or a quote returns the same bytes again and again, and protobuf's
        JSON conversion is the facade's largest share of CPU on such routes (measured ~70 us of
        ~300 us per call). The JSON is a pure function of the bytes, so a bounded memo keyed by
        them is exact; callers only serialize what they get, never mutate it.
        """
        if len(raw) > _MEMO_MAX_BYTES:
            return self.encode(self.response_class.FromString(raw))
        found = self._memo.get(raw)
        if found is None:
            found = self.encode(self.response_class.FromString(raw))
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            self._memo[raw] = found
        return found

    def encode(self, reply: Message) -> tuple[Any, dict[str, int] | None]:
        """The envelope's data (the response, or its response_body field) and pagination."""
        data = message_json(reply, self._response_plan)
        pagination = None
        if self.route.paginated and data.pop("pagination", None) is not None:
            page: Any = getattr(reply, "pagination")  # noqa: B009
            pagination = {
                "page": page.page,
                "limit": page.limit,
                "total": page.total,
                "totalPages": page.total_pages,
            }
        if self._data_key:
            return data.get(self._data_key), pagination
        return data, pagination
