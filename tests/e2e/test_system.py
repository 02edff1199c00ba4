"""The started system answers as an operator expects: health, metrics, reflection, OpenAPI."""

from __future__ import annotations

import subprocess

import pytest

from services.runtime.config import DOMAIN_SERVICES
from tests.system_harness import BIN, System, request

pytestmark = pytest.mark.e2e

GRPC_SERVICE_NAMES = {
    "users": "stockfolio.users.v1.UsersService",
    "assistant": "stockfolio.assistant.v1.AssistantService",
    "terminal": "stockfolio.terminal.v1.TerminalService",
    "workspace": "stockfolio.workspace.v1.WorkspaceService",
    "portfolio": "stockfolio.portfolio.v1.PortfolioService",
}


def test_health_all_lists_every_service_as_serving_with_its_latency(system: System) -> None:
    answer = request("GET", f"{system.facade_url}/health/all")

    assert answer.status == 200, answer.body
    assert answer.body["success"] is True
    assert answer.body["data"]["status"] == "ok"
    services = {entry["name"]: entry for entry in answer.body["data"]["services"]}
    assert sorted(services) == sorted(DOMAIN_SERVICES)
    for name in DOMAIN_SERVICES:
        entry = services[name]
        assert entry["status"] == "SERVING", entry
        assert isinstance(entry["latencyMs"], int | float), entry
        assert entry["latencyMs"] >= 0, entry
        assert [replica["address"] for replica in entry["addresses"]] == [
            f"127.0.0.1:{system.grpc_ports[name]}"
        ]


@pytest.mark.parametrize("service", DOMAIN_SERVICES)
def test_admin_port_answers_health_from_the_same_health_state(system: System, service: str) -> None:
    answer = request("GET", f"http://127.0.0.1:{system.admin_ports[service]}/health")

    assert answer.status == 200, answer.body
    assert answer.body["service"] == service
    assert answer.body["status"] == "SERVING"


@pytest.mark.parametrize("service", DOMAIN_SERVICES)
def test_admin_port_serves_prometheus_metrics(system: System, service: str) -> None:
    answer = request("GET", f"http://127.0.0.1:{system.admin_ports[service]}/metrics")

    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE stockfolio_grpc_server_handled_total counter" in answer.body
    assert "process_cpu_seconds_total" in answer.body


@pytest.mark.parametrize("service", DOMAIN_SERVICES)
def test_reflection_lists_the_service_health_and_reflection(system: System, service: str) -> None:
    listed = subprocess.run(
        [
            str(BIN / "buf"),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "--list-services",
            f"http://127.0.0.1:{system.grpc_ports[service]}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert GRPC_SERVICE_NAMES[service] in names, listed.stdout
    assert "grpc.health.v1.Health" in names, listed.stdout
    assert "grpc.reflection.v1alpha.ServerReflection" in names, listed.stdout


def test_openapi_document_lists_the_login_route(system: System) -> None:
    answer = request("GET", f"{system.facade_url}/api/v1/openapi.json")

    assert answer.status == 200, answer.body
    document = answer.body
    assert str(document["openapi"]).startswith("3.")
    assert "post" in document["paths"]["/api/v1/auth/login"]
    assert "post" in document["paths"]["/api/v1/auth/register"]
