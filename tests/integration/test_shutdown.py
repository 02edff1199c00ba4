"""A real service process (`python -m services.portfolio`): it starts, answers health on both
ports, logs JSON lines with the caller's correlation id, and exits cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from tests.conftest import free_port, migrated_sqlite
from tests.integration.conftest import ROOT, Spawn, service_environment

GRACE = 5.0
# Generous: only catches a process that hangs instead of exiting (the machine is shared).
EXIT_WITHIN = GRACE + 30


async def test_a_started_service_answers_health_on_grpc_and_on_its_admin_port(
    spawn: Spawn,
) -> None:
    async with spawn("portfolio", SHUTDOWN_GRACE=str(GRACE)) as portfolio:
        async with grpc.aio.insecure_channel(portfolio.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="stockfolio.portfolio.v1.PortfolioService")
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        url = f"http://127.0.0.1:{portfolio.admin_port}/health"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert await response.json() == {
                "service": "portfolio",
                "status": "SERVING",
                "dependencies": {"database": "up"},
            }
        assert await portfolio.stop(signal.SIGTERM, EXIT_WITHIN) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_service_cleanly_and_it_logs_stopped(
    spawn: Spawn, sig: int, tmp_path: Path
) -> None:
    # Migrated first, as `make run` does: on a database without its tables the service retries
    # loading its alerts in the background, and one retry's warning could land between
    # "shutting down" and "stopped".
    database = await asyncio.to_thread(migrated_sqlite, "portfolio", tmp_path / "portfolio.db")
    async with spawn(
        "portfolio", SHUTDOWN_GRACE=str(GRACE), PORTFOLIO_DATABASE_URL=database
    ) as portfolio:
        assert await portfolio.stop(sig, EXIT_WITHIN) == 0, portfolio.stderr.read_text()
        lines = portfolio.log_lines()
    messages = [line["msg"] for line in lines]
    # Startup lines (which market data source was chosen) may come before "serving".
    serving = lines[messages.index("serving")]
    assert messages[-2:] == ["shutting down", "stopped"]
    assert lines[-2]["graceSeconds"] == GRACE
    assert (serving["port"], serving["adminPort"]) == (portfolio.port, portfolio.admin_port)
    assert {line["service"] for line in lines} == {"portfolio"}
    assert "Traceback" not in portfolio.stderr.read_text()


async def test_the_callers_correlation_id_is_in_the_services_log_line(spawn: Spawn) -> None:
    async with spawn("portfolio") as portfolio:
        async with grpc.aio.insecure_channel(portfolio.address) as channel:
            stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ListPortfolios(
                    portfolio_pb2.ListPortfoliosRequest(),
                    metadata=(("x-correlation-id", "shutdown-test-7"),),
                )
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert await portfolio.stop(signal.SIGTERM, EXIT_WITHIN) == 0
        (rpc,) = [line for line in portfolio.log_lines() if line["msg"] == "rpc"]
    assert rpc["correlationId"] == "shutdown-test-7"
    assert rpc["method"] == "/stockfolio.portfolio.v1.PortfolioService/ListPortfolios"
    assert rpc["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("service", "variable"),
    [("portfolio", "TOKEN_PUBLIC_KEYS"), ("users", "TOKEN_PRIVATE_KEY_FILE")],
)
async def test_production_without_its_token_keys_refuses_to_start_and_says_why(
    tmp_path: Path, service: str, variable: str
) -> None:
    env = service_environment(
        tmp_path / "var",
        service,
        STOCKFOLIO_ENV="production",
        DATABASE_URL=f"postgresql://nowhere/{service}",
        **{f"{service.upper()}_PORT": str(free_port())},
    )
    del env[variable]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"services.{service}",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 1
    assert f"{service}: configuration error" in err.decode()
    assert variable in err.decode()
    assert "must be set when STOCKFOLIO_ENV=production" in err.decode()
    assert not (tmp_path / "var" / "secrets").exists(), "production never makes a key"
