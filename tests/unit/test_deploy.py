"""The deployment files, read as an operator's tools would read them: who holds which key,
which pods may run sandboxes, and who may call whom."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = {
    "users": 4120,
    "assistant": 4130,
    "terminal": 4140,
    "workspace": 4150,
    "portfolio": 4160,
}
SANDBOXED = {"terminal", "workspace"}


def documents() -> Iterator[dict[str, Any]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield document


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == "Deployment"}


def secrets_mounted(deployment: dict[str, Any]) -> set[str]:
    pod = deployment["spec"]["template"]["spec"]
    return {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}


def test_each_private_key_is_mounted_in_one_pod_only() -> None:
    holders: dict[str, set[str]] = {}
    for name, deployment in deployments().items():
        for secret in secrets_mounted(deployment):
            holders.setdefault(secret, set()).add(name)
    assert holders["stockfolio-token-signing-key"] == {"users"}
    assert holders["stockfolio-facade-service-key"] == {"facade"}
    for service in ("assistant", "terminal", "workspace", "portfolio"):
        assert holders[f"stockfolio-{service}-service-key"] == {service}


def test_only_the_sandboxing_pods_get_what_bubblewrap_needs() -> None:
    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["allowPrivilegeEscalation"] is False, name
        if name in SANDBOXED:
            assert pod["hostUsers"] is False, name
            assert context["procMount"] == "Unmasked", name
            assert context["seccompProfile"] == {"type": "Unconfined"}, name
        else:
            assert "hostUsers" not in pod and "procMount" not in context, name
            assert "seccompProfile" not in context, name


def callers(port: int) -> set[str]:
    """Pods (by name label) that some NetworkPolicy lets reach `port` of its selected pods."""
    found: set[str] = set()
    for policy in (d for d in documents() if d["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if not any(p.get("port") == port for p in rule.get("ports", [])):
                continue
            sources = rule.get("from")
            if sources is None:
                found.add("*")
            for source in sources or []:
                labels = source.get("podSelector", {}).get("matchLabels", {})
                found.add(labels.get("app.kubernetes.io/name", "?namespace"))
    return found


def test_only_the_facade_and_known_callers_reach_the_services() -> None:
    every = {"facade", *SERVICES} - {"users"}
    assert callers(4110) == {"*"}
    assert callers(SERVICES["users"]) == every | {"facade"}
    assert callers(SERVICES["assistant"]) == {"facade"}
    assert callers(SERVICES["terminal"]) == {"facade"}
    assert callers(SERVICES["workspace"]) == {"facade", "terminal"}
    assert callers(SERVICES["portfolio"]) == {"facade", "assistant"}
    for port in SERVICES.values():
        assert callers(port + 1000) == {"?namespace"}  # admin ports: monitoring only
    policies = [d for d in documents() if d["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if p["metadata"]["name"] == "stockfolio-default-deny")
    assert deny["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "stockfolio"}
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert "networkpolicy.yaml" in resources


def test_compose_hands_keys_and_sandbox_options_to_the_right_containers() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    holding = {n for n, s in services.items() if "token_signing_key" in s.get("secrets", [])}
    assert holding == {"users"}
    for owner in ("facade", "assistant", "terminal", "workspace", "portfolio"):
        key = f"{owner}_service_key"
        assert {n for n, s in services.items() if key in s.get("secrets", [])} == {owner}
    sandboxing = {n for n, s in services.items() if "security_opt" in s}
    assert sandboxing == SANDBOXED
    for name in SANDBOXED:
        assert "cap_add" not in services[name] and "privileged" not in services[name]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert services["users"]["environment"]["TRUSTED_PROXIES"] == subnet


def test_the_web_app_is_served_from_the_image_by_a_pod_holding_nothing() -> None:
    web = deployments()["web"]
    pod = web["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["python", "-m", "facade.webapp"]
    assert container["ports"] == [{"name": "http", "containerPort": 4100}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert secrets_mounted(web) == set()
    assert callers(4100) == {"*"}
    config = next(d for d in documents() if d["kind"] == "ConfigMap")["data"]
    assert config["WEB_API_URL"].startswith("https://")
    assert config["FRONTEND_URL"].startswith("https://")
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert "web.yaml" in resources
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["web"]
    assert compose["command"] == ["python", "-m", "facade.webapp"]
    assert compose["ports"] == ["127.0.0.1:4100:4100"]
    assert "secrets" not in compose
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "RUN npm ci" in dockerfile
    assert "COPY --from=web /web/dist ./web/dist" in dockerfile


def test_every_replicated_deployment_keeps_a_pod_through_a_drain() -> None:
    budgets = [d for d in documents() if d["kind"] == "PodDisruptionBudget"]
    covered = {
        b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for b in budgets
        if b["spec"].get("minAvailable", 0) >= 1
    }
    replicated = {name for name, d in deployments().items() if d["spec"].get("replicas", 1) >= 2}
    assert replicated == {
        "users",
        "assistant",
        "terminal",
        "workspace",
        "portfolio",
        "facade",
        "web",
    }
    assert covered == replicated


def egress_ports(name: str) -> set[int] | None:
    """The ports pods named `name` may call out to (None: egress unrestricted)."""
    found: set[int] | None = None
    for policy in documents():
        if policy["kind"] != "NetworkPolicy" or "Egress" not in policy["spec"]["policyTypes"]:
            continue
        if policy["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name") != name:
            continue
        found = found or set()
        for rule in policy["spec"].get("egress", []):
            found |= {port["port"] for port in rule.get("ports", [])}
    return found


def test_only_the_services_with_a_database_reach_it() -> None:
    for name in SERVICES:
        ports = egress_ports(name)
        assert ports is not None, f"{name} has no egress policy"
        assert {5432, 6379} <= ports
    assert egress_ports("facade") == {53, 4120, 4130, 4140, 4150, 4160, 6379}
    assert egress_ports("web") == set()
    # Public HTTPS: the two public APIs and git remotes, nobody else.
    assert {name for name in [*SERVICES, "facade"] if 443 in (egress_ports(name) or ())} == {
        "assistant",
        "portfolio",
        "workspace",
    }


def test_tini_stays_pid_1_in_every_container_of_our_image() -> None:
    """The image's ENTRYPOINT is tini, which reaps what is orphaned to PID 1 (a sandbox's init
    whose bubblewrap was killed); a Kubernetes `command:` would replace it, so our containers
    set `args:` only, and compose's `command:` (which keeps the ENTRYPOINT) is fine."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    assert " tini" in next(line for line in dockerfile.splitlines() if "apt-get install" in line)
    ours = 0
    for document in documents():
        if document["kind"] not in {"Deployment", "Job"}:
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            if container["image"].split(":")[0].endswith("stockfolio"):
                ours += 1
                assert "command" not in container, document["metadata"]["name"]
                assert container["args"][:2] == ["python", "-m"]
    assert ours == 8
