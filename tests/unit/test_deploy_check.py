"""`make deploy-check` (tools/deploy_check.py): the repository's deployment files pass, and each
check finds the mistake it is there for in a broken copy."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tools.deploy_check import (
    COMPOSE,
    ENV_EXAMPLE,
    K8S,
    KUBERNETES_VERSION,
    check_compose,
    check_deployments,
    check_env_example,
    check_manifests,
    main,
    variables_read,
)


@pytest.fixture(scope="module")
def read() -> dict[str, set[str]]:
    return variables_read()


def test_the_repository_passes_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s)" in out
    assert out.count("ok  ") == 4


def test_the_list_comes_from_each_process_s_own_loader(read: Mapping[str, set[str]]) -> None:
    assert {"FRONTEND_URL", "WS_SEND_QUEUE_BYTES", "FACADE_PORT"} <= read["facade"]
    assert {"TERMINAL_SANDBOX", "SANDBOX_MEMORY_BYTES", "TERMINAL_PORT"} <= read[
        "services.terminal"
    ]
    assert {"WEB_PORT", "WEB_API_URL"} <= read["facade.webapp"]
    # A service reads its own port and database, not another's.
    assert "USERS_DATABASE_URL" in read["services.users"]
    assert "USERS_DATABASE_URL" not in read["services.portfolio"]


def _copy_k8s(tmp_path: Path) -> Path:
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    return folder


def test_a_misspelt_manifest_field_is_refused(tmp_path: Path) -> None:
    folder = _copy_k8s(tmp_path)
    users = folder / "users.yaml"
    users.write_text(users.read_text().replace("readinessProbe:", "readinesProbe:", 1))
    problems = check_manifests(KUBERNETES_VERSION, folder)
    assert len(problems) == 1
    assert problems[0].startswith("users.yaml: Deployment users:")
    assert "readinesProbe" in problems[0]


def test_a_deployment_without_its_database_url_would_not_start(
    tmp_path: Path, read: Mapping[str, set[str]]
) -> None:
    folder = _copy_k8s(tmp_path)
    users = folder / "users.yaml"
    documents = list(yaml.safe_load_all(users.read_text()))
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [v for v in container["env"] if v["name"] != "USERS_DATABASE_URL"]
    users.write_text(yaml.safe_dump_all(documents))
    problems = check_deployments(read, folder)
    assert problems == [
        "Deployment users: python -m services.users would not start: "
        "USERS_DATABASE_URL or DATABASE_URL must be set in production"
    ]


def test_a_variable_no_process_reads_is_named(tmp_path: Path, read: Mapping[str, set[str]]) -> None:
    folder = _copy_k8s(tmp_path)
    config = folder / "configmap.yaml"
    config.write_text(config.read_text().replace("LOG_LEVEL:", "LOG_LEVLE:", 1))
    assert check_deployments(read, folder) == [
        "ConfigMap stockfolio-config sets LOG_LEVLE, which no process reads"
    ]


def test_compose_is_checked_against_the_specification(
    tmp_path: Path, read: Mapping[str, set[str]]
) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("restart:", "restrat:", 1))
    problems = check_compose(read, broken)
    assert problems
    assert all("restrat" in problem for problem in problems)


def test_env_example_must_list_every_variable_and_nothing_else(
    tmp_path: Path, read: Mapping[str, set[str]]
) -> None:
    example = tmp_path / ".env.example"
    text = ENV_EXAMPLE.read_text()
    example.write_text(text.replace("#TERMINAL_SANDBOX=bwrap\n", "") + "#NO_SUCH_SETTING=1\n")
    assert check_env_example(read, example) == [
        ".env.example does not list TERMINAL_SANDBOX "
        "(read by services.terminal, services.workspace)",
        ".env.example lists NO_SUCH_SETTING, which no process reads",
    ]
