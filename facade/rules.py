"""A field's `buf.validate` rules as JSON Schema keywords, for the OpenAPI document.

The services enforce the same rules with protovalidate (services/runtime/validation.py), so
what the document promises is what the server checks. Rules JSON Schema cannot say (CEL
expressions, bounds on int64 carried as strings) are stated in the field's description.
"""

from __future__ import annotations

import re
from typing import Any

from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from stockfolio.options.v1 import stream_pb2

from facade.plans import EnumNames

Schema = dict[str, Any]

_NUMERIC_RULES = (
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "fixed32",
    "fixed64",
    "sfixed32",
    "sfixed64",
    "float",
    "double",
)
# Carried as JSON strings (proto3 JSON mapping): JSON Schema bounds do not apply to them.
_STRING_NUMBERS = {"int64", "uint64", "sint64", "fixed64", "sfixed64"}
# A CEL rule of this one form is a pattern with a human message: the document states it as a
# JSON Schema pattern (the same regular expression), or `not` a pattern when negated.
_MATCHES = re.compile(r"^(!?)this\.matches\(r'([^']*)'\)$")
_FORMATS = {"email": "email", "uuid": "uuid", "uri": "uri", "hostname": "hostname"}
# A list's CEL rule `this.unique()` (repeated.unique with a message of our own words): JSON
# Schema's uniqueItems.
_UNIQUE = "this.unique()"
# A message's CEL rule naming fields of which at least one must be given, a nested one through
# its parents: `has(this.cols) || has(this.dimensions.cols)`. JSON Schema's anyOf of requireds.
_JSON_NUMBERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FLOAT,
    FieldDescriptor.TYPE_DOUBLE,
}
_GIVEN = re.compile(r"^has\(this\.([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)\)$")


def field_rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = fd.GetOptions()
    if not options.HasExtension(validate_pb2.field):
        return None
    rules: validate_pb2.FieldRules = options.Extensions[validate_pb2.field]
    return rules


def is_required(fd: FieldDescriptor) -> bool:
    rules = field_rules(fd)
    return rules is not None and rules.required


def is_first_message_required(fd: FieldDescriptor) -> bool:
    """Required on a client stream's first message only (an upload's path): buf.validate checks
    every message alike, so the option says it, and REST's query string is that first message."""
    return bool(fd.GetOptions().Extensions[stream_pb2.first_message_required])


def _has(message: Message, name: str) -> bool:
    return any(f.name == name for f, _ in message.ListFields())


def _keywords(rules: Message, names: dict[str, str]) -> Schema:
    """For each rule in `names` that `rules` sets, its JSON Schema keyword with the rule's value."""
    return {keyword: getattr(rules, rule) for rule, keyword in names.items() if _has(rules, rule)}


def _numeric(kind: str, rules: Message) -> tuple[Schema, list[str]]:
    """minimum/maximum and their exclusive forms; for string-carried numbers, words instead."""
    names = {"gte": "minimum", "gt": "exclusiveMinimum", "lte": "maximum", "lt": "exclusiveMaximum"}
    keywords = _keywords(rules, names)
    values = list(getattr(rules, "in"))
    if values:
        keywords["enum"] = values
    if _has(rules, "const"):
        keywords["const"] = rules.const  # type: ignore[attr-defined]
    if kind not in _STRING_NUMBERS:
        return keywords, []
    words = {
        "minimum": "at least",
        "exclusiveMinimum": "more than",
        "maximum": "at most",
        "exclusiveMaximum": "less than",
    }
    said = [f"{words[k]} {v}" for k, v in keywords.items() if k in words]
    return {}, said


def _string(rules: validate_pb2.StringRules) -> tuple[Schema, list[str]]:
    keywords = _keywords(rules, {"min_len": "minLength", "max_len": "maxLength"})
    said = []
    if _has(rules, "min_bytes"):
        said.append(f"at least {rules.min_bytes} bytes (UTF-8)")
    if _has(rules, "max_bytes"):
        said.append(f"at most {rules.max_bytes} bytes (UTF-8)")
    if _has(rules, "len"):
        keywords["minLength"] = keywords["maxLength"] = rules.len
    patterns = []
    if _has(rules, "pattern"):
        patterns.append(rules.pattern)
    if _has(rules, "prefix"):
        patterns.append("^" + re.escape(rules.prefix))
    if _has(rules, "suffix"):
        patterns.append(re.escape(rules.suffix) + "$")
    if len(patterns) == 1:
        keywords["pattern"] = patterns[0]
    elif patterns:
        keywords["allOf"] = [{"pattern": p} for p in patterns]
    values = list(getattr(rules, "in"))
    if values:
        keywords["enum"] = values
    if _has(rules, "const"):
        keywords["const"] = rules.const
    well_known = rules.WhichOneof("well_known")
    if well_known in _FORMATS:
        keywords["format"] = _FORMATS[well_known]
    return keywords, said


def _enum(rules: validate_pb2.EnumRules, fd: FieldDescriptor) -> Schema:
    """The allowed short names when `in`/`not_in` narrow the enum (names as the codec writes)."""
    allowed = set(getattr(rules, "in"))
    excluded = set(rules.not_in)
    if not allowed and not excluded:
        return {}
    assert fd.enum_type is not None
    names = EnumNames(fd.enum_type)
    return {
        "type": "string",
        "enum": [
            names.short[v.name]
            for v in fd.enum_type.values
            if (not allowed or v.number in allowed) and v.number not in excluded
        ],
    }


def item_keywords(fd: FieldDescriptor, rules: validate_pb2.FieldRules) -> tuple[Schema, str]:
    """Keywords for one value of the field (not the list around it), and words for the rest."""
    kind = rules.WhichOneof("type")
    said: list[str] = []
    keywords: Schema = {}
    if kind in _NUMERIC_RULES:
        keywords, said = _numeric(kind, getattr(rules, kind))
    elif kind == "string":
        keywords, said = _string(rules.string)
    elif kind == "enum":
        keywords = _enum(rules.enum, fd)
    patterns: list[Schema] = []
    if rules.required and fd.type == FieldDescriptor.TYPE_STRING and "minLength" not in keywords:
        keywords["minLength"] = 1  # proto3 has no absent string: required means not empty
    for rule in rules.cel:
        matched = _MATCHES.match(rule.expression)
        if matched is None:
            if rule.message:
                said.append(f"refused when it {rule.message} ({rule.expression})")
            continue
        negated, pattern = matched.groups()
        patterns.append({"not": {"pattern": pattern}} if negated else {"pattern": pattern})
    if len(patterns) == 1 and "pattern" in patterns[0] and "pattern" not in keywords:
        keywords.update(patterns[0])
    elif patterns:
        keywords["allOf"] = [*keywords.get("allOf", []), *patterns]
    return keywords, "; ".join(said)


def list_keywords(rules: validate_pb2.FieldRules) -> Schema:
    kind = rules.WhichOneof("type")
    if kind == "repeated":
        keywords = _keywords(rules.repeated, {"min_items": "minItems", "max_items": "maxItems"})
        if rules.repeated.unique or any(rule.expression == _UNIQUE for rule in rules.cel):
            keywords["uniqueItems"] = True
        return keywords
    if kind == "map":
        return _keywords(rules.map, {"min_pairs": "minProperties", "max_pairs": "maxProperties"})
    return {}


def element_rules(rules: validate_pb2.FieldRules) -> validate_pb2.FieldRules | None:
    """The rules of a repeated field's items, if it declares any."""
    if rules.WhichOneof("type") == "repeated" and rules.repeated.HasField("items"):
        return rules.repeated.items
    return None


def _present(fd: FieldDescriptor) -> Schema | None:
    """What `has(this.<field>)` asks of its JSON value beyond being there: a proto3 scalar
    without presence is not given when it is its zero value. None: not said here (a list, a
    map, an enum, a 64-bit number carried as a string)."""
    if fd.is_repeated:
        return None
    if fd.has_presence:  # a message, or `optional`: given when set, zero or not
        return {}
    if fd.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return {"minLength": 1}
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return {"const": True}
    if fd.type in _JSON_NUMBERS:
        return {"not": {"const": 0}}
    return None


def _given(message: Descriptor, dotted: str) -> Schema | None:
    """`dimensions.cols` as the schema of an object that gives it: required at each level, in
    JSON names. None when a name is not a field of its message (not a rule we can state)."""
    names = dotted.split(".")
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for name in names:
        fd = current.fields_by_name.get(name) if current is not None else None
        if fd is None:
            return None
        fields.append(fd)
        current = fd.message_type
    leaf = fields[-1]
    present = _present(leaf)
    if present is None:
        return None
    schema: Schema = {"required": [leaf.json_name]}
    if present:
        schema["properties"] = {leaf.json_name: present}
    for fd in reversed(fields[:-1]):
        schema = {"required": [fd.json_name], "properties": {fd.json_name: schema}}
    return schema


def message_keywords(message: Descriptor, *, without: set[str]) -> tuple[list[Schema], str]:
    """The message's own CEL rules: each `has(this.a) || has(this.b.c)` (one of them given) as an
    anyOf of requirements, and the others in words. A rule one of whose fields is `without`
    (bound to the path, so always given) says nothing about the body and is left out."""
    options = message.GetOptions()
    if not options.HasExtension(validate_pb2.message):
        return [], ""
    rules: validate_pb2.MessageRules = options.Extensions[validate_pb2.message]
    stated: list[Schema] = []
    said: list[str] = []
    for rule in rules.cel:
        matched = [_GIVEN.match(part.strip()) for part in rule.expression.split("||")]
        paths = [m.group(1) for m in matched if m is not None]
        alternatives = [_given(message, path) for path in paths]
        if len(paths) < len(matched) or None in alternatives:
            if rule.message:
                said.append(f"{rule.message} ({rule.expression})")
            continue
        if not any(path.split(".")[0] in without for path in paths):
            stated.append({"anyOf": alternatives})
    return stated, "; ".join(said)
