"""A field's `buf.validate` rules as JSON Schema keywords, for the OpenAPI document.

The services enforce the same rules with protovalidate (services/runtime/validation.py), so
what the document promises is what the server checks. Rules JSON Schema cannot say (CEL
expressions, bounds on int64 carried as strings) are stated in the field's description.
"""

from __future__ import annotations

import re
from typing import Any

from buf.validate import validate_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

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


def field_rules(fd: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = fd.GetOptions()
    if not options.HasExtension(validate_pb2.field):
        return None
    rules: validate_pb2.FieldRules = options.Extensions[validate_pb2.field]
    return rules


def is_required(fd: FieldDescriptor) -> bool:
    rules = field_rules(fd)
    return rules is not None and rules.required


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
        if rules.repeated.unique:
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
