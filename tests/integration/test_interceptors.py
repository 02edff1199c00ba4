"""The server interceptor, through a real grpc.aio server on port 0: auth, roles, error mapping,
correlation ids, access logs and metrics.

The servicer here is a scripted PortfolioService written for these tests, and the session store
is `SessionBook` (conftest.py), a test double for the users service's sessions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from io import StringIO
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.context import client_address, correlation_id
from services.runtime.errors import InvalidArgument, NotFound, ResourceExhausted
from services.runtime.interceptors import require_identity
from services.runtime.server import Running
from services.runtime.status import parse_status
from tests.integration.conftest import Issue, Serve, SessionBook
from tests.waiting import until

PORTFOLIO = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]
USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
Stub = portfolio_pb2_grpc.PortfolioServiceStub


class ScriptedPortfolios(portfolio_pb2_grpc.PortfolioServiceServicer):
    """Each RPC does one thing the interceptor must handle; RPCs not listed stay unimplemented."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.finished = False

    async def ListPortfolios(
        self, request: portfolio_pb2.ListPortfoliosRequest, context: Any
    ) -> portfolio_pb2.ListPortfoliosResponse:
        # Echo what the interceptor put in the context: who calls, under which correlation id.
        caller = require_identity()
        seen = portfolio_pb2.Portfolio(
            id=correlation_id.get(),
            name=caller.user_id,
            description=",".join(sorted(caller.roles)),
            currency=client_address.get(),
        )
        return portfolio_pb2.ListPortfoliosResponse(portfolios=[seen])

    async def GetPortfolio(self, request: portfolio_pb2.GetPortfolioRequest, context: Any) -> Any:
        raise NotFound(f"portfolio {request.id} not found")

    async def CreatePortfolio(
        self, request: portfolio_pb2.CreatePortfolioRequest, context: Any
    ) -> Any:
        raise InvalidArgument.field("name", "must not be empty")

    async def UpdatePortfolio(
        self, request: portfolio_pb2.UpdatePortfolioRequest, context: Any
    ) -> Any:
        raise RuntimeError("connection to postgresql://admin:hunter2@db failed")

    async def ListPositions(self, request: portfolio_pb2.ListPositionsRequest, context: Any) -> Any:
        raise ResourceExhausted("too many requests", retry_after=7)

    async def CreateTrade(self, request: portfolio_pb2.CreateTradeRequest, context: Any) -> Any:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "market closed")

    async def DeletePortfolio(
        self, request: portfolio_pb2.DeletePortfolioRequest, context: Any
    ) -> portfolio_pb2.DeletePortfolioResponse:
        self.entered.set()
        await self.release.wait()
        self.finished = True
        return portfolio_pb2.DeletePortfolioResponse()


@pytest.fixture
async def portfolios(serve: Serve) -> AsyncIterator[tuple[ScriptedPortfolios, Running]]:
    servicer = ScriptedPortfolios()
    async with serve(
        servicer, portfolio_pb2_grpc.add_PortfolioServiceServicer_to_server, PORTFOLIO
    ) as service:
        yield servicer, service


@pytest.fixture
async def channel(
    portfolios: tuple[ScriptedPortfolios, Running],
) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{portfolios[1].port}") as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


async def log_lines(log: StringIO, count: int) -> list[dict[str, Any]]:
    """The log's JSON lines once there are `count` of them: the access line is written when the
    call has ended on the server's side, which may be after the client saw its answer."""
    await until(lambda: len(log.getvalue().splitlines()) >= count, f"{count} log lines")
    return [json.loads(x) for x in log.getvalue().splitlines()]


def rejection(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    """The status code and the ErrorInfo reason a failed call carries."""
    status = parse_status(error.trailing_metadata())
    assert status is not None, "every rejection carries a google.rpc.Status"
    assert status.code == error.code().value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return error.code(), info.reason


def handled(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "stockfolio_grpc_server_handled_total",
        {"service": "portfolio", "method": method, "code": code},
    )
    return value or 0.0


async def test_a_call_without_a_token_is_unauthenticated_token_missing(
    stub: Stub, sessions: SessionBook
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest())
    assert rejection(raised.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    assert raised.value.details() == "missing bearer token"
    assert sessions.asked == [], "no token, no session lookup"


async def test_a_garbled_token_is_unauthenticated_token_invalid(
    stub: Stub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListPortfolios(
            portfolio_pb2.ListPortfoliosRequest(), metadata=(("authorization", "Bearer x.y.z"),)
        )
    assert rejection(raised.value) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_a_valid_token_with_a_live_session_reaches_the_servicer_with_its_identity(
    stub: Stub, bearer: Issue, sessions: SessionBook
) -> None:
    reply = await stub.ListPortfolios(
        portfolio_pb2.ListPortfoliosRequest(),
        metadata=(*bearer(user_id="u-7", session_id="s-7", roles=["user", "admin"]),),
    )
    (seen,) = reply.portfolios
    assert (seen.name, seen.description) == ("u-7", "admin,user")
    assert seen.currency == "127.0.0.1", "the client address is the gRPC peer's host"
    assert len(seen.id) == 32, "a correlation id is minted when the caller sends none"
    assert sessions.asked == ["s-7"]


async def test_an_unimplemented_rpc_behind_a_valid_token_answers_unimplemented(
    stub: Stub, bearer: Issue
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetPerformance(
            portfolio_pb2.GetPerformanceRequest(portfolio_id="p"), metadata=bearer()
        )
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_revoked_session_is_unauthenticated_session_revoked(
    stub: Stub, bearer: Issue, sessions: SessionBook
) -> None:
    sessions.revoked.add("s-gone")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListPortfolios(
            portfolio_pb2.ListPortfoliosRequest(), metadata=bearer(session_id="s-gone")
        )
    assert rejection(raised.value) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")


async def test_a_domain_error_becomes_its_status_with_details(stub: Stub, bearer: Issue) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetPortfolio(portfolio_pb2.GetPortfolioRequest(id="p-404"), metadata=bearer())
    assert rejection(raised.value) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert raised.value.details() == "portfolio p-404 not found"


@pytest.mark.parametrize(
    ("rpc", "message", "code", "why", "detail"),
    [
        pytest.param(
            "CreatePortfolio",
            portfolio_pb2.CreatePortfolioRequest(name="x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_ERROR",
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="name", description="must not be empty"
                    )
                ]
            ),
            id="invalid input carries BadRequest field violations",
        ),
        pytest.param(
            "ListPositions",
            portfolio_pb2.ListPositionsRequest(portfolio_id="p"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=7)),
            id="rate limiting carries RetryInfo",
        ),
    ],
)
async def test_a_domain_errors_second_detail_reaches_the_client(
    stub: Stub,
    bearer: Issue,
    rpc: str,
    message: Message,
    code: grpc.StatusCode,
    why: str,
    detail: Message,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, rpc)(message, metadata=bearer())
    assert rejection(raised.value) == (code, why)
    status = parse_status(raised.value.trailing_metadata())
    assert status is not None
    sent = type(detail)()
    assert status.details[1].Unpack(sent)
    assert sent == detail


async def test_an_unexpected_exception_is_internal_and_leaks_nothing(
    stub: Stub, bearer: Issue, rpc_log: StringIO
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdatePortfolio(
            portfolio_pb2.UpdatePortfolioRequest(id="p-1"), metadata=bearer()
        )
    assert rejection(raised.value) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert raised.value.details() == "internal error"
    assert "hunter2" not in str(raised.value.trailing_metadata())
    failure, access = await log_lines(rpc_log, 2)
    assert failure["msg"] == "unhandled error"
    assert "RuntimeError: connection to postgresql" in failure["exc"], "operators see the cause"
    assert (access["level"], access["code"]) == ("error", "INTERNAL")
    assert failure["correlationId"] == access["correlationId"]


async def test_an_abort_in_the_servicer_passes_through_and_is_counted_with_its_code(
    stub: Stub, bearer: Issue
) -> None:
    before = handled("CreateTrade", "FAILED_PRECONDITION")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateTrade(
            # valid by the proto's rules, so the servicer's own error is the one that comes back
            portfolio_pb2.CreateTradeRequest(
                portfolio_id="p", side=portfolio_pb2.TRADE_SIDE_BUY, quantity="1"
            ),
            metadata=bearer(),
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "market closed"
    # The server counts once the call has ended on its side, which may be after the client saw it.
    await until(lambda: handled("CreateTrade", "FAILED_PRECONDITION") > before, "the count")
    assert handled("CreateTrade", "FAILED_PRECONDITION") == before + 1


async def test_calls_are_counted_by_method_and_code(stub: Stub, bearer: Issue) -> None:
    ok, unauthenticated = (
        handled("ListPortfolios", "OK"),
        handled("ListPortfolios", "UNAUTHENTICATED"),
    )
    for _ in range(3):
        await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=bearer())
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest())
    # The server counts a call as it finishes, which the client may hear of first.
    await until(lambda: handled("ListPortfolios", "UNAUTHENTICATED") > unauthenticated, "the count")
    assert handled("ListPortfolios", "OK") == ok + 3
    assert handled("ListPortfolios", "UNAUTHENTICATED") == unauthenticated + 1


async def test_a_call_the_client_cancels_is_counted_as_cancelled_not_ok(
    stub: Stub,
    bearer: Issue,
    portfolios: tuple[ScriptedPortfolios, Running],
) -> None:
    servicer = portfolios[0]
    before_ok = handled("DeletePortfolio", "OK")
    before_cancelled = handled("DeletePortfolio", "CANCELLED")
    call = stub.DeletePortfolio(portfolio_pb2.DeletePortfolioRequest(id="p-1"), metadata=bearer())
    await asyncio.wait_for(servicer.entered.wait(), timeout=10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # the server learns of the cancellation asynchronously
    await until(lambda: handled("DeletePortfolio", "CANCELLED") > before_cancelled, "the count")
    assert handled("DeletePortfolio", "CANCELLED") == before_cancelled + 1
    assert handled("DeletePortfolio", "OK") == before_ok
    assert not servicer.finished


async def test_a_call_past_its_deadline_is_counted_as_deadline_exceeded(
    stub: Stub,
    bearer: Issue,
    portfolios: tuple[ScriptedPortfolios, Running],
) -> None:
    before = handled("DeletePortfolio", "DEADLINE_EXCEEDED")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.DeletePortfolio(
            portfolio_pb2.DeletePortfolioRequest(id="p-1"), metadata=bearer(), timeout=0.2
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await until(lambda: handled("DeletePortfolio", "DEADLINE_EXCEEDED") > before, "the count")
    assert handled("DeletePortfolio", "DEADLINE_EXCEEDED") == before + 1
    assert not portfolios[0].finished


async def test_the_callers_correlation_id_reaches_the_servicer_and_the_log_line(
    stub: Stub, bearer: Issue, rpc_log: StringIO
) -> None:
    reply = await stub.ListPortfolios(
        portfolio_pb2.ListPortfoliosRequest(),
        metadata=(*bearer(), ("x-correlation-id", "trace-abc-123")),
    )
    assert reply.portfolios[0].id == "trace-abc-123"
    (line,) = await log_lines(rpc_log, 1)
    assert line["correlationId"] == "trace-abc-123"
    assert line["msg"] == "rpc"
    assert line["method"] == "/stockfolio.portfolio.v1.PortfolioService/ListPortfolios"
    assert line["code"] == "OK"
    assert line["service"] == "portfolio"
    assert isinstance(line["ms"], float)


@pytest.mark.parametrize("sent", ["", "x" * 129])
async def test_an_unusable_correlation_id_is_replaced_by_a_fresh_one(
    stub: Stub, bearer: Issue, sent: str
) -> None:
    metadata = (*bearer(), ("x-correlation-id", sent))
    reply = await stub.ListPortfolios(portfolio_pb2.ListPortfoliosRequest(), metadata=metadata)
    assert reply.portfolios[0].id != sent
    assert len(reply.portfolios[0].id) == 32


async def test_the_client_address_is_the_right_most_hop_a_trusted_proxy_forwarded(
    stub: Stub, bearer: Issue
) -> None:
    # The test's loopback peer is a trusted proxy (the default TRUSTED_PROXIES); 10.0.0.1 is
    # not, so it is the client, and whatever it wrote to its left is not believed.
    reply = await stub.ListPortfolios(
        portfolio_pb2.ListPortfoliosRequest(),
        metadata=(*bearer(), ("x-forwarded-for", "203.0.113.9, 10.0.0.1")),
    )
    assert reply.portfolios[0].currency == "10.0.0.1"


async def test_health_and_reflection_need_no_token_and_are_not_logged(
    channel: grpc.aio.Channel, rpc_log: StringIO
) -> None:
    health = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=PORTFOLIO.full_name)
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    await call.done_writing()
    names = {s.name for s in answer.list_services_response.service}
    assert PORTFOLIO.full_name in names
    assert rpc_log.getvalue() == "", "health probes and reflection would drown the access log"


async def test_required_role_admin_is_enforced(
    serve: Serve, bearer: Issue, sessions: SessionBook
) -> None:
    # The generated base servicer: every RPC that gets past the interceptor is UNIMPLEMENTED.
    async with (
        serve(
            users_pb2_grpc.UsersServiceServicer(),
            users_pb2_grpc.add_UsersServiceServicer_to_server,
            USERS,
        ) as service,
        grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = users_pb2_grpc.UsersServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListUsers(users_pb2.ListUsersRequest(), metadata=bearer(roles=["user"]))
        assert rejection(raised.value) == (grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN")
        assert raised.value.details() == "requires the admin role"

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListUsers(
                users_pb2.ListUsersRequest(), metadata=bearer(roles=["user", "admin"])
            )
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED, "admins get through"

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetMe(users_pb2.GetMeRequest(), metadata=bearer(roles=["user"]))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED, "no role needed for GetMe"

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Login(users_pb2.LoginRequest(email="a@b.c", password="pw"))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED, "Login is public"
        assert sessions.asked == ["s-1", "s-1", "s-1"], "public RPCs check no session"


async def test_an_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/stockfolio.portfolio.v1.PortfolioService/Nope")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_refused_call_is_counted_and_logged_before_its_caller_hears_the_refusal(
    stub: Stub, bearer: Issue, rpc_log: StringIO
) -> None:
    # Read at once, not polled: the interceptor counts and logs before the status leaves.
    for attempt in range(1, 21):
        before = handled("GetPortfolio", "NOT_FOUND")
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetPortfolio(portfolio_pb2.GetPortfolioRequest(id="p-1"), metadata=bearer())
        assert handled("GetPortfolio", "NOT_FOUND") == before + 1
        lines = [json.loads(x) for x in rpc_log.getvalue().splitlines()]
        assert [line["code"] for line in lines] == ["NOT_FOUND"] * attempt
