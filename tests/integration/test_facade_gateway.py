"""The facade in front of real gRPC services (the other four on port 0, their storage left
unmigrated: health, routing and auth are what is tested here; users is down unless started)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import TestClient, TestServer

from facade.app import create_app
from facade.config import load_facade_config
from services.assistant.server import build as build_assistant
from services.portfolio.server import build as build_portfolio
from services.runtime.config import RuntimeConfig
from services.runtime.server import Builder, running
from services.terminal.server import build as build_terminal
from services.workspace.server import build as build_workspace
from tests.conftest import TEST_USER_KEY, users_codec
from tests.forged_tokens import forged_tokens

FRONTEND = "http://localhost:4100"
TEN_MB = 10 * 1024 * 1024
# Nothing listens here: a service that is down.
DEAD_ADDRESS = "127.0.0.1:1"
STUB_SERVICES: dict[str, Builder] = {
    "portfolio": build_portfolio,
    "assistant": build_assistant,
    "terminal": build_terminal,
    "workspace": build_workspace,
}

Client = TestClient[web.Request, web.Application]
OpenFacade = Callable[..., contextlib.AbstractAsyncContextManager[Client]]


@contextlib.asynccontextmanager
async def stubs(
    make_config: Callable[..., RuntimeConfig], users_address: str
) -> AsyncIterator[dict[str, str]]:
    """The four stub services on port 0, asking `users_address` about sessions.

    Yields the `<SERVICE>_ADDRS` variables a facade needs to reach all five.
    """
    async with contextlib.AsyncExitStack() as stack:
        addresses = {"USERS_ADDRS": users_address}
        for name, build in STUB_SERVICES.items():
            config = make_config(name, USERS_ADDRS=users_address)
            service = await stack.enter_async_context(running(config, build, port=0, grace=0))
            addresses[f"{name.upper()}_ADDRS"] = f"127.0.0.1:{service.port}"
        yield addresses


@pytest.fixture
async def stub_services(
    make_config: Callable[..., RuntimeConfig],
) -> AsyncIterator[dict[str, str]]:
    """The stubs with the users service down."""
    async with stubs(make_config, DEAD_ADDRESS) as addresses:
        yield addresses


@pytest.fixture
def open_facade(
    make_config: Callable[..., RuntimeConfig], stub_services: dict[str, str]
) -> OpenFacade:
    """Start the real facade app over the stub services; keyword arguments are env variables."""

    @contextlib.asynccontextmanager
    async def open_client(**environ: str) -> AsyncIterator[Client]:
        env = {**stub_services, **environ}
        config = load_facade_config(env, runtime=make_config("facade", **env))
        async with TestClient(TestServer(create_app(config))) as client:
            yield client

    return open_client


@pytest.fixture
async def client(open_facade: OpenFacade) -> AsyncIterator[Client]:
    async with open_facade() as opened:
        yield opened


async def read(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    return body


def access_token(user_id: str, *, ttl: int = 900) -> str:
    codec = users_codec(access_ttl=ttl)
    token, _ = codec.issue_access(user_id=user_id, session_id=f"s-{user_id}", email="", roles=[])
    return token


# --- envelope, auth pass-through, correlation ids ----------------------------------------


async def test_missing_token_is_a_401_envelope_with_token_missing_and_the_correlation_id(
    client: Any,
) -> None:
    response = await client.get("/api/v1/portfolios", headers={"X-Correlation-ID": "cid-123"})
    body = await read(response)
    assert response.status == 401
    assert response.headers["X-Correlation-ID"] == "cid-123"
    assert body["success"] is False
    assert (body["error"], body["message"]) == ("TOKEN_MISSING", "missing bearer token")
    assert body["message"] == "missing bearer token"
    assert body["correlationId"] == "cid-123"
    assert body["service"] == "portfolio"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo == UTC


async def test_a_correlation_id_is_minted_when_none_is_sent(client: Any) -> None:
    response = await client.get("/api/v1/files")
    minted = response.headers["X-Correlation-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", minted)
    assert (await read(response))["correlationId"] == minted


async def test_a_malformed_token_is_a_401_token_invalid(client: Any) -> None:
    response = await client.get(
        "/api/v1/chat/sessions", headers={"Authorization": "Bearer not.a.jwt"}
    )
    body = await read(response)
    assert response.status == 401
    assert body["error"] == "TOKEN_INVALID"
    assert body["service"] == "assistant"


async def test_an_expired_token_is_a_401_token_expired(client: Any) -> None:
    expired = access_token("u1", ttl=-60)
    response = await client.get(
        "/api/v1/terminal/terminals", headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status == 401
    assert (await read(response))["error"] == "TOKEN_EXPIRED"


async def test_a_service_that_cannot_check_a_session_answers_503_in_its_own_words(
    client: Any,
) -> None:
    # A valid token, but the users service (which knows the sessions) is down.
    response = await client.get(
        "/api/v1/portfolios", headers={"Authorization": f"Bearer {access_token('u1')}"}
    )
    body = await read(response)
    assert response.status == 503
    assert body["error"] == "UNAVAILABLE"
    assert body["message"] == "cannot verify the session right now; retry shortly"
    assert body["service"] == "portfolio"


# --- bad input -----------------------------------------------------------------------------


async def test_malformed_json_is_a_400_envelope(client: Any) -> None:
    response = await client.post(
        "/api/v1/portfolios",
        data=b'{"name": "Growth",',
        headers={"Content-Type": "application/json"},
    )
    body = await read(response)
    assert response.status == 400
    assert body["error"] == "BAD_REQUEST"
    assert body["message"].startswith("malformed JSON")
    assert body["service"] == "facade"


async def test_an_unknown_field_is_a_422_naming_it(client: Any) -> None:
    response = await client.post("/api/v1/portfolios", json={"name": "Growth", "colour": "red"})
    body = await read(response)
    assert response.status == 422
    assert body["error"] == "VALIDATION_ERROR"
    assert body["details"]["fields"][0]["field"] == "colour"
    assert body["message"].startswith("colour is not a field of CreatePortfolioRequest")


async def test_a_bad_query_parameter_is_a_422_naming_it(client: Any) -> None:
    response = await client.get("/api/v1/trades", params={"limit": "many"})
    body = await read(response)
    assert response.status == 422
    assert body["details"]["fields"] == [{"field": "limit", "description": "must be an integer"}]


async def test_a_body_over_10_mb_is_a_413_envelope(client: Any) -> None:
    response = await client.post("/api/v1/portfolios", data=io.BytesIO(b" " * (TEN_MB + 1)))
    body = await read(response)
    assert response.status == 413
    assert body["error"] == "PAYLOAD_TOO_LARGE"
    assert body["message"] == "the request body is larger than the limit of 10 MB"


async def test_an_unknown_route_is_a_404_envelope(client: Any) -> None:
    response = await client.get("/api/v1/nothing-here", headers={"X-Correlation-ID": "c404"})
    body = await read(response)
    assert response.status == 404
    assert body["error"] == "NOT_FOUND"
    assert body["correlationId"] == "c404"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("PATCH", "/api/v1/portfolios", "GET, POST", id="a transcoded route"),
        pytest.param("POST", "/health", "GET", id="a facade route"),
    ],
)
async def test_a_wrong_method_is_a_405_envelope_naming_the_allowed_ones(
    client: Any, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    body = await read(response)
    assert response.status == 405
    assert response.headers["Allow"] == allowed
    assert body["error"] == "METHOD_NOT_ALLOWED"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- health, registry, metrics, docs -------------------------------------------------------


async def test_concurrent_health_requests_each_get_a_full_answer(client: Any) -> None:
    responses = await asyncio.gather(*(client.get("/health/all") for _ in range(20)))
    bodies = [await read(r) for r in responses]
    assert {r.status for r in responses} == {503}
    for body in bodies:
        assert [s["name"] for s in body["data"]["services"]] == [
            "users",
            "assistant",
            "terminal",
            "workspace",
            "portfolio",
        ]
    assert len({b["correlationId"] for b in bodies}) == 20


async def test_health_is_the_facade_itself(client: Any) -> None:
    response = await client.get("/health")
    body = await read(response)
    assert response.status == 200
    assert body["data"]["status"] == "ok"
    assert body["data"]["service"] == "facade"
    assert body["data"]["uptime"] >= 0


async def test_health_all_is_503_with_users_down_and_lists_all_five(client: Any) -> None:
    response = await client.get("/health/all")
    body = await read(response)
    assert response.status == 503
    assert body["error"] == "SERVICE_UNAVAILABLE"
    assert body["message"] == "not serving: users"
    report = body["data"]
    assert report["status"] == "degraded"
    statuses = {s["name"]: s["status"] for s in report["services"]}
    assert statuses == {
        "users": "NOT_SERVING",
        "assistant": "SERVING",
        "terminal": "SERVING",
        "workspace": "SERVING",
        "portfolio": "SERVING",
    }
    users = next(s for s in report["services"] if s["name"] == "users")
    assert users["addresses"] == [
        {
            "address": "127.0.0.1:1",
            "status": "UNREACHABLE",
            "error": "UNAVAILABLE",
            "latencyMs": users["addresses"][0]["latencyMs"],
        }
    ]
    assert all(s["latencyMs"] < 1000 for s in report["services"])


async def test_health_of_one_service(client: Any) -> None:
    serving = await client.get("/health/terminal")
    body = await read(serving)
    assert serving.status == 200
    assert body["data"]["name"] == "terminal"
    assert body["data"]["status"] == "SERVING"
    assert body["data"]["addresses"][0]["status"] == "SERVING"
    down = await client.get("/health/users")
    assert down.status == 503
    assert (await read(down))["data"]["status"] == "NOT_SERVING"


async def test_health_of_an_unknown_service_is_a_404_envelope(client: Any) -> None:
    response = await client.get("/health/billing")
    body = await read(response)
    assert response.status == 404
    assert "billing" in body["message"]


async def test_services_lists_each_service_with_its_route_prefixes(client: Any) -> None:
    response = await client.get("/services")
    services = {s["name"]: s for s in (await read(response))["data"]["services"]}
    assert response.status == 200
    assert services["users"]["routePrefixes"] == ["/api/v1/auth", "/api/v1/users"]
    assert services["users"]["addresses"] == ["127.0.0.1:1"]
    assert services["users"]["health"]["status"] == "NOT_SERVING"
    assert services["portfolio"]["grpcService"] == "stockfolio.portfolio.v1.PortfolioService"
    assert "/api/v1/portfolios" in services["portfolio"]["routePrefixes"]
    assert "/api/v1/git" in services["workspace"]["routePrefixes"]
    assert services["terminal"]["health"]["status"] == "SERVING"


async def test_metrics_count_requests_by_route_template(client: Any) -> None:
    await client.get("/api/v1/portfolios/p-123")
    await client.get("/api/v1/portfolios/p-456")
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    counted = re.search(
        r'stockfolio_http_requests_total\{method="GET",route="/api/v1/portfolios/\{id\}",'
        r'status="401"\} (\d+)',
        text,
    )
    assert counted is not None
    assert int(float(counted.group(1))) >= 2
    assert "p-123" not in text


async def test_openapi_and_docs_are_served(client: Any) -> None:
    spec = await client.get("/api/v1/openapi.json")
    assert spec.status == 200
    assert (await spec.json())["openapi"] == "3.1.0"
    # The interactive reference is the web app's explorer.
    explorer = await client.get("/docs", allow_redirects=False)
    assert explorer.status == 302
    assert explorer.headers["Location"] == f"{FRONTEND}/explorer"
    docs = await client.get("/docs?static=1")
    assert docs.status == 200
    assert docs.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "style-src 'unsafe-inline'" in docs.headers["Content-Security-Policy"]
    assert "/api/v1/portfolios" in await docs.text()


# --- CORS, security headers, compression ---------------------------------------------------


async def test_cors_preflight_from_the_frontend_is_allowed(client: Any) -> None:
    response = await client.options(
        "/api/v1/portfolios",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == FRONTEND
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "DELETE" in headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-correlation-id", "idempotency-key"} <= allowed


async def test_cors_preflight_is_answered_on_every_path(client: Any) -> None:
    for path in ("/health", "/api/v1/files/src/main.py", "/api/v1/not-a-route"):
        response = await client.options(
            path, headers={"Origin": FRONTEND, "Access-Control-Request-Method": "GET"}
        )
        assert response.status == 204, path
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND


async def test_cors_preflight_from_another_origin_gets_no_cors_headers(client: Any) -> None:
    response = await client.options(
        "/api/v1/portfolios",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_responses_to_the_frontend_expose_the_limit_and_correlation_headers(
    client: Any,
) -> None:
    ours = await client.get("/api/v1/portfolios", headers={"Origin": FRONTEND})
    assert ours.headers["Access-Control-Allow-Origin"] == FRONTEND
    exposed = ours.headers["Access-Control-Expose-Headers"]
    for name in ("X-Correlation-ID", "RateLimit-Remaining", "Retry-After"):
        assert name in exposed
    theirs = await client.get("/api/v1/portfolios", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in theirs.headers


async def test_several_frontend_origins_can_be_allowed(open_facade: OpenFacade) -> None:
    async with open_facade(FRONTEND_URL="https://app.example.com, http://localhost:4100") as client:
        for origin in ("https://app.example.com", FRONTEND):
            response = await client.get("/health", headers={"Origin": origin})
            assert response.headers["Access-Control-Allow-Origin"] == origin


async def test_security_headers_are_on_every_response(client: Any) -> None:
    for path in ("/health", "/api/v1/portfolios", "/nowhere"):
        headers = (await client.get(path)).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cross-Origin-Resource-Policy"] == "same-site"
        assert headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert "Strict-Transport-Security" not in headers


async def test_hsts_is_sent_in_production(open_facade: OpenFacade, tmp_path: Any) -> None:
    production = {
        "STOCKFOLIO_ENV": "production",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
    }
    async with open_facade(**production) as client:
        response = await client.get("/health")
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_large_responses_are_gzipped_and_small_ones_are_not(client: Any) -> None:
    large = await client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert large.headers[hdrs.CONTENT_ENCODING] == "gzip"
    assert (await large.json())["openapi"] == "3.1.0"
    small = await client.get("/health", headers={"Accept-Encoding": "gzip"})
    assert hdrs.CONTENT_ENCODING not in small.headers
    plain = await client.get("/api/v1/openapi.json", headers={"Accept-Encoding": "identity"})
    assert hdrs.CONTENT_ENCODING not in plain.headers


# --- rate limits -------------------------------------------------------------------------


@pytest.fixture(params=["inprocess", "redis"])
def limit_backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Rate-limit tests run on the in-process cache and on Redis."""
    if request.param == "inprocess":
        return {}
    return {"REDIS_URL": str(request.getfixturevalue("redis_url"))}


async def test_the_request_over_the_api_limit_is_a_429_with_retry_after(
    open_facade: OpenFacade, limit_backend: dict[str, str]
) -> None:
    async with open_facade(RATE_LIMIT_API="3/minute", **limit_backend) as client:
        remaining = []
        for _ in range(3):
            response = await client.get("/api/v1/portfolios")
            assert response.status == 401
            assert response.headers["RateLimit-Limit"] == "3"
            remaining.append(response.headers["RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        over = await client.get("/api/v1/portfolios")
        body = await read(over)
        assert over.status == 429
        assert body["error"] == "RATE_LIMITED"
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert body["details"]["retryAfter"] == int(over.headers["Retry-After"])
        assert over.headers["RateLimit-Remaining"] == "0"
        assert 0 <= int(over.headers["RateLimit-Reset"]) <= 60
        # The facade's own routes are not limited.
        assert (await client.get("/health")).status == 200


async def test_the_auth_limit_is_per_ip_and_separate_from_the_api_limit(
    open_facade: OpenFacade, limit_backend: dict[str, str]
) -> None:
    async with open_facade(
        RATE_LIMIT_AUTH="2/minute", RATE_LIMIT_API="0", **limit_backend
    ) as client:
        statuses = [
            (await client.post("/api/v1/auth/login", json={"email": "a@b.c"})).status
            for _ in range(3)
        ]
        assert statuses[:2] == [503, 503]  # users is down; the facade still counted them
        assert statuses[2] == 429
        # RATE_LIMIT_API=0 turns the other budget off: no headers, never 429.
        other = await client.get("/api/v1/portfolios")
        assert other.status == 401
        assert "RateLimit-Limit" not in other.headers


async def test_each_user_has_their_own_api_budget(
    open_facade: OpenFacade, limit_backend: dict[str, str]
) -> None:
    async with open_facade(RATE_LIMIT_API="2/minute", **limit_backend) as client:
        ann = {"Authorization": f"Bearer {access_token('ann')}"}
        bob = {"Authorization": f"Bearer {access_token('bob')}"}
        for _ in range(2):
            assert (await client.get("/api/v1/files", headers=ann)).status != 429
        assert (await client.get("/api/v1/files", headers=ann)).status == 429
        response = await client.get("/api/v1/files", headers=bob)
        assert response.status != 429
        assert response.headers["RateLimit-Remaining"] == "1"


# --- circuit breaker -----------------------------------------------------------------------


async def test_the_breaker_opens_after_repeated_unavailable_and_answers_fast(
    open_facade: OpenFacade,
) -> None:
    async with open_facade(PORTFOLIO_ADDRS="127.0.0.1:1") as client:
        for _ in range(5):
            response = await client.post("/api/v1/portfolios", json={"name": "Growth"})
            body = await read(response)
            assert response.status == 503
            assert body["error"] == "UNAVAILABLE"
            assert body["message"] == "the portfolio service is unavailable; retry shortly"
            assert "127.0.0.1" not in body["message"]  # gRPC's own text is not leaked
        opened = await client.post("/api/v1/portfolios", json={"name": "Growth"})
        body = await read(opened)
        assert opened.status == 503
        assert body["error"] == "SERVICE_UNAVAILABLE"
        assert "portfolio" in body["message"]
        assert int(opened.headers["Retry-After"]) >= 1
        # Other services are not affected.
        assert (await client.get("/api/v1/files")).status == 401


# --- with the real users service -----------------------------------------------------------

PASSWORD = "correct-horse-9"


@pytest.fixture
async def live_client(
    make_config: Callable[..., RuntimeConfig], users_service: RuntimeConfig
) -> AsyncIterator[Client]:
    """All five services up (users for real, on SQLite and PostgreSQL) behind the facade."""
    async with stubs(make_config, users_service.addresses["users"][0]) as addresses:
        config = load_facade_config(addresses, runtime=make_config("facade", **addresses))
        async with TestClient(TestServer(create_app(config))) as client:
            yield client


async def register(client: Client, email: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ann"}
    )
    assert response.status == 201, await response.text()
    return await read(response)


async def test_a_user_registers_through_the_facade_and_gets_tokens(live_client: Client) -> None:
    body = await register(live_client, "ann@example.com")
    assert body["success"] is True
    assert body["service"] == "users"
    user, tokens = body["data"]["user"], body["data"]["tokens"]
    assert user["email"] == "ann@example.com"
    assert "admin" in user["roles"]  # the first user; roles in their short form
    assert all(role in {"user", "admin"} for role in user["roles"])
    assert tokens["tokenType"].lower() == "bearer"
    assert tokens["accessToken"] and tokens["refreshToken"]


async def test_me_returns_the_user_as_the_envelope_data(live_client: Client) -> None:
    token = (await register(live_client, "cy@example.com"))["data"]["tokens"]["accessToken"]
    response = await live_client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    body = await read(response)
    assert response.status == 200
    assert body["data"]["email"] == "cy@example.com"
    assert "createdAt" in body["data"]


async def test_an_admin_list_carries_pagination_in_the_envelope(live_client: Client) -> None:
    token = (await register(live_client, "dee@example.com"))["data"]["tokens"]["accessToken"]
    await register(live_client, "eve@example.com")
    response = await live_client.get(
        "/api/v1/users", params={"limit": "1"}, headers={"Authorization": f"Bearer {token}"}
    )
    body = await read(response)
    assert response.status == 200
    assert len(body["data"]) == 1
    assert body["pagination"] == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}


async def test_service_field_violations_reach_the_envelope(live_client: Client) -> None:
    response = await live_client.post(
        "/api/v1/auth/register", json={"email": "fay@example.com", "password": "short"}
    )
    body = await read(response)
    assert response.status == 422
    assert body["error"] == "VALIDATION_ERROR"
    assert body["details"]["fields"] == [
        {"field": "password", "description": "must be at least 8 characters"}
    ]
    assert body["service"] == "users"


async def test_a_taken_email_is_a_409_with_the_service_reason(live_client: Client) -> None:
    await register(live_client, "gus@example.com")
    response = await live_client.post(
        "/api/v1/auth/register", json={"email": "GUS@example.com", "password": PASSWORD}
    )
    body = await read(response)
    assert response.status == 409
    assert body["error"] == "EMAIL_TAKEN"


async def test_health_all_is_200_when_all_five_serve(live_client: Client) -> None:
    response = await live_client.get("/health/all")
    body = await read(response)
    assert response.status == 200
    assert body["data"]["status"] == "ok"
    assert [s["status"] for s in body["data"]["services"]] == ["SERVING"] * 5


@pytest.mark.parametrize(
    "kind", ["another-ed25519-key", "hs256-keyed-with-the-public-key", "alg-none"]
)
async def test_a_token_not_signed_by_the_users_key_is_a_401_token_invalid(
    client: Any, kind: str
) -> None:
    forged = forged_tokens(TEST_USER_KEY.kid, TEST_USER_KEY.public_pem())[kind]
    response = await client.get(
        "/api/v1/chat/sessions", headers={"Authorization": f"Bearer {forged}"}
    )
    body = await read(response)
    assert response.status == 401
    assert body["error"] == "TOKEN_INVALID"


async def test_a_wrong_json_type_is_a_422_naming_the_field(live_client: Client) -> None:
    response = await live_client.post(
        "/api/v1/auth/login", json={"email": ["not", "a", "string"], "password": "x"}
    )
    body = await read(response)
    assert response.status == 422
    assert body["error"] == "VALIDATION_ERROR"
    assert [f["field"] for f in body["details"]["fields"]] == ["email"]


async def test_a_missing_field_is_a_422_naming_it(live_client: Client) -> None:
    response = await live_client.post("/api/v1/auth/login", json={"email": "gil@example.com"})
    body = await read(response)
    assert response.status == 422
    assert body["details"]["fields"] == [{"field": "password", "description": "is required"}]
    assert body["service"] == "users"


async def test_a_non_object_body_is_a_400(live_client: Client) -> None:
    response = await live_client.post("/api/v1/auth/login", json=["email", "password"])
    body = await read(response)
    assert response.status == 400
    assert body["error"] == "BAD_REQUEST"
