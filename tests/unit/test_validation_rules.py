"""The protos' buf.validate rules: what the services refuse and what the document states agree.

The rules are declared once, on the proto fields. The services check them with protovalidate
before any handler runs; the OpenAPI generator states them as JSON Schema keywords. These
tests hold the two together: a value the document allows is one the service accepts, and a
value outside a stated bound is refused, naming the field as a JSON client spells it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, cast

import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stockfolio.assistant.v1 import assistant_pb2
from stockfolio.portfolio.v1 import portfolio_pb2
from stockfolio.terminal.v1 import terminal_pb2
from stockfolio.users.v1 import users_pb2
from stockfolio.workspace.v1 import workspace_pb2

from facade.openapi import build_openapi
from facade.routes import build_routes
from facade.rules import field_rules
from services.runtime.errors import InvalidArgument
from services.runtime.validation import json_name, nul_violations, validate, violations

SPEC = build_openapi(build_routes())
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]


def ruled_string_fields() -> Iterator[tuple[Descriptor, FieldDescriptor, dict[str, Any]]]:
    """Every singular string field of a documented request message that carries rules."""
    for name, schema in SCHEMAS.items():
        if not name.startswith("stockfolio.") or not name.endswith("Request"):
            continue
        message = cast(Descriptor, GetMessageClass(_descriptor(name)).DESCRIPTOR)
        for fd in cast(list[FieldDescriptor], message.fields):
            if fd.type != FieldDescriptor.TYPE_STRING or fd.is_repeated:
                continue
            if field_rules(fd) is not None and fd.json_name in schema["properties"]:
                yield message, fd, schema["properties"][fd.json_name]


def _descriptor(full_name: str) -> Descriptor:
    from google.protobuf import descriptor_pool

    return descriptor_pool.Default().FindMessageTypeByName(full_name)


RULED = [
    pytest.param(m, fd, prop, id=f"{m.name}.{fd.name}") for m, fd, prop in ruled_string_fields()
]


def _with(message: Descriptor, fd: FieldDescriptor, value: str) -> Message:
    instance = GetMessageClass(message)()
    setattr(instance, fd.name, value)
    return instance


def _field_violations(message: Message, field: str) -> list[str]:
    return [d for f, d in violations(message) if f == field]


def ecma(pattern: str) -> str:
    """JSON Schema patterns are ECMA-262, where `$` is the end of the text; in Python it also
    matches before a final newline, so every unescaped `$` (one ends each alternative of
    `^ *$|^...$`) is read as `\\Z` here."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def doc_allows(schema: dict[str, Any], value: str) -> bool:
    """What the document says of a string, with JSON Schema's meaning of each keyword used,
    and its one rule for every text field (in `info.description`): no U+0000."""
    if "\x00" in value and "U+0000" in SPEC["info"]["description"]:
        return False
    if "pattern" in schema and re.search(ecma(schema["pattern"]), value) is None:
        return False
    if "not" in schema and doc_allows(schema["not"], value):
        return False
    if not all(doc_allows(part, value) for part in schema.get("allOf", [])):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    return bool(schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)))


def _candidates(prop: dict[str, Any]) -> st.SearchStrategy[str]:
    """Mostly strings of the document's own pattern (where it has one), and random text."""
    patterns = [prop.get("pattern")] + [p.get("pattern") for p in prop.get("allOf", [])]
    shaped = [st.from_regex(p, fullmatch=True) for p in patterns if p]
    return st.one_of(
        *shaped, st.text(max_size=24), st.sampled_from(["", " ", "a", "-a", "..", "/a"])
    )


def test_there_are_ruled_fields_to_check() -> None:
    names = {p.id for p in RULED}
    assert {
        "CreateTradeRequest.quantity",
        "RegisterRequest.email",
        "CreateFileRequest.path",
    } <= names


@pytest.mark.parametrize(("message", "fd", "prop"), RULED)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_document_and_the_service_agree(
    message: Descriptor, fd: FieldDescriptor, prop: dict[str, Any], data: st.DataObject
) -> None:
    value = data.draw(_candidates(prop))
    refused = bool(_field_violations(_with(message, fd, value), fd.json_name))
    if doc_allows(prop, value):
        # Bytes limits are stated in words only; within them, what the document allows passes.
        assert not refused or len(value.encode()) > len(value), value
    else:
        # Python's \s is wider than RE2's: a document pattern may refuse a non-ASCII value
        # the service takes; never the other way round.
        assert refused or re.search(r"[^\x00-\x7f]|\n$", value), value


def test_numbers_are_bounded_as_documented() -> None:
    params = {p["name"]: p["schema"] for p in SPEC["paths"]["/api/v1/trades"]["get"]["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 100)
    request = portfolio_pb2.ListTradesRequest(limit=101, page=-2)
    assert violations(request) == [
        ("page", "must be at least 1"),
        ("limit", "must be between 1 and 100"),
    ]
    # 0 is proto3's "absent": the service's default, not a violation.
    assert violations(portfolio_pb2.ListTradesRequest(limit=0, page=0)) == []


def test_violations_name_fields_as_json_clients_spell_them() -> None:
    request = users_pb2.UpdateUserRequest(
        id="u", roles=[users_pb2.ROLE_UNSPECIFIED, users_pb2.Role.ValueType(7)]
    )
    assert violations(request) == [
        ("roles[0]", "must not be in list [0]"),
        ("roles[1]", "must be one of the defined enum values"),
    ]
    assert violations(
        portfolio_pb2.CreateTradeRequest(side=portfolio_pb2.TRADE_SIDE_BUY, quantity="1")
    ) == [("portfolioId", "is required")]
    assert json_name("total_pages") == "totalPages"


def test_required_and_enums_are_stated_and_checked() -> None:
    schema = SCHEMAS["stockfolio.portfolio.v1.CreateTradeRequest"]
    assert set(schema["required"]) == {"portfolioId", "side", "quantity"}
    # The unspecified side is refused, so the document does not offer it.
    assert "unspecified" not in schema["properties"]["side"]["enum"]
    assert set(schema["properties"]["side"]["enum"]) == {
        "buy",
        "sell",
        "dividend",
        "deposit",
        "withdrawal",
    }
    with pytest.raises(InvalidArgument) as caught:
        validate(portfolio_pb2.CreateTradeRequest(portfolio_id="p", quantity="1"))
    assert caught.value.fields == [("side", "is required")]
    assert caught.value.reason == "VALIDATION_ERROR"


def test_negated_patterns_are_stated_as_not() -> None:
    create_file = _descriptor("stockfolio.workspace.v1.CreateFileRequest")
    path = SCHEMAS[create_file.full_name]["properties"]["path"]
    assert {"not": {"pattern": "^/"}} in path["allOf"]
    request = _with(create_file, create_file.fields_by_name["path"], "a/../b")
    assert _field_violations(request, "path") == ["must not have '.' or '..' segments"]


def test_choices_are_named_and_stated() -> None:
    params = {
        p["name"]: p["schema"] for p in SPEC["paths"]["/api/v1/performance"]["get"]["parameters"]
    }
    assert params["range"]["enum"] == ["", "1m", "3m", "6m", "1y", "ytd", "all"]
    assert violations(portfolio_pb2.GetPerformanceRequest(portfolio_id="p", range="2y")) == [
        ("range", "must be one of: 1m, 3m, 6m, 1y, ytd, all (or empty)")
    ]


def test_the_risk_free_rate_is_a_yearly_fraction_the_document_states_whole() -> None:
    # Its whole rule is the pattern (above -1, below 1, at most 8 places), so a schema-valid
    # rate is never refused: GET /api/v1/performance needs no entry in tools/fuzz.py's
    # ALLOWED_REJECTIONS for it.
    params = {
        p["name"]: p["schema"] for p in SPEC["paths"]["/api/v1/performance"]["get"]["parameters"]
    }
    pattern = re.compile(params["riskFreeRate"]["pattern"])
    for good in ("", "0", "0.04", ".04", "-0.005", "+0.5", "-0.99999999", " 0.04 "):
        assert pattern.search(good), good
        request = portfolio_pb2.GetPerformanceRequest(portfolio_id="p", risk_free_rate=good)
        assert violations(request) == []
    for bad in ("1", "-1", "1.5", "4%", "0.04e0", "0.123456789", ".", "-", "abc"):
        assert not pattern.search(bad), bad
        request = portfolio_pb2.GetPerformanceRequest(portfolio_id="p", risk_free_rate=bad)
        assert violations(request) == [
            (
                "riskFreeRate",
                "must be a yearly rate as a fraction above -1 and below 1, with at most 8 "
                "decimal places, such as 0.04",
            )
        ]


def test_byte_limits_are_stated_in_words() -> None:
    password = SCHEMAS["stockfolio.users.v1.RegisterRequest"]["properties"]["password"]
    assert password["minLength"] == 8
    assert "at most 72 bytes" in password["description"]
    refused = users_pb2.RegisterRequest(email="a@b.co", password="é" * 40)  # 80 bytes
    assert _field_violations(refused, "password") == ["must be at most 72 bytes"]


def _text_requests() -> Iterator[tuple[Descriptor, FieldDescriptor]]:
    """Every singular string field of every RPC's request, REST route or not."""
    modules = (assistant_pb2, portfolio_pb2, terminal_pb2, users_pb2, workspace_pb2)
    requests = {
        method.input_type.full_name: method.input_type
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    for message in requests.values():
        for fd in message.fields:
            if fd.type == FieldDescriptor.TYPE_STRING and not fd.is_repeated:
                yield message, fd


def test_no_text_field_takes_nul_but_a_files_content_and_a_terminals_input() -> None:
    """PostgreSQL's text cannot hold U+0000: a name, note or id carrying it failed as a 500
    deep in a handler (a trade's notes, an order's id, a chat message). Refused up front."""
    taken = []
    checked = 0
    for message, fd in _text_requests():
        checked += 1
        # Refused for U+0000, or by the field's own rules first (a pattern it breaks).
        if not _field_violations(_with(message, fd, "a\x00b"), fd.json_name):
            taken.append(f"{message.name}.{fd.name}")
    assert checked > 100
    assert sorted(taken) == [
        "CreateFileRequest.content",
        "UpdateFileRequest.content",
        "WriteTerminalRequest.data",
    ]


def test_nul_is_found_in_lists_maps_and_nested_messages() -> None:
    request = portfolio_pb2.CreateWatchlistRequest(name="ok", symbols=["AAPL", "K\x00O"])
    assert ("symbols", "must not contain the NUL character (U+0000)") in violations(request)
    struct = struct_pb2.Struct()
    struct.update({"k\x00ey": "v", "nested": {"deep": "x\x00"}})
    found = [f for f, d in nul_violations(struct) if "U+0000" in d]
    assert sorted(found) == [
        'fields["key"]',
        'fields["nested"].structValue.fields["deep"].stringValue',
    ]
