"""`make deploy-check`: the deployment files checked offline, before any cluster sees them.

1. Every Kubernetes manifest in deploy/k8s against the API schemas of the Kubernetes version
   we target (kubernetes-validate, strict: an unknown or misspelt field is an error).
2. deploy/compose.yaml: `docker compose config` where the compose plugin exists, and always
   against the Compose Specification's own JSON Schema (deploy/schema/compose-spec.json).
3. The environment, from one list: the variables each process reads, found by running its own
   typed config loader (services/*/config.py, facade/config.py, ...) on an environment that
   records every name asked for. Each is in .env.example, and .env.example names nothing else;
   the manifests and compose set nothing a process does not read (a misspelt name would be
   silently ignored); and each Deployment's environment - the ConfigMap, its Secret references
   and its own `env` - starts its process in production mode (the loader raises on what is
   missing, as the process would at start).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from facade.config import load_facade_config
from facade.webapp.config import load_web_config
from services.assistant.config import load_assistant_config
from services.portfolio.config import load_portfolio_config
from services.runtime.config import ConfigError, RuntimeConfig, load_runtime_config
from services.runtime.keys import SigningKey
from services.terminal.config import load_terminal_config
from services.users.config import load_users_config
from services.workspace.config import load_workspace_config

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose.yaml"
COMPOSE_SCHEMA = REPO / "deploy" / "schema" / "compose-spec.json"
ENV_EXAMPLE = REPO / ".env.example"
# The Kubernetes release the manifests target (the oldest minor still supported upstream when
# this was written; kubernetes-validate ships schemas for 1.25 on).
KUBERNETES_VERSION = "1.33.0"
# Named in .env.example but read by no Stockfolio process: who reads them.
NOT_READ_BY_PROCESSES = {
    "POSTGRES_PASSWORD": "compose's PostgreSQL container and its database URLs",
    "STOCKFOLIO_REQUIRE_SERVERS": "the test suite (CI)",
    "STOCKFOLIO_TEST_POSTGRES": "the test suite",
    "STOCKFOLIO_TEST_REDIS": "the test suite",
}
# Set for containers that are not ours (compose's postgres and redis images).
OUR_COMMANDS = re.compile(r"^python -m (services\.\w+|facade(\.webapp)?)$")
_EXAMPLE_LINE = re.compile(r"^#?\s?([A-Z][A-Z0-9_]*)=", re.MULTILINE)
_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?+][^}]*)?\}")


class Recorder(dict[str, str]):
    """An environment that remembers every name a loader asked for."""

    def __init__(self, values: Mapping[str, str], seen: set[str]) -> None:
        super().__init__(values)
        self.seen = seen

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.seen.add(key)
        return super().__contains__(key)


def _service(name: str, load: Callable[[RuntimeConfig], object]) -> Callable[[Recorder], object]:
    return lambda environ: load(load_runtime_config(name, environ))


# What each process runs at start (its __main__ / server.py), by the command that starts it.
LOADERS: dict[str, Callable[[Recorder], object]] = {
    "services.users": _service("users", load_users_config),
    "services.assistant": _service("assistant", load_assistant_config),
    "services.terminal": _service("terminal", load_terminal_config),
    "services.workspace": _service("workspace", load_workspace_config),
    "services.portfolio": _service("portfolio", load_portfolio_config),
    "facade": load_facade_config,
    "facade.webapp": load_web_config,
}


def variables_read(environ: Mapping[str, str] | None = None) -> dict[str, set[str]]:
    """Every name each process's loader reads, in development (where nothing is required)."""
    found: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as var_dir:
        base = {"STOCKFOLIO_ENV": "development", "STOCKFOLIO_VAR_DIR": var_dir, **(environ or {})}
        for module, load in LOADERS.items():
            seen: set[str] = set()
            load(Recorder(base, seen))
            found[module] = seen
    return found


# -- Kubernetes -------------------------------------------------------------------------------


def manifests(folder: Path = K8S) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def check_manifests(version: str, folder: Path = K8S) -> list[str]:
    problems = []
    for path, resource in manifests(folder):
        if resource.get("kind") == "Kustomization":
            continue  # kustomize's own file, not an API object
        name = f"{path.name}: {resource.get('kind')} {_name(resource)}"
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{name}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(f"{name}: {error}")
    return problems


def _name(resource: Mapping[str, Any]) -> str:
    return str(resource.get("metadata", {}).get("name", "?"))


def config_map(folder: Path = K8S) -> dict[str, str]:
    for _, resource in manifests(folder):
        if resource.get("kind") == "ConfigMap" and _name(resource) == "stockfolio-config":
            return {key: str(value) for key, value in resource.get("data", {}).items()}
    return {}


def deployments(folder: Path = K8S) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(deployment, command module, the container's environment): ConfigMap data, then its own
    `env` (a Secret reference as a placeholder value)."""
    shared = config_map(folder)
    for _, resource in manifests(folder):
        if resource.get("kind") not in {"Deployment", "Job"}:
            continue
        for container in resource["spec"]["template"]["spec"]["containers"]:
            command = " ".join(container.get("command", []) + container.get("args", []))
            match = OUR_COMMANDS.match(command)
            if match is None:
                continue
            environ = dict(shared) if container.get("envFrom") else {}
            for variable in container.get("env", []):
                secret = variable.get("valueFrom", {}).get("secretKeyRef")
                environ[variable["name"]] = (
                    f"<secret {secret['name']}/{secret['key']}>" if secret else variable["value"]
                )
            yield _name(resource), match[1], environ


def check_deployments(read: Mapping[str, set[str]], folder: Path = K8S) -> list[str]:
    everything = set().union(*read.values())
    shared = set(config_map(folder))
    problems = [
        f"ConfigMap stockfolio-config sets {name}, which no process reads"
        for name in sorted(shared - everything)
    ]
    for deployment, module, environ in deployments(folder):
        for name in sorted(set(environ) - shared - read[module]):
            problems.append(f"Deployment {deployment} sets {name}, which {module} does not read")
        try:
            _start_in_production(module, environ)
        except ConfigError as error:
            problems.append(f"Deployment {deployment}: python -m {module} would not start: {error}")
    return problems


def _start_in_production(module: str, environ: Mapping[str, str]) -> None:
    """The process's loader on the Deployment's environment: key files stand in for the mounted
    ones (a fresh key of the right kind at each path), a database URL from a Secret for the
    real one."""
    with tempfile.TemporaryDirectory() as folder:
        values = dict(environ)
        key = SigningKey.generate()
        for name, value in environ.items():
            if value.startswith("<secret ") and name.endswith("DATABASE_URL"):
                values[name] = "postgresql+psycopg://user@db:5432/stockfolio"
            elif name.endswith("_FILE"):
                path = Path(folder) / name.lower()
                private = not name.endswith("PUBLIC_KEYS_FILE")
                path.write_bytes(key.private_pem() if private else key.public_pem().encode())
                path.chmod(0o600 if private else 0o644)
                values[name] = str(path)
        values.update({"STOCKFOLIO_ENV": "production", "STOCKFOLIO_VAR_DIR": folder})
        LOADERS[module](Recorder(values, set()))


# -- compose ----------------------------------------------------------------------------------


def compose_document(path: Path = COMPOSE) -> dict[str, Any]:
    text = path.read_text()
    # Interpolation as compose does it, with placeholder values: the schema checks the shape.
    resolved = _INTERPOLATION.sub(lambda match: f"placeholder-{match[1].lower()}", text)
    document: dict[str, Any] = yaml.safe_load(resolved)
    return document


def check_compose(read: Mapping[str, set[str]], path: Path = COMPOSE) -> list[str]:
    problems = []
    schema = yaml.safe_load(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    document = compose_document(path)
    for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path]):
        where = ".".join(str(part) for part in error.path) or "(top)"
        problems.append(f"{path.name}: {where}: {error.message}")
    for name, service in document.get("services", {}).items():
        command = service.get("command", [])
        match = OUR_COMMANDS.match(" ".join(command if isinstance(command, list) else [command]))
        if match is None:
            continue
        environment = service.get("environment", {})
        for variable in sorted(set(environment) - read[match[1]]):
            if not any(variable in seen for seen in read.values()):
                problems.append(f"compose service {name} sets {variable}, which no process reads")
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if plugin.returncode == 0:
            done = subprocess.run(
                [docker, "compose", "-f", str(path), "config", "--quiet"],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "POSTGRES_PASSWORD": "placeholder"},
            )
            if done.returncode != 0:
                problems.append(f"docker compose config: {done.stderr.strip()}")
    return problems


# -- .env.example -----------------------------------------------------------------------------


def check_env_example(read: Mapping[str, set[str]], path: Path = ENV_EXAMPLE) -> list[str]:
    listed = set(_EXAMPLE_LINE.findall(path.read_text()))
    everything = set().union(*read.values())
    problems = [
        f".env.example does not list {name} (read by {', '.join(_readers(read, name))})"
        for name in sorted(everything - listed)
    ]
    problems += [
        f".env.example lists {name}, which no process reads"
        for name in sorted(listed - everything - set(NOT_READ_BY_PROCESSES))
    ]
    return problems


def _readers(read: Mapping[str, set[str]], name: str) -> list[str]:
    return [module for module, names in read.items() if name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    parser.add_argument(
        "--list", action="store_true", help="print every variable and the processes reading it"
    )
    args = parser.parse_args(argv)
    # Checked as the files say, not as this shell happens to be set.
    read = variables_read()
    if args.list:
        for name in sorted(set().union(*read.values())):
            print(f"{name}\t{', '.join(_readers(read, name))}")
        return 0
    checks: dict[str, Callable[[], list[str]]] = {
        f"Kubernetes manifests (kubernetes-validate, {args.kubernetes_version}, strict)": (
            lambda: check_manifests(args.kubernetes_version)
        ),
        "Deployments start in production with their environment": lambda: check_deployments(read),
        "compose.yaml (Compose Specification schema)": lambda: check_compose(read),
        ".env.example lists every variable the processes read": lambda: check_env_example(read),
    }
    failed = 0
    for title, check in checks.items():
        problems = check()
        print(f"{'ok  ' if not problems else 'FAIL'} {title}")
        for problem in problems:
            print(f"     - {problem}")
        failed += len(problems)
    total = len(set().union(*read.values()))
    print(f"{total} variables read by {len(read)} processes; {failed} problem(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
