"""The OpenAPI document is generated from the same route table the facade serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from facade.docs_page import docs_page
from facade.openapi import build_openapi, openapi_path, render
from facade.routes import build_routes

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
