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
from google.protobuf.message import Message

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


def violations(message: Message) -> list[tuple[str, str]]:
    """Each broken rule as (field, description); empty when the message is valid."""
    try:
        found = _VALIDATOR.collect_violations(message)
    except (protovalidate.CompilationError, protovalidate.EvaluationError):
        # A rule that cannot compile is our bug, not the caller's: fail loudly, as a 500 would.
        log.exception("validation rules of %s failed", message.DESCRIPTOR.full_name)
        raise
    return [(_field_path(v), _description(v)) for v in found]


def validate(message: Message) -> None:
    """Raise InvalidArgument (VALIDATION_ERROR, one violation per field) if a rule is broken."""
    found = violations(message)
    if found:
        sentence = "; ".join(f"{field}: {description}" for field, description in found)
        raise InvalidArgument(sentence, fields=found)


async def validated(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose every message is checked as it arrives."""
    async for request in requests:
        if isinstance(request, Message):
            validate(request)
        yield request
