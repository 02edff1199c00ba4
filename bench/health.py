"""`python -m bench.health`: /health/all with two replicas of every service (issue 15, part 7).

The facade answers /health/all from what its Health/Watch streams and background Checks know;
`?probe=true` runs a live round of Checks on all ten replicas, as every call did before. Both
are measured beside the facade's own /health, one request at a time and at 64 concurrent, with
the goal: /health/all p50 < 1.5 ms sequential and p99 < 10 ms at c=64 (within 2x of /health).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.report import Load
from bench.runs import run_load
from bench.system import Fleet, Process, system_environment, wait_for_http
from services.runtime.config import DOMAIN_SERVICES
from tests.system_harness import HOST, Ports, free_ports, migrate

GOALS = {("/health/all", 1): ("p50", 1.5), ("/health/all", 64): ("p99", 10.0)}


def environments(
    root: Path, ports: Ports, replicated: Sequence[str] = DOMAIN_SERVICES
) -> tuple[dict[str, str], dict[str, str], list[int]]:
    """The first replicas' and the facade's environment (each `replicated` service at two
    addresses), the second replicas' (the same but for each service's own ports), and those
    admin ports, in the order of `replicated`."""
    second = free_ports(2 * len(replicated))
    environ = system_environment(root / "var", ports, bcrypt_cost=4)
    again = dict(environ)
    for index, name in enumerate(replicated):
        prefix = name.upper()
        environ[f"{prefix}_ADDRS"] = f"{HOST}:{ports.grpc[name]},{HOST}:{second[2 * index]}"
        again[f"{prefix}_PORT"] = str(second[2 * index])
        again[f"{prefix}_ADMIN_PORT"] = str(second[2 * index + 1])
    again.update({k: v for k, v in environ.items() if k.endswith("_ADDRS")})
    return environ, again, second[1::2]


def start_two_of_each(
    fleet: Fleet,
    seconds: Fleet,
    ports: Ports,
    admin: Sequence[int],
    replicated: Sequence[str] = DOMAIN_SERVICES,
    *,
    facades: int = 1,
) -> dict[str, Process]:
    """Every service, a second replica of each `replicated` one (`admin`: their admin ports, as
    `environments` gave them), then the facade (`facades` > 1: that many on its port, sharing
    it with FACADE_REUSE_PORT, each its own admin port); each healthy. By name: `users`,
    `users-2`, ..., `facade`, `facade-2`."""
    second_admin = dict(zip(replicated, admin, strict=True))
    started: dict[str, Process] = {}
    for name in DOMAIN_SERVICES:
        replicas = {name: (fleet.start(name, ["-m", f"services.{name}"]), ports.admin[name])}
        if name in second_admin:
            again = seconds.start(name, ["-m", f"services.{name}"])
            replicas[f"{name}-2"] = (again, second_admin[name])
        for key, (process, admin_port) in replicas.items():
            wait_for_http(process, admin_port, "/health")
            started[key] = process
    if facades == 1:
        started["facade"] = fleet.start("facade", ["-m", "facade"])
        wait_for_http(started["facade"], ports.facade, "/health/all")
        return started
    for index, admin_port in enumerate(free_ports(facades)):
        name = "facade" if index == 0 else f"facade-{index + 1}"
        started[name] = fleet.start(
            name,
            ["-m", "facade"],
            FACADE_REUSE_PORT="true",
            FACADE_ADMIN_PORT=str(admin_port),
        )
        wait_for_http(started[name], admin_port, "/health")
    for _ in range(2 * facades):  # each request a connection of its own, to either facade
        wait_for_http(started["facade"], ports.facade, "/health/all")
    return started


def measure(port: int, rounds: int, duration: float) -> list[tuple[str, int, Load]]:
    found = []
    for path in ("/health", "/health/all", "/health/all?probe=true"):
        for concurrency in (1, 64):
            best: Load | None = None
            for _ in range(rounds):
                load = run_load(port, path, concurrency=concurrency, warmup=1.0, duration=duration)
                if best is None or load["p50_ms"] < best["p50_ms"]:
                    best = load
            assert best is not None
            found.append((path, concurrency, best))
    return found


def table(results: Sequence[tuple[str, int, Load]]) -> str:
    lines = [
        "| path (2 replicas of each) | c | rps | p50 ms | p99 ms | non-2xx, errors | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, concurrency, load in results:
        goal = GOALS.get((path, concurrency))
        verdict = ""
        if goal is not None:
            key, limit = goal
            verdict = f"{key} < {limit} ms: {'PASS' if load[f'{key}_ms'] < limit else 'MISS'}"
        lines.append(
            f"| `{path}` | {concurrency} | {load['rps']:.0f} | {load['p50_ms']:.2f} | "
            f"{load['p99_ms']:.2f} | {load['non_2xx'] + load['transport_errors']} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.health", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs each")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stockfolio-bench-health-") as temporary:
        root = Path(temporary)
        (root / "logs").mkdir()
        (root / "logs-2").mkdir()
        ports = Ports.pick()
        environ, again, admin = environments(root, ports)
        migrate(environ)
        with Fleet(root / "logs", environ) as fleet, Fleet(root / "logs-2", again) as seconds:
            start_two_of_each(fleet, seconds, ports, admin)
            print("measuring /health and /health/all (known and live) ...", flush=True)
            results = measure(ports.facade, args.rounds, args.duration)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
