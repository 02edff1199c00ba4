"""What a lapsed access token (signed by the users service, past its expiry) reaches, now that
CheckSession (proto rule `lapsed_token`) takes one: CheckSession and nothing else, over gRPC on
any service (every RPC of every domain API, streams included), through the facade's REST routes
and its WebSockets; and which tokens CheckSession refuses (the wrong issuer, audience, type or
algorithm, no `sid`). CheckSession is not a REST route, nor in the OpenAPI document or the web
client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from aiohttp import WSMsgType
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from facade.routes import DOMAIN_APIS
from services.runtime.auth import bearer
from services.runtime.config import RuntimeConfig
from services.runtime.descriptors import method_rule
from services.runtime.server import running
from services.users.server import build as build_users
from tests.conftest import TEST_SERVICE_KEY, TEST_USER_KEY, users_codec
from tests.integration.conftest import FacadeInFront, Serve, SessionBook
from tests.integration.rest_client import PASSWORD, register
from tests.rpc_errors import expect_error, reason

ROOT = Path(__file__).resolve().parents[2]
CHECK_SESSION = "/stockfolio.users.v1.UsersService/CheckSession"


def lapsed_token(*, user_id: str = "u-1", session_id: str = "s-1") -> str:
    token, expires = users_codec(access_ttl=-60).issue_access(
        user_id=user_id, session_id=session_id, email="ann@example.com", roles=["user", "admin"]
    )
    assert expires < datetime.now(UTC)
    return token


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor, token: str) -> None:
    """`method` called with an empty request (or stream of none) and `token`; raises its error."""
    request_type = GetMessageClass(method.input_type)
    response_type = GetMessageClass(method.output_type)
    shape = (
        ("stream" if method.client_streaming else "unary")
        + "_"
        + ("stream" if method.server_streaming else "unary")
    )
    multicallable = getattr(channel, shape)(
        _path(method),
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )

    async def no_requests() -> AsyncIterator[Any]:
        return
        yield

    request: Any = no_requests() if method.client_streaming else request_type()
    call = multicallable(request, metadata=(bearer(token),), timeout=5)
    if method.server_streaming:
        async for _ in call:
            pass
    else:
        await call


def _base_servicer(descriptor: ServiceDescriptor) -> tuple[Any, Callable[[Any, Any], None]]:
    """The generated base servicer of `descriptor` (every method UNIMPLEMENTED) and its adder."""
    module = __import__(
        f"stockfolio.{descriptor.file.package.split('.')[1]}.v1."
        f"{Path(descriptor.file.name).stem}_pb2_grpc",
        fromlist=["_"],
    )
    servicer = getattr(module, f"{descriptor.name}Servicer")()
    return servicer, getattr(module, f"add_{descriptor.name}Servicer_to_server")


@pytest.mark.parametrize("service", sorted(DOMAIN_APIS))
async def test_a_lapsed_token_of_a_live_session_passes_auth_only_for_check_session(
    service: str, serve: Serve, sessions: SessionBook
) -> None:
    """Every non-public RPC of every domain API, behind the real interceptor and rules, with
    the token of a session that is live (so only the token's expiry can refuse it):
    CheckSession alone gets past auth (to the generated base servicer's UNIMPLEMENTED); every
    other RPC, unary or streamed either way, is refused TOKEN_EXPIRED before its servicer
    runs."""
    descriptor = DOMAIN_APIS[service]
    servicer, add = _base_servicer(descriptor)
    token = lapsed_token()
    async with (
        serve(servicer, add, descriptor) as running_service,
        grpc.aio.insecure_channel(f"127.0.0.1:{running_service.port}") as channel,
    ):
        reached = []
        for method in descriptor.methods:
            if method_rule(method).public:
                continue  # no token needed: register, login, refresh
            try:
                await _call(channel, method, token)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    assert reason(error) == "TOKEN_EXPIRED", (method.name, error.details())
                    continue
                if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                    continue  # internal: refused too (never for a user's token)
                reached.append((method.name, error.code()))
            else:
                reached.append((method.name, grpc.StatusCode.OK))
    expected = [("CheckSession", grpc.StatusCode.UNIMPLEMENTED)] if service == "users" else []
    assert reached == expected
    assert len(descriptor.methods) > 3


def _sign(claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(
        claims,
        TEST_USER_KEY.private,
        algorithm="EdDSA",
        headers={"kid": TEST_USER_KEY.kid, **(headers or {})},
    )


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, default=str).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


@pytest.fixture
async def users(users_service: RuntimeConfig) -> AsyncIterator[users_pb2_grpc.UsersServiceStub]:
    async with grpc.aio.insecure_channel(users_service.addresses["users"][0]) as channel:
        yield users_pb2_grpc.UsersServiceStub(channel)


async def test_check_session_refuses_every_token_but_a_genuine_user_access_token(
    users: users_pb2_grpc.UsersServiceStub,
) -> None:
    """Expired tokens of a real, live session, each altered in one way: another issuer, another
    audience, another or no `typ`, no `sid`, an empty `sid`, the HS256 trick keyed with our
    public key, `alg: none`, no `kid`, the facade's service key signing an `access` token. None
    gets an answer; the genuine one does (LIVE)."""
    signed = await users.Register(
        users_pb2.RegisterRequest(email="eve@example.com", password=PASSWORD)
    )
    genuine = jwt.decode(signed.tokens.access_token, options={"verify_signature": False})
    past = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
    base = {**genuine, "exp": past, "iat": past - 900}
    without_sid = {k: v for k, v in base.items() if k != "sid"}
    without_typ = {k: v for k, v in base.items() if k != "typ"}
    public_pem = TEST_USER_KEY.public_pem().encode()
    hs256 = jwt.encode(base, "x" * 32, algorithm="HS256", headers={"kid": TEST_USER_KEY.kid}).split(
        "."
    )
    # Re-signed with the public key's bytes as an HMAC secret (PyJWT refuses to do it itself).
    signing_input = f"{hs256[0]}.{hs256[1]}".encode()
    mac = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    hs256_token = f"{hs256[0]}.{hs256[1]}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    service_signed = jwt.encode(
        base, TEST_SERVICE_KEY.private, algorithm="EdDSA", headers={"kid": TEST_SERVICE_KEY.kid}
    )
    attacks = {
        "issuer": _sign({**base, "iss": "someone-else"}),
        "audience": _sign({**base, "aud": "terminal"}),
        "refresh typ": _sign({**base, "typ": "refresh"}),
        "service typ": _sign({**base, "typ": "service"}),
        "no typ": _sign(without_typ),
        "no sid": _sign(without_sid),
        "hs256 with the public key": hs256_token,
        "alg none": _unsigned({"alg": "none", "kid": TEST_USER_KEY.kid, "typ": "JWT"}, base),
        "no kid": jwt.encode(base, TEST_USER_KEY.private, algorithm="EdDSA"),
        "service key": service_signed,
    }
    for name, token in attacks.items():
        error = await expect_error(
            users.CheckSession(users_pb2.CheckSessionRequest(), metadata=(bearer(token),)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert reason(error) == "TOKEN_INVALID", name
    answer = await users.CheckSession(
        users_pb2.CheckSessionRequest(), metadata=(bearer(_sign(base)),)
    )
    assert (answer.session_id, answer.state) == (genuine["sid"], users_pb2.SESSION_STATE_LIVE)


async def test_a_lapsed_token_cannot_validate_log_out_or_change_anything_on_users(
    users: users_pb2_grpc.UsersServiceStub,
) -> None:
    """A stolen expired token is worth one thing: CheckSession's answer. It cannot validate,
    log its session (or every session) out, change the profile or refresh."""
    signed = await users.Register(
        users_pb2.RegisterRequest(email="fay@example.com", password=PASSWORD)
    )
    claims = jwt.decode(signed.tokens.access_token, options={"verify_signature": False})
    old = lapsed_token(user_id=claims["sub"], session_id=claims["sid"])
    meta = (bearer(old),)
    for call in (
        users.ValidateToken(users_pb2.ValidateTokenRequest(), metadata=meta),
        users.GetMe(users_pb2.GetMeRequest(), metadata=meta),
        users.Logout(users_pb2.LogoutRequest(all_sessions=True), metadata=meta),
        users.Logout(users_pb2.LogoutRequest(), metadata=meta),
    ):
        error = await expect_error(call, grpc.StatusCode.UNAUTHENTICATED)
        assert reason(error) == "TOKEN_EXPIRED"
    refused = await expect_error(
        users.Refresh(users_pb2.RefreshRequest(refresh_token=old)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert reason(refused) == "TOKEN_INVALID"  # an access token is no refresh token
    # The session stands: nothing above touched it.
    live = await users.ValidateToken(
        users_pb2.ValidateTokenRequest(), metadata=(bearer(signed.tokens.access_token),)
    )
    assert (live.valid, live.session_id) == (True, claims["sid"])


async def test_the_verified_token_cache_neither_serves_nor_learns_a_lapsed_read(
    make_config: Callable[..., RuntimeConfig], users_database: str
) -> None:
    """A token used while it worked is in the interceptor's cache of verified tokens; once it
    expires, CheckSession still answers for it and every other RPC still refuses it, in either
    order (a lapsed read neither comes from the cache nor puts the token back in it)."""
    config = make_config(
        "users", USERS_DATABASE_URL=users_database, BCRYPT_COST="4", ACCESS_TOKEN_TTL="5"
    )
    async with (
        running(config, build_users, port=0, grace=0) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        users = users_pb2_grpc.UsersServiceStub(channel)
        signed = await users.Register(
            users_pb2.RegisterRequest(email="gil@example.com", password=PASSWORD)
        )
        meta = (bearer(signed.tokens.access_token),)
        assert (await users.GetMe(users_pb2.GetMeRequest(), metadata=meta)).user.email
        answer = await users.CheckSession(users_pb2.CheckSessionRequest(), metadata=meta)
        assert answer.state == users_pb2.SESSION_STATE_LIVE
        expires = signed.tokens.access_token_expires_at.ToDatetime(UTC)
        wait = (expires - datetime.now(UTC)).total_seconds() + 0.2
        await asyncio.sleep(max(0.0, wait))
        for _ in range(2):
            answer = await users.CheckSession(users_pb2.CheckSessionRequest(), metadata=meta)
            assert answer.state == users_pb2.SESSION_STATE_LIVE
            error = await expect_error(
                users.GetMe(users_pb2.GetMeRequest(), metadata=meta),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert reason(error) == "TOKEN_EXPIRED"


async def test_check_session_is_no_rest_route_nor_in_openapi_nor_in_the_web_client(
    facade_in_front: FacadeInFront, users_service: RuntimeConfig
) -> None:
    async with facade_in_front({"users": users_service.addresses["users"][0]}) as client:
        document = await (await client.get("/api/v1/openapi.json")).text()
        assert "CheckSession" not in document
        assert "checkSession" not in document
        assert "SessionState" not in document
        user = await register(client)
        for method, path in (
            ("GET", "/api/v1/auth/check-session"),
            ("POST", "/api/v1/auth/check-session"),
            ("POST", "/api/v1/auth/checkSession"),
            ("POST", CHECK_SESSION),
            ("GET", "/api/v1/users/CheckSession"),
        ):
            response = await client.request(method, path, headers=user.headers)
            assert response.status in (404, 405), (method, path, response.status)
            assert "session_id" not in await response.text()
    generated = [
        p
        for p in (ROOT / "web").rglob("*.ts")
        if "node_modules" not in p.parts and "dist" not in p.parts
    ]
    assert generated
    assert not [
        p for p in generated if "CheckSession" in p.read_text() or "checkSession" in p.read_text()
    ]


async def test_a_lapsed_token_gets_nothing_through_the_facade(
    facade_in_front: FacadeInFront, users_service: RuntimeConfig
) -> None:
    """REST (a read, the validate route, logout) and each WebSocket refuse an expired token of
    a live session: 401 TOKEN_EXPIRED, and the socket is never authenticated."""
    async with facade_in_front({"users": users_service.addresses["users"][0]}) as client:
        user = await register(client)
        claims = jwt.decode(user.token, options={"verify_signature": False})
        old = lapsed_token(user_id=claims["sub"], session_id=claims["sid"])
        headers = {"Authorization": f"Bearer {old}"}
        for method, path in (
            ("GET", "/api/v1/users/me"),
            ("GET", "/api/v1/auth/validate"),
            ("POST", "/api/v1/auth/logout"),
        ):
            response = await client.request(method, path, headers=headers, json={})
            body = await response.json()
            assert (response.status, body["error"]) == (401, "TOKEN_EXPIRED"), (path, body)
        for socket in ("/ws/terminal", "/ws/chat", "/ws/portfolio"):
            ws = await client.ws_connect(f"{socket}?token={old}")
            replies = []
            while True:
                message = await ws.receive(timeout=15)
                if message.type is not WSMsgType.TEXT:
                    break
                replies.append(json.loads(message.data))
            assert {"type": "auth_ok"} not in replies, (socket, replies)
            assert ws.close_code == 4401, (socket, ws.close_code, replies)
        # Still logged in: the refused calls changed nothing.
        me = await client.get("/api/v1/users/me", headers=user.headers)
        assert me.status == 200
