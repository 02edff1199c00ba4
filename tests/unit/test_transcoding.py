"""The route table from the real descriptors, request building and response shaping."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from multidict import MultiDict
from stockfolio.common.v1 import pagination_pb2
from stockfolio.portfolio.v1 import portfolio_pb2
from stockfolio.terminal.v1 import terminal_pb2
from stockfolio.users.v1 import users_pb2
from stockfolio.workspace.v1 import workspace_pb2

from facade.codec import Plans, RouteCodec
from facade.envelope import ApiError
from facade.routes import DOMAIN_APIS, Route, build_routes, route_prefixes, routes_for_method
from services.runtime.descriptors import method_rule
from tests.compiled_protos import add_to_default_pool

ROUTES = build_routes()
PLANS = Plans()

# A test-only API with what the real protos do not have yet: nested path variables, patterns
# with literals, body: "field", maps, repeated enums in queries, nested enums.
THINGS_PROTO = """
syntax = "proto3";
package facadetest.v1;
import "google/api/annotations.proto";
import "google/protobuf/timestamp.proto";

enum Color {
  COLOR_UNSPECIFIED = 0;
  COLOR_DEEP_RED = 1;
  COLOR_BLUE = 2;
}
message Inner {
  string name = 1;
  Color color = 2;
  repeated Color shades = 3;
  int64 size = 4;
}
message Thing {
  Inner inner = 1;
  repeated Inner items = 2;
  Color color = 3;
  map<string, Color> labels = 4;
  google.protobuf.Timestamp at = 5;
}
message GetThingRequest {
  Inner inner = 1;
  string parent = 2;
  int32 count = 3;
  bool flag = 4;
  repeated Color colors = 5;
  google.protobuf.Timestamp since = 6;
}
message GetThingResponse { Thing thing = 1; }
message UpdateThingRequest {
  string parent = 1;
  Thing thing = 2;
  bool validate_only = 3;
}
service ThingService {
  rpc GetThing(GetThingRequest) returns (GetThingResponse) {
    option (google.api.http) = {
      get: "/v1/{parent=shelves/*}/things/{inner.name}"
      response_body: "thing"
    };
  }
  rpc UpdateThing(UpdateThingRequest) returns (Thing) {
    option (google.api.http) = {
      patch: "/v1/{parent=shelves/**}:update"
      body: "thing"
    };
  }
}
"""


@pytest.fixture(scope="module")
def things(tmp_path_factory: pytest.TempPathFactory) -> ServiceDescriptor:
    """The test API, compiled with protoc and added to the default descriptor pool."""
    folder = tmp_path_factory.mktemp("protos")
    file = add_to_default_pool("things.proto", THINGS_PROTO, folder)
    return file.services_by_name["ThingService"]


def route(operation_id: str) -> Route:
    return next(r for r in ROUTES if r.operation_id == operation_id)


def thing_route(things: ServiceDescriptor, method: str) -> Route:
    return routes_for_method("things", things.methods_by_name[method])[0]


def decode(
    target: Route,
    *,
    path: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Any:
    return RouteCodec(target, PLANS).decode(path or {}, MultiDict(query or []), body)


def rejection(target: Route, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode(target, **kwargs)
    return caught.value


def new(target: Route, which: str, **fields: Any) -> Message:
    descriptor = target.method.output_type if which == "response" else target.method.input_type
    return message_factory.GetMessageClass(descriptor)(**fields)


# --- the route table ---------------------------------------------------------------------


def test_every_annotated_unary_or_server_streaming_rpc_has_a_route() -> None:
    # Client-streaming RPCs too when they stream a google.api.HttpBody body (uploads).
    annotated = {
        method.full_name
        for service in DOMAIN_APIS.values()
        for method in service.methods
        if method.GetOptions().HasExtension(annotations_pb2.http)
        and (not method.client_streaming or method.full_name.endswith("Service.UploadFile"))
    }
    assert len(ROUTES) == len(annotated) >= 51
    assert {r.method.full_name for r in ROUTES} == annotated
    assert {r.service for r in ROUTES} == set(DOMAIN_APIS)


def test_internal_and_client_streaming_rpcs_get_no_route() -> None:
    portfolio = DOMAIN_APIS["portfolio"]
    for method in portfolio.methods:
        if method.client_streaming or method_rule(method).internal:
            assert routes_for_method("portfolio", method) == [], method.name
    assert not any(r.method.name.startswith("Stream") for r in ROUTES)


def test_the_export_is_a_streamed_download_of_raw_bodies() -> None:
    export = route("PortfolioService_ExportPortfolio")
    assert (export.verb, export.template) == ("GET", "/api/v1/export")
    assert export.streaming and export.raw_body
    assert export.download_name == "export"
    assert not export.paginated
    assert {"portfolioId", "format"} <= set(export.query)
    unary = route("PortfolioService_ListTrades")
    assert not unary.streaming and not unary.raw_body and unary.download_name == ""


def test_routes_carry_the_verbs_and_templates_of_the_design_table() -> None:
    table = {(r.verb, r.template): r.operation_id for r in ROUTES}
    assert table[("POST", "/api/v1/auth/register")] == "UsersService_Register"
    assert table[("GET", "/api/v1/users/me")] == "UsersService_GetMe"
    assert table[("PUT", "/api/v1/users/{id}")] == "UsersService_UpdateUser"
    assert table[("GET", "/api/v1/terminal/terminals/{session_id}/history")] == (
        "TerminalService_GetTerminalHistory"
    )
    assert table[("DELETE", "/api/v1/files/{path=**}")] == "WorkspaceService_DeleteFile"
    assert table[("GET", "/api/v1/stocks/{symbol}/price")] == "PortfolioService_GetQuote"


def test_multi_segment_template_becomes_a_greedy_aiohttp_variable() -> None:
    get_file = route("WorkspaceService_GetFile")
    assert get_file.aiohttp_path == r"/api/v1/files/{path:[\s\S]+}"
    (variable,) = get_file.variables
    assert (variable.placeholder, variable.field.name, variable.multi_segment) == (
        "path",
        "path",
        True,
    )
    assert route("UsersService_GetUser").aiohttp_path == "/api/v1/users/{id}"


def test_nested_and_patterned_path_variables_are_parsed(things: ServiceDescriptor) -> None:
    get_thing = thing_route(things, "GetThing")
    assert get_thing.aiohttp_path == "/v1/{parent:shelves/[^/]+}/things/{_v1}"
    assert [v.field.proto_path for v in get_thing.variables] == ["parent", "inner.name"]
    update = thing_route(things, "UpdateThing")
    assert update.aiohttp_path == r"/v1/{parent:shelves/[\s\S]+}:update"
    assert update.verb == "PATCH"


def test_creating_rpcs_answer_201_and_the_rest_200() -> None:
    created = {r.method.name for r in ROUTES if r.success_status == 201}
    assert created == {
        "Register",
        "CreatePortfolio",
        "CreateTrade",
        "CreateOrder",
        "CreateWatchlist",
        "CreateAlert",
        "CreatePosition",
        "CreateSplit",
        "CreatePlan",
        "CreateFile",
        "CreateProject",
        "CreateBranch",
        "CreateFolder",
        "CreateTerminal",
    }


def test_public_and_role_rules_come_from_the_auth_option() -> None:
    public = {r.method.name for r in ROUTES if r.public}
    assert public == {"Register", "Login", "Refresh"}
    assert route("UsersService_ListUsers").rule.required_role == "admin"


def test_query_parameters_are_the_fields_not_bound_by_path_or_body() -> None:
    assert set(route("WorkspaceService_GetFile").query) == {"project"}
    assert route("UsersService_UpdateUser").query == {}  # body: "*" takes every field
    assert set(route("PortfolioService_ListTrades").query) == {
        "page",
        "limit",
        "portfolioId",
        "portfolio_id",
        "symbol",
        "side",
        "from",
        "to",
    }


def test_route_prefixes_are_the_leading_literal_segments() -> None:
    users = [r for r in ROUTES if r.service == "users"]
    assert route_prefixes(users) == ["/api/v1/auth", "/api/v1/users"]
    workspace = [r for r in ROUTES if r.service == "workspace"]
    assert route_prefixes(workspace) == ["/api/v1/files", "/api/v1/workspace", "/api/v1/git"]


def test_list_routes_are_marked_paginated() -> None:
    assert route("UsersService_ListUsers").paginated
    assert not route("UsersService_GetMe").paginated


# --- building requests ---------------------------------------------------------------------


def test_path_variables_win_over_body_fields() -> None:
    message = decode(
        route("UsersService_UpdateUser"), path={"id": "u1"}, body=b'{"id": "u2", "name": "Ann"}'
    )
    assert (message.id, message.name) == ("u1", "Ann")


def test_body_fields_accept_lower_camel_and_proto_names() -> None:
    camel = decode(route("UsersService_UpdateUser"), path={"id": "u"}, body=b'{"newPassword": "a"}')
    snake = decode(
        route("UsersService_UpdateUser"), path={"id": "u"}, body=b'{"new_password": "b"}'
    )
    assert (camel.new_password, snake.new_password) == ("a", "b")


@pytest.mark.parametrize("side", ["buy", "BUY", "Buy", "trade_side_buy", "TRADE_SIDE_BUY"])
def test_enums_accept_the_short_and_the_long_form_in_any_case(side: str) -> None:
    body = f'{{"portfolioId": "p", "symbol": "AAPL", "side": "{side}"}}'.encode()
    message = decode(route("PortfolioService_CreateTrade"), body=body)
    assert message.side == portfolio_pb2.TRADE_SIDE_BUY


def test_repeated_enums_accept_short_forms() -> None:
    message = decode(
        route("UsersService_UpdateUser"), path={"id": "u"}, body=b'{"roles": ["user", "ADMIN"]}'
    )
    assert list(message.roles) == [users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN]


def test_a_bad_enum_value_names_the_field_and_the_allowed_values() -> None:
    error = rejection(route("PortfolioService_CreateTrade"), body=b'{"side": "hold"}')
    assert (error.status, error.code) == (422, "VALIDATION_ERROR")
    ((field, description),) = error.fields
    assert field == "side"
    assert "buy, sell, dividend, deposit, withdrawal" in description


def test_a_bad_repeated_enum_value_names_its_index() -> None:
    error = rejection(
        route("UsersService_UpdateUser"), path={"id": "u"}, body=b'{"roles": ["user", "root"]}'
    )
    assert error.fields[0][0] == "roles[1]"


@pytest.mark.parametrize(
    ("body", "field", "description"),
    [
        (b'{"cols": "wide"}', "cols", "must be an integer"),
        (b'{"cols": 1.5}', "cols", "must be an integer"),
        (b'{"cols": true}', "cols", "must be an integer"),
        (b'{"cols": 4294967296}', "cols", "is out of range"),
        (b'{"shell": 5}', "shell", "must be a string"),
        (b'{"shell": ["bash"]}', "shell", "must be a string"),
    ],
)
def test_wrong_types_are_rejected_naming_the_field(
    body: bytes, field: str, description: str
) -> None:
    error = rejection(route("TerminalService_CreateTerminal"), body=body)
    assert (error.status, error.code) == (422, "VALIDATION_ERROR")
    assert error.fields == [(field, description)]
    assert error.message == f"{field} {description}"


def test_a_malformed_timestamp_in_the_body_names_the_field() -> None:
    error = rejection(route("PortfolioService_CreateTrade"), body=b'{"executedAt": "yesterday"}')
    assert error.fields == [("executedAt", "must be an RFC 3339 time such as 2024-01-31T09:30:00Z")]


def test_unknown_body_fields_are_rejected_by_name() -> None:
    error = rejection(route("PortfolioService_CreatePortfolio"), body=b'{"name": "a", "bogus": 1}')
    assert error.status == 422
    assert error.fields[0][0] == "bogus"
    assert "currency" in error.fields[0][1]


def test_nested_unknown_fields_are_named_by_their_path(things: ServiceDescriptor) -> None:
    update = thing_route(things, "UpdateThing")
    error = rejection(
        update, path={"parent": "shelves/a"}, body=b'{"items": [{"name": "x"}, {"nope": 1}]}'
    )
    assert error.fields[0][0] == "thing.items[1].nope"


def test_malformed_json_is_a_400() -> None:
    error = rejection(route("PortfolioService_CreatePortfolio"), body=b'{"name": ')
    assert (error.status, error.code) == (400, "BAD_REQUEST")
    assert error.message.startswith("malformed JSON")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"limit": ' + b"9" * 5000 + b"}", "a number too long"),
        (b'{"name": "\xff"}', "not valid UTF-8"),
    ],
    ids=["deep", "long-number", "not-utf8"],
)
def test_a_body_the_parser_refuses_is_refused_for_its_own_reason(body: bytes, why: str) -> None:
    # Both first two are valid UTF-8 JSON: they were called "not valid UTF-8 JSON".
    error = rejection(route("PortfolioService_CreatePortfolio"), body=body)
    assert (error.status, error.code, error.message) == (
        400,
        "BAD_REQUEST",
        f"malformed JSON: {why}",
    )


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_a_body_that_is_not_a_json_object_is_a_400(body: bytes) -> None:
    error = rejection(route("PortfolioService_CreatePortfolio"), body=body)
    assert (error.status, error.code) == (400, "BAD_REQUEST")
    assert error.message == "the request body must be a JSON object"


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    error = rejection(route("PortfolioService_CreatePortfolio"), body=b"[" * 100_000)
    assert error.status == 400


def test_an_empty_body_is_an_empty_request() -> None:
    message = decode(route("UsersService_Logout"), body=b"")
    assert message.all_sessions is False


def test_body_field_routes_read_the_json_into_that_field(things: ServiceDescriptor) -> None:
    update = thing_route(things, "UpdateThing")
    message = decode(
        update,
        path={"parent": "shelves/a/b"},
        query=[("validateOnly", "true")],
        body=b'{"color": "deep_red", "labels": {"x": "blue"}, "inner": {"shades": ["BLUE"]}}',
    )
    assert message.parent == "shelves/a/b"
    assert message.validate_only is True
    assert message.thing.color == 1
    assert dict(message.thing.labels) == {"x": 2}
    assert list(message.thing.inner.shades) == [2]


def test_multi_segment_path_values_keep_their_slashes() -> None:
    message = decode(
        route("WorkspaceService_GetFile"),
        path={"path": "src/app/main.py"},
        query=[("project", "demo")],
    )
    assert (message.path, message.project) == ("src/app/main.py", "demo")


def test_nested_path_variables_fill_nested_fields(things: ServiceDescriptor) -> None:
    message = decode(thing_route(things, "GetThing"), path={"parent": "shelves/s1", "_v1": "lamp"})
    assert (message.parent, message.inner.name) == ("shelves/s1", "lamp")


def test_query_parameters_fill_ints_enums_and_times() -> None:
    message = decode(
        route("PortfolioService_ListTrades"),
        query=[
            ("page", "2"),
            ("limit", "50"),
            ("side", "sell"),
            ("portfolio_id", "p1"),
            ("symbol", "AAPL"),
            ("from", "2024-01-01"),
            ("to", "2024-02-01T12:30:00Z"),
        ],
    )
    assert (message.page, message.limit, message.side) == (2, 50, portfolio_pb2.TRADE_SIDE_SELL)
    assert (message.portfolio_id, message.symbol) == ("p1", "AAPL")
    assert message.ListFields()
    assert getattr(message, "from").ToJsonString() == "2024-01-01T00:00:00Z"
    assert message.to.ToJsonString() == "2024-02-01T12:30:00Z"


@pytest.mark.parametrize(
    ("query", "description"),
    [
        (("limit", "ten"), "must be an integer"),
        (("limit", "99999999999"), "is out of range"),
        (("side", "hold"), "'hold' is not allowed; must be one of: unspecified, buy, sell"),
        (("from", "last week"), "must be an RFC 3339 time such as 2024-01-31T09:30:00Z"),
    ],
)
def test_malformed_query_values_name_the_parameter(
    query: tuple[str, str], description: str
) -> None:
    error = rejection(route("PortfolioService_ListTrades"), query=[query])
    assert (error.status, error.code) == (422, "VALIDATION_ERROR")
    assert error.fields[0][0] == query[0]
    assert error.fields[0][1].startswith(description)


def test_unknown_query_parameters_are_rejected_by_name() -> None:
    error = rejection(route("PortfolioService_ListTrades"), query=[("colour", "red"), ("x", "1")])
    assert error.status == 422
    assert [f for f, _ in error.fields] == ["colour", "x"]
    assert "unknown query parameters: colour, x" in error.message


def test_a_singular_query_parameter_given_twice_is_rejected() -> None:
    error = rejection(route("PortfolioService_ListTrades"), query=[("page", "1"), ("page", "2")])
    assert error.fields == [("page", "is given more than once")]


def test_query_bools_repeated_enums_and_nested_fields(things: ServiceDescriptor) -> None:
    message = decode(
        thing_route(things, "GetThing"),
        path={"parent": "shelves/s", "_v1": "n"},
        query=[
            ("flag", "true"),
            ("colors", "blue"),
            ("colors", "COLOR_DEEP_RED"),
            ("inner.color", "blue"),
            ("inner.size", "12"),
        ],
    )
    assert message.flag is True
    assert list(message.colors) == [2, 1]
    assert (message.inner.color, message.inner.size) == (2, 12)


def test_query_cannot_set_a_field_the_path_binds(things: ServiceDescriptor) -> None:
    error = rejection(
        thing_route(things, "GetThing"),
        path={"parent": "shelves/s", "_v1": "n"},
        query=[("inner.name", "other")],
    )
    assert error.fields[0][0] == "inner.name"


# --- shaping responses ---------------------------------------------------------------------


def encode(target: Route, reply: Message) -> tuple[Any, Any]:
    return RouteCodec(target, PLANS).encode(reply)


def test_enum_fields_are_written_in_short_lowercase_form() -> None:
    trade = portfolio_pb2.Trade(id="t1", side=portfolio_pb2.TRADE_SIDE_WITHDRAWAL)
    data, _ = encode(
        route("PortfolioService_CreateTrade"), portfolio_pb2.CreateTradeResponse(trade=trade)
    )
    assert data["side"] == "withdrawal"


def test_repeated_enums_inside_nested_messages_are_short_too() -> None:
    user = users_pb2.User(id="u1", roles=[users_pb2.ROLE_USER, users_pb2.ROLE_ADMIN])
    reply = users_pb2.ListUsersResponse(users=[user, users_pb2.User(id="u2")])
    data, _ = encode(route("UsersService_ListUsers"), reply)
    assert [u["roles"] for u in data] == [["user", "admin"], []]


def test_enums_in_maps_and_lists_of_messages_are_short(things: ServiceDescriptor) -> None:
    get_thing = thing_route(things, "GetThing")
    reply = new(get_thing, "response")
    reply.thing.labels["a"] = 2  # type: ignore[attr-defined]
    reply.thing.items.add(color=1, shades=[2, 1])  # type: ignore[attr-defined]
    data, _ = encode(get_thing, reply)
    assert data["labels"] == {"a": "blue"}
    assert data["items"][0]["color"] == "deep_red"
    assert data["items"][0]["shades"] == ["blue", "deep_red"]
    assert data["color"] == "unspecified"


def test_response_body_makes_that_field_the_envelope_data() -> None:
    reply = users_pb2.GetMeResponse(user=users_pb2.User(id="u1", email="a@b.c"))
    data, pagination = encode(route("UsersService_GetMe"), reply)
    assert data["id"] == "u1"
    assert data["email"] == "a@b.c"
    assert pagination is None


def test_pagination_is_lifted_into_the_envelope() -> None:
    reply = portfolio_pb2.ListPortfoliosResponse(
        portfolios=[portfolio_pb2.Portfolio(id="p1")],
        pagination=pagination_pb2.Pagination(page=2, limit=1, total=3, total_pages=3),
    )
    data, pagination = encode(route("PortfolioService_ListPortfolios"), reply)
    assert [p["id"] for p in data] == ["p1"]
    assert pagination == {"page": 2, "limit": 1, "total": 3, "totalPages": 3}


def test_pagination_leaves_the_data_when_there_is_no_response_body() -> None:
    reply = workspace_pb2.ListFilesResponse(
        entries=[], pagination=pagination_pb2.Pagination(page=1, limit=20)
    )
    data, pagination = encode(route("WorkspaceService_ListFiles"), reply)
    assert data == []
    assert pagination is not None
    assert pagination["limit"] == 20


def test_fields_with_default_values_are_emitted() -> None:
    data, _ = encode(
        route("TerminalService_GetTerminalStats"), terminal_pb2.GetTerminalStatsResponse()
    )
    assert data == {
        "activeSessions": 0,
        "maxSessions": 0,
        "maxSessionsPerUser": 0,
        "memoryBytes": "0",
        "allUsers": False,
        "users": 0,
        "shellMemoryBytes": "0",
        "mySessions": 0,
        "totalSessions": 0,
        "idleTimeoutSeconds": 0,
        "outputBytesPerSecond": "0",
        "maxWriteBytes": 0,
        "scrollbackBytes": 0,
        "sandbox": "",
        "sandboxLimits": "",
        "sandboxMaxProcesses": 0,
        "sandboxMemoryBytes": "0",
        "sandboxFileSizeBytes": "0",
        "sandboxOpenFiles": 0,
    }
    history, _ = encode(
        route("TerminalService_GetTerminalHistory"), terminal_pb2.GetTerminalHistoryResponse()
    )
    assert history == {"commands": [], "recentOutput": ""}


def test_timestamps_are_rfc3339_and_int64_are_strings() -> None:
    entry = workspace_pb2.Entry(name="a", size=2**40)
    entry.modified_at.FromJsonString("2024-05-01T10:00:00Z")
    data, _ = encode(
        route("WorkspaceService_ListFiles"), workspace_pb2.ListFilesResponse(entries=[entry])
    )
    assert data[0]["size"] == str(2**40)
    assert data[0]["modifiedAt"] == "2024-05-01T10:00:00Z"
    assert data[0]["type"] == "unspecified"


def test_replies_in_wire_form_encode_exactly_as_parsed_ones_and_are_not_confused() -> None:
    target = route("UsersService_GetMe")
    codec = RouteCodec(target, Plans())
    ada = users_pb2.GetMeResponse(user=users_pb2.User(id="u1", email="ada@example.com"))
    bob = users_pb2.GetMeResponse(user=users_pb2.User(id="u2", email="bob@example.com"))
    for reply in (ada, bob, ada):
        assert codec.encode_raw(reply.SerializeToString()) == codec.encode(reply)
    assert codec.encode_raw(bob.SerializeToString())[0]["email"] == "bob@example.com"
