"""The OpenAPI document is generated from the same route table the facade serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from google.api import httpbody_pb2
from google.protobuf import json_format
from jsonschema import Draft202012Validator
from stockfolio.portfolio.v1 import portfolio_pb2
from stockfolio.terminal.v1 import terminal_pb2
from stockfolio.workspace.v1 import workspace_pb2

from facade.docs_page import docs_page
from facade.openapi import build_openapi, openapi_path, render
from facade.routes import build_routes
from facade.rules import message_keywords
from services.runtime.validation import violations

ROUTES = build_routes()
VERBS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_openapi(ROUTES)


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for verb, op in item.items():
            yield path, verb, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(spec: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = spec
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def schema_of(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return resolve(spec, schema["$ref"]) if "$ref" in schema else schema


def test_every_route_appears_under_its_verb(spec: dict[str, Any]) -> None:
    for route in ROUTES:
        op = spec["paths"][openapi_path(route)][route.verb.lower()]
        assert op["operationId"] == route.operation_id
        assert op["x-grpc-method"] == route.method.full_name


def test_facade_routes_are_documented_too(spec: dict[str, Any]) -> None:
    for path in ("/health", "/health/all", "/health/{service}", "/services", "/metrics", "/docs"):
        assert "get" in spec["paths"][path]
    assert "get" in spec["paths"]["/api/v1/openapi.json"]


def test_operation_ids_are_unique(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids)) == len(ROUTES) + 7


def test_public_routes_have_no_security_requirement_and_protected_ones_do(
    spec: dict[str, Any],
) -> None:
    for route in ROUTES:
        op = spec["paths"][openapi_path(route)][route.verb.lower()]
        if route.public:
            assert "security" not in op, route.operation_id
        else:
            assert op["security"] == [{"bearerAuth": []}], route.operation_id
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    assert "security" not in register
    assert spec["paths"]["/api/v1/users"]["get"]["x-required-role"] == "admin"


def test_enum_schemas_list_the_short_lowercase_values(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["stockfolio.portfolio.v1.TradeSide"]["enum"] == [
        "unspecified",
        "buy",
        "sell",
        "dividend",
        "deposit",
        "withdrawal",
    ]
    assert schemas["stockfolio.users.v1.Role"]["enum"] == ["unspecified", "user", "admin"]
    roles = schemas["stockfolio.users.v1.User"]["properties"]["roles"]
    assert roles == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/stockfolio.users.v1.Role"},
    }


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    found = list(refs(spec))
    assert found
    for pointer in found:
        assert resolve(spec, pointer), pointer


def test_the_document_has_the_openapi_3_1_structure(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] and spec["info"]["version"]
    json.dumps(spec)  # plain JSON all the way down
    for path, verb, op in operations(spec):
        assert path.startswith("/")
        assert verb in VERBS
        assert op["responses"], f"{verb} {path}"
        for code in op["responses"]:
            assert code == "default" or re.fullmatch(r"[1-5]\d\d", code)


def test_path_parameters_match_the_template_variables(spec: dict[str, Any]) -> None:
    for path, verb, op in operations(spec):
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert in_path == declared, f"{verb} {path}"
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
    get_file = spec["paths"]["/api/v1/files/{path}"]["get"]
    (path_param,) = [p for p in get_file["parameters"] if p["in"] == "path"]
    assert "'/'" in path_param["description"]


def test_query_parameters_are_typed_request_fields(spec: dict[str, Any]) -> None:
    params = {p["name"]: p for p in spec["paths"]["/api/v1/trades"]["get"]["parameters"]}
    assert set(params) == {"page", "limit", "portfolioId", "symbol", "side", "from", "to"}
    assert params["limit"]["schema"] == {
        "type": "integer",
        "format": "int32",
        "minimum": 1,
        "maximum": 100,
    }
    assert params["page"]["schema"]["minimum"] == 1
    assert not params["page"]["required"]
    assert params["from"]["schema"] == {"type": "string", "format": "date-time"}
    assert params["side"]["schema"]["$ref"].endswith("TradeSide")
    assert all(p["in"] == "query" and not p["required"] for p in params.values())


def test_request_bodies_use_lower_camel_names_and_proto3_json_types(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/trades"]["post"]
    body = schema_of(spec, op["requestBody"]["content"]["application/json"]["schema"])
    props = body["properties"]
    assert {"portfolioId", "executedAt", "side", "quantity"} <= set(props)
    assert props["executedAt"] == {"type": "string", "format": "date-time"}
    # Decimals travel as strings; their rules (from the proto) say which strings.
    assert props["quantity"]["type"] == "string"
    assert re.fullmatch(props["quantity"]["pattern"], "0.5")
    assert not re.fullmatch(props["quantity"]["pattern"], "0")
    assert set(body["required"]) == {"portfolioId", "side", "quantity"}
    entry = spec["components"]["schemas"]["stockfolio.workspace.v1.Entry"]["properties"]
    assert entry["size"]["type"] == "string"
    assert entry["size"]["format"] == "int64"


def test_path_bound_fields_are_left_out_of_the_body_schema(spec: dict[str, Any]) -> None:
    op = spec["paths"]["/api/v1/users/{id}"]["put"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert "id" not in body["properties"]
    assert {"name", "email", "roles", "newPassword", "currentPassword"} <= set(body["properties"])


def test_responses_are_wrapped_in_the_envelope(spec: dict[str, Any]) -> None:
    me = spec["paths"]["/api/v1/users/me"]["get"]["responses"]["200"]
    schema = me["content"]["application/json"]["schema"]
    envelope, own = schema["allOf"]
    assert envelope == {"$ref": "#/components/schemas/SuccessEnvelope"}
    assert own["properties"]["data"] == {"$ref": "#/components/schemas/stockfolio.users.v1.User"}
    assert "pagination" not in own["properties"]
    created = spec["paths"]["/api/v1/portfolios"]["post"]["responses"]
    assert "201" in created
    error = spec["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorEnvelope"}


def test_list_responses_carry_pagination(spec: dict[str, Any]) -> None:
    listed = spec["paths"]["/api/v1/users"]["get"]["responses"]["200"]
    own = listed["content"]["application/json"]["schema"]["allOf"][1]
    assert own["properties"]["data"]["type"] == "array"
    assert own["properties"]["pagination"] == {"$ref": "#/components/schemas/Pagination"}
    assert "pagination" in own["required"]


def test_docs_page_lists_every_route_and_links_the_document(spec: dict[str, Any]) -> None:
    page = docs_page(spec)
    assert '<a href="/api/v1/openapi.json">' in page
    assert "/api/v1/terminal/terminals/{session_id}/history" in page
    assert page.count("<tr>") == len(list(operations(spec))) + 1
    assert "<script" not in page
    assert not re.search(r'(src|href)="https?:', page)  # nothing from a CDN


def test_render_gives_the_served_bytes() -> None:
    document, page = render(ROUTES)
    assert json.loads(document)["openapi"] == "3.1.0"
    assert page.startswith(b"<!doctype html>")


# --- what a schema-valid request needs: the document says all of it -------------------------


def _body_schema(spec: dict[str, Any], path: str, verb: str) -> dict[str, Any]:
    body = spec["paths"][path][verb]["requestBody"]
    return schema_of(spec, body["content"]["application/json"]["schema"])


def _query(spec: dict[str, Any], path: str, verb: str = "get") -> dict[str, dict[str, Any]]:
    params = spec["paths"][path][verb]["parameters"]
    return {p["name"]: p for p in params if p["in"] == "query"}


def test_an_fx_rate_needs_both_codes(spec: dict[str, Any]) -> None:
    """`from` and `to` are required (no default currency): an absent one was schema-valid."""
    params = _query(spec, "/api/v1/fx")
    for name in ("from", "to"):
        assert params[name]["required"], name
        assert params[name]["schema"]["minLength"] == 1
        assert params[name]["schema"]["pattern"] == "^ *[A-Za-z]{3} *$"
    assert not params["date"]["required"]
    assert violations(portfolio_pb2.GetFxRateRequest(**{"from": "EUR"})) == [("to", "is required")]


def test_a_resize_needs_cols_and_rows_at_the_top_or_in_dimensions(spec: dict[str, Any]) -> None:
    """A rule across fields, stated as anyOf: the document and the service agree on each body."""
    op = spec["paths"]["/api/v1/terminal/terminals/{session_id}/resize"]["post"]
    assert op["requestBody"]["required"]
    schema = _body_schema(spec, "/api/v1/terminal/terminals/{session_id}/resize", "post")
    validator = Draft202012Validator(schema)
    bodies: list[tuple[dict[str, Any], bool]] = [
        ({}, False),
        ({"cols": 80}, False),
        ({"dimensions": {"cols": 80}}, False),
        ({"rows": 24, "dimensions": {"rows": 30}}, False),
        ({"cols": 80, "rows": 24}, True),
        ({"dimensions": {"cols": 80, "rows": 24}}, True),
        ({"cols": 80, "dimensions": {"rows": 24}}, True),
        ({"cols": 80, "rows": 24, "dimensions": {"cols": 90}}, True),
    ]
    for body, allowed in bodies:
        assert validator.is_valid(body) is allowed, body
        request = json_format.ParseDict(
            {"sessionId": "s", **body}, terminal_pb2.ResizeTerminalRequest()
        )
        assert (violations(request) == []) is allowed, body
    assert violations(terminal_pb2.ResizeTerminalRequest(session_id="s", rows=24)) == [
        ("request", "needs cols (1 to 1000), at the top or in dimensions")
    ]


def test_a_rule_across_fields_with_one_bound_to_the_path_says_nothing_of_the_body() -> None:
    message = terminal_pb2.ResizeTerminalRequest.DESCRIPTOR
    stated, words = message_keywords(message, without=set())
    assert len(stated) == 2 and words == ""
    left, _ = message_keywords(message, without={"cols"})
    assert left == [stated[1]]  # the rows rule only


def test_a_watchlist_lists_each_symbol_once(spec: dict[str, Any]) -> None:
    for path, verb in (("/api/v1/watchlists", "post"), ("/api/v1/watchlists/{id}", "put")):
        symbols = _body_schema(spec, path, verb)["properties"]["symbols"]
        assert symbols["uniqueItems"] is True, path
        assert symbols["maxItems"] == 100
    twice = portfolio_pb2.CreateWatchlistRequest(name="X", symbols=["KO", "MSFT", "KO"])
    assert violations(twice) == [("symbols", "must not list a symbol twice")]
    # Another case is the service's own check (it names the symbol): not a JSON Schema rule.
    assert violations(portfolio_pb2.CreateWatchlistRequest(name="X", symbols=["KO", "ko"])) == []


def test_the_space_a_listed_symbol_may_have_around_it_is_the_services(
    spec: dict[str, Any],
) -> None:
    """RE2's \\s (the service's) is [\\t\\n\\f\\r ]; ECMA's also has \\v, U+00A0 and more, so
    `\\s*` in the pattern let the document allow " \\vKO", which the service refused."""
    symbols = _body_schema(spec, "/api/v1/watchlists", "post")["properties"]["symbols"]
    pattern = symbols["items"]["pattern"]
    for space in "\t\n\x0b\x0c\r \xa0\x85\u2028\u3000":
        value = f"{space}KO{space}"
        documented = re.search(pattern.replace("$", "\\Z"), value) is not None
        request = portfolio_pb2.CreateWatchlistRequest(name="X", symbols=[value])
        assert documented is (violations(request) == []), repr(space)
        assert documented is (space in "\t\n\x0c\r "), repr(space)


def test_an_uploads_path_is_a_required_query_parameter(spec: dict[str, Any]) -> None:
    """Required on the stream's first message only (the option says so), which over REST is
    the query string; later chunks leave it empty, so buf.validate does not require it."""
    params = _query(spec, "/api/v1/files:upload", "post")
    assert params["path"]["required"]
    assert params["path"]["schema"]["minLength"] == 1
    assert {"not": {"pattern": "^/"}} in params["path"]["schema"]["allOf"]
    assert not params["project"]["required"]
    chunk = workspace_pb2.UploadFileRequest(body=httpbody_pb2.HttpBody(data=b"more"))
    assert violations(chunk) == []
    # The same field elsewhere (a download's path, one message) is required by its rules.
    assert _query(spec, "/api/v1/files:download")["path"]["required"]
