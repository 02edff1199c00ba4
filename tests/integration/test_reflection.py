"""Server reflection under both names grpcurl and buf curl ask for, on a real stub service."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.portfolio.server import build
from services.runtime.config import RuntimeConfig
from services.runtime.server import Running, running

PORTFOLIO = "stockfolio.portfolio.v1.PortfolioService"
V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
BUF = Path(sys.executable).parent / "buf"


@pytest.fixture
async def portfolio(make_config: Callable[..., RuntimeConfig]) -> AsyncIterator[Running]:
    """The real portfolio stub; its users channel points nowhere, which reflection never needs."""
    async with running(make_config("portfolio", USERS_ADDRS="127.0.0.1:1"), build, port=0) as svc:
        yield svc


async def ask(
    call: grpc.aio.StreamStreamCall, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    await call.write(request)
    answer = await call.read()
    assert isinstance(answer, reflection_pb2.ServerReflectionResponse)
    return answer


async def test_v1alpha_lists_the_service_health_and_reflection(portfolio: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as channel:
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        answer = await ask(call, reflection_pb2.ServerReflectionRequest(list_services=""))
        await call.done_writing()
    names = {s.name for s in answer.list_services_response.service}
    assert names == {
        PORTFOLIO,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_v1_answers_list_services_and_describes_the_service(portfolio: Running) -> None:
    # v1's messages are wire-identical to v1alpha's, so v1alpha's classes build the request.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as channel:
        info = channel.stream_stream(
            V1_METHOD,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        call = info()
        listed = await ask(call, reflection_pb2.ServerReflectionRequest(list_services=""))
        described = await ask(
            call, reflection_pb2.ServerReflectionRequest(file_containing_symbol=PORTFOLIO)
        )
        await call.done_writing()
    assert PORTFOLIO in {s.name for s in listed.list_services_response.service}
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    (portfolio_file,) = [f for f in files if f.package == "stockfolio.portfolio.v1"]
    methods = {m.name for s in portfolio_file.service for m in s.method}
    assert {"ListPortfolios", "CreateTrade", "GetQuote"} <= methods


async def test_reflection_reports_an_unknown_symbol_as_not_found(portfolio: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{portfolio.port}") as channel:
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        answer = await ask(
            call, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Thing")
        )
        await call.done_writing()
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.skipif(not BUF.exists() and shutil.which("buf") is None, reason="buf not installed")
async def test_buf_curl_lists_the_services_methods_through_reflection(portfolio: Running) -> None:
    buf = str(BUF) if BUF.exists() else "buf"
    process = await asyncio.create_subprocess_exec(
        buf,
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--list-methods",
        f"http://127.0.0.1:{portfolio.port}",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    methods = set(out.decode().split())
    assert f"{PORTFOLIO}/ListPortfolios" in methods
    assert f"{PORTFOLIO}/CreateTrade" in methods
    assert "grpc.health.v1.Health/Check" in methods
