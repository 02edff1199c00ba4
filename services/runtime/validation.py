"""Request validation from the protos' own `buf.validate` rules (protovalidate).

The rules are declared once, on the fields in protos/, and read twice: here, by every service
before its handler runs, and by the facade's OpenAPI generator, which states them in the
document. The two cannot drift. Handlers keep only the checks that need state (a name taken,
a file that exists, a balance).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import protovalidate
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from stockfolio.options.v1 import text_pb2

from services.runtime.errors import InvalidArgument

log = logging.getLogger("stockfolio.validation")

# One validator per process: it caches the compiled rules of every message type it has seen.
_VALIDATOR = protovalidate.Validator()


def json_name(name: str) -> str:
    """protoc's default json_name: `total_pages` -> `totalPages` (what clients send and see)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _field_path(violation: protovalidate.Violation) -> str:
    """`dimensions.cols`, `items[2].symbol`, `labels["a"]`: the path a JSON client sent."""
    path = ""
    field = violation.proto.field
    for element in field.elements if field is not None else ():
        name = json_name(element.field_name)
        path = f"{path}.{name}" if path else name
        subscript = element.subscript
        if subscript is not None:
            key = subscript.value
            path += f'["{key}"]' if isinstance(key, str) else f"[{key}]"
    return path or "request"


# protovalidate's words for bounds, said the way our own messages say them.
_BOUNDS = (
    (
        re.compile(r"^must be greater than or equal to (\S+) and less than or equal to (\S+)$"),
        r"must be between \1 and \2",
    ),
    (re.compile(r"^must be greater than or equal to (\S+)$"), r"must be at least \1"),
    (re.compile(r"^must be less than or equal to (\S+)$"), r"must be at most \1"),
)


def _description(violation: protovalidate.Violation) -> str:
    rule_id = violation.proto.rule_id or ""
    choices = violation.rule_value
    if rule_id.endswith(".in") and isinstance(choices, list):
        # "must be in list [, csv, json]" says less than the choices by name.
        named = [str(c) for c in choices if c != ""]
        empty = " (or empty)" if len(named) < len(choices) else ""
        return f"must be one of: {', '.join(named)}{empty}"
    text = violation.proto.message or rule_id or "is invalid"
    # protovalidate says "value is required" / "value must be ..."; the field is named beside it.
    text = text.removeprefix("value ")
    for pattern, replacement in _BOUNDS:
        text = pattern.sub(replacement, text)
    return text


NUL = "\x00"
NUL_REFUSED = "must not contain the NUL character (U+0000)"


def _text_fields(descriptor: Any) -> tuple[frozenset[str], frozenset[str]]:
    """The message's string fields that refuse U+0000, and its message fields (to look into)."""
    known = _TEXT_FIELDS.get(descriptor.full_name)
    if known is None:
        strings = frozenset(
            f.name
            for f in descriptor.fields
            if f.type == FieldDescriptor.TYPE_STRING
            and not f.GetOptions().Extensions[text_pb2.raw_text]
        )
        messages = frozenset(
            f.name for f in descriptor.fields if f.type == FieldDescriptor.TYPE_MESSAGE
        )
        known = _TEXT_FIELDS[descriptor.full_name] = (strings, messages)
    return known


_TEXT_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


def nul_violations(message: Message, path: str = "") -> list[tuple[str, str]]:
    """Every string of `message` (nested ones, list items and map keys and values included)
    that holds U+0000, unless its field is `raw_text`: PostgreSQL's text cannot store it, so
    it would fail as a 500 deep in a handler instead of a 400 here."""
    strings, messages = _text_fields(message.DESCRIPTOR)
    found: list[tuple[str, str]] = []
    for field, value in message.ListFields():
        name = f"{path}.{json_name(field.name)}" if path else json_name(field.name)
        if field.name in strings:
            items = value if field.is_repeated else (value,)
            found.extend((name, NUL_REFUSED) for item in items if NUL in item)
        elif field.name in messages:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                found.extend(_nul_in_map(field, value, name))
            elif field.is_repeated:
                for i, item in enumerate(value):
                    found.extend(nul_violations(item, f"{name}[{i}]"))
            else:
                found.extend(nul_violations(value, name))
    return found


def _nul_in_map(field: FieldDescriptor, entries: Any, name: str) -> list[tuple[str, str]]:
    entry = field.message_type
    assert entry is not None  # a map field's entry type
    key_type = entry.fields_by_name["key"].type
    value_field = entry.fields_by_name["value"]
    found: list[tuple[str, str]] = []
    for key, value in entries.items():
        at = f'{name}["{key.replace(NUL, "")}"]' if isinstance(key, str) else f"{name}[{key}]"
        if key_type == FieldDescriptor.TYPE_STRING and NUL in key:
            found.append((at, NUL_REFUSED))
        if value_field.type == FieldDescriptor.TYPE_STRING and NUL in value:
            found.append((at, NUL_REFUSED))
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            found.extend(nul_violations(value, at))
    return found


def violations(message: Message) -> list[tuple[str, str]]:
    """Each broken rule as (field, description); empty when the message is valid."""
    try:
        found = _VALIDATOR.collect_violations(message)
    except (protovalidate.CompilationError, protovalidate.EvaluationError):
        # A rule that cannot compile is our bug, not the caller's: fail loudly, as a 500 would.
        log.exception("validation rules of %s failed", message.DESCRIPTOR.full_name)
        raise
    listed = [(_field_path(v), _description(v)) for v in found]
    named = {field for field, _ in listed}
    return listed + [v for v in nul_violations(message) if v[0] not in named]


def validate(message: Message) -> None:
    """Raise InvalidArgument (VALIDATION_ERROR, one violation per field) if a rule is broken."""
    found = violations(message)
    if found:
        sentence = "; ".join(f"{field}: {description}" for field, description in found)
        raise InvalidArgument(sentence, fields=found)


class Validated:
    """A client stream whose every message is checked as it arrives. A message the rules
    refuse raises InvalidArgument from its `anext`, and the stream goes on after it: a
    servicer that answers a bad frame (a terminal's resize) reads on; one that does not ends
    the call with the error, as before."""

    def __init__(self, requests: AsyncIterator[Any]) -> None:
        self._requests = aiter(requests)

    def __aiter__(self) -> Validated:
        return self

    async def __anext__(self) -> Any:
        request = await anext(self._requests)
        if isinstance(request, Message):
            validate(request)
        return request


def validated(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    return Validated(requests)
