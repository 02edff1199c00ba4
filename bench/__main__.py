"""`make bench`: the figures of issue 3 (foundation), each a ratio to baselines measured in the
same run, then those of issue 4 (portfolio: trades and /ws/portfolio, bench/portfolio.py),
then those of issue 6 (workspace: 20 MB transfers and a 10,000-file listing, bench/workspace.py,
and small-file writes with what they cost the database, bench/workspace_writes.py),
then those of issue 5 (terminal: 500 shells, echo, RSS, output throughput, bench/terminal.py),
then those of issue 7 (assistant: first chunk of 200 streamed /ws/chat answers, bench/assistant.py),
then those of issue 15 (1 and 2 replicas of users and portfolio, bench/replicas.py), then
issue 16's order matching (bench/orders.py), alert evaluation per step (bench/alerts.py) and
GetPerformance with currencies (bench/performance.py), GetOverview of a user's 100 portfolios
(bench/overview.py), and the leader's market-split round and revaluation round over 1,000 and
10,000 portfolios (bench/market_splits.py, bench/revaluation.py).
`--only foundation|portfolio|trades|ws|workspace|workspace-writes|terminal|assistant|replicas|`
`orders|alerts|performance|overview|market-splits|revaluation` runs one part.

Foundation order: start the system as `make run` does (five services and the facade, each its
own process, temporary var/ folder, limits off), read each process's idle RSS, start the
baselines, then measure in rounds that interleave each baseline with the path compared to it
(the machine is shared and noisy; the best round of each counts), then /health/all one at a time,
then the raw bcrypt rate and logins last (bcrypt keeps the users service busy after the load
stops). Misses are printed, not raised: the exit code is non-zero only when the harness itself
failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import bcrypt

from bench.alerts import (
    AlertSettings,
    describe_alerts,
    print_alerts,
    run_alerts,
)
from bench.assistant import (
    AssistantSettings,
    describe_assistant,
    print_assistant,
    run_assistant,
)
from bench.market_splits import (
    SplitRoundSettings,
    describe_split_rounds,
    print_split_rounds,
    run_split_rounds,
)
from bench.measures import rss_mb
from bench.orders import OrderSettings, describe_orders, print_orders, run_orders
from bench.overview import (
    OverviewSettings,
    describe_overview,
    print_overview,
    run_overview,
)
from bench.performance import (
    PerformanceSettings,
    describe_performance,
    print_performance,
    run_performance,
)
from bench.portfolio import (
    PortfolioReport,
    PortfolioSettings,
    describe_portfolio,
    print_portfolio,
    run_portfolio,
)
from bench.replicas import (
    ReplicaSettings,
    describe_replicas,
    print_replicas,
    run_replicas,
)
from bench.report import (
    Load,
    Report,
    Row,
    Settings,
    build_rows,
    print_table,
    write_results,
)
from bench.revaluation import (
    RevaluationSettings,
    describe_revaluation,
    print_revaluation,
    run_revaluation,
)
from bench.runs import register_user, run_load, with_cpu
from bench.system import (
    Fleet,
    Process,
    System,
    facade_available,
    http_request,
    start_system,
    stopping_on_signals,
    system_environment,
    wait_for_port,
    wait_until_idle,
)
from bench.terminal import (
    TerminalReport,
    TerminalSettings,
    describe_terminal,
    print_terminal,
    run_terminal,
)
from bench.workspace import (
    WorkspaceSettings,
    describe_workspace,
    print_workspace,
    run_workspace,
)
from bench.workspace_writes import (
    WritesSettings,
    describe_writes,
    print_writes,
    run_writes,
)
from tests.system_harness import HOST, REPO, HarnessError, Ports, free_ports, migrate


def raw_bcrypt_rate(cost: int, threads: int, seconds: float, max_checks: int = 200) -> Load:
    """`bcrypt.checkpw` per second at `cost`, on `threads` threads (bcrypt releases the GIL)."""
    hashed = bcrypt.hashpw(b"bench-password-0", bcrypt.gensalt(cost))
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def check_until_deadline(slot: int) -> None:
        while counts[slot] < max_checks and (counts[slot] == 0 or time.perf_counter() < deadline):
            bcrypt.checkpw(b"bench-password-0", hashed)
            counts[slot] += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    workers = [threading.Thread(target=check_until_deadline, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "threads": threads,
        "checks": sum(counts),
        "seconds": round(elapsed, 3),
        "rate": round(sum(counts) / elapsed, 3),
        "cpu_ms_per_check": round(cpu / sum(counts) * 1000, 1),
    }


def bcrypt_pool_width() -> int:
    """How many checks the users service runs at once: its pool (max(2, cpus), as in
    services/users/passwords.py), capped by the cores there are."""
    cpus = os.cpu_count() or 1
    return min(max(2, cpus), cpus)


# -- phases ---------------------------------------------------------------------------------


def read_idle_rss(system: System, settings: Settings, report: Report) -> None:
    pids = [p.pid for p in system.processes.values()]
    time.sleep(settings.idle_seconds)
    waited = wait_until_idle(pids, timeout=10.0)
    report.facts["rss_idle_mb"] = {
        name: round(rss_mb(p.pid), 1) for name, p in system.processes.items()
    }
    report.facts["idle_wait_seconds"] = round(settings.idle_seconds + waited, 1)


def start_baselines(
    fleet: Fleet, template: Mapping[str, Any] | None
) -> tuple[dict[str, int], list[Process]]:
    """A and B, each in its own process(es); their ports and their processes."""
    json_port, grpc_port, hop_port = free_ports(3)
    argv = ["-m", "bench.baselines", "json", f"--port={json_port}"]
    if template is not None:
        argv.append(f"--template={json.dumps(template)}")
    a = fleet.start("baseline-a", argv)
    g = fleet.start("baseline-b-grpc", ["-m", "bench.baselines", "grpc", f"--port={grpc_port}"])
    wait_for_port(g, grpc_port)
    hop = fleet.start(
        "baseline-b-http",
        ["-m", "bench.baselines", "hop", f"--port={hop_port}", f"--grpc-port={grpc_port}"],
    )
    wait_for_port(a, json_port)
    wait_for_port(hop, hop_port)
    for port, path in ((json_port, "/health"), (hop_port, "/hop")):
        answer = http_request(port, "GET", path)
        if answer.status != 200:
            raise HarnessError(f"baseline {path} answered {answer.status}: {answer.body}")
    return {"a": json_port, "b": hop_port}, [a, g, hop]


def measure_rounds(
    settings: Settings,
    report: Report,
    targets: Mapping[str, Callable[[], Load]],
    pids: Mapping[str, int],
) -> None:
    for round_number in range(1, settings.rounds + 1):
        for name, measure in targets.items():
            print(f"  round {round_number}/{settings.rounds}: {name} ...", flush=True)
            report.runs.setdefault(name, []).append(with_cpu(pids, measure))


def round_targets(
    system: System, settings: Settings, baselines: Mapping[str, int], token: str | None
) -> dict[str, Callable[[], Load]]:
    """What each round measures, each baseline next to the path compared with it."""
    c, w, d = settings.concurrency, settings.warmup, settings.duration

    def at(port: int, path: str, headers: Sequence[str] = ()) -> Callable[[], Load]:
        return lambda: run_load(port, path, concurrency=c, warmup=w, duration=d, headers=headers)

    facade = system.ports.facade
    targets = {"A": at(baselines["a"], "/health")}
    if system.has_facade:
        targets["GET /health"] = at(facade, "/health")
    targets["B"] = at(baselines["b"], "/hop")
    if system.has_facade and token is not None:
        auth = [f"Authorization: Bearer {token}"]
        targets["GET /api/v1/users/me"] = at(facade, "/api/v1/users/me", auth)
        targets["GET /health/all (c64)"] = at(facade, "/health/all")
    return targets


def measure_health_all_sequentially(system: System, settings: Settings, report: Report) -> None:
    print("  /health/all one at a time ...", flush=True)
    report.runs["GET /health/all (sequential)"] = [
        run_load(
            system.ports.facade,
            "/health/all",
            concurrency=1,
            warmup=settings.sequential_warmup,
            duration=settings.sequential_duration,
            max_requests=settings.sequential_requests,
        )
    ]


# Connections logging in to one account: fewer than the users service lets one account check
# at once from one address (its free failures, services/users/guard.py).
LOGINS_PER_ACCOUNT = 4


def measure_logins(
    system: System,
    settings: Settings,
    report: Report,
    accounts: list[tuple[str, str]],
    work: Path,
) -> None:
    """Rounds of: the raw bcrypt rate, then logins through the facade (connection i as account
    i mod len(accounts)), then a wait until the users service has worked off the logins still
    queued (they keep bcrypt busy after the load stops)."""
    cost = settings.bcrypt_cost
    raw: dict[int, list[Load]] = {1: [], 2: []}
    pids = [p.pid for p in system.processes.values()]
    variants = work / "logins.json"
    variants.write_text(
        json.dumps(
            [
                {"headers": [], "body": json.dumps({"email": email, "password": password})}
                for email, password in accounts
            ]
        )
    )
    for round_number in range(1, settings.rounds + 1):
        print(f"  round {round_number}/{settings.rounds}: raw bcrypt.checkpw ...", flush=True)
        for threads in raw:
            raw[threads].append(raw_bcrypt_rate(cost, threads, settings.bcrypt_seconds))
        if not system.has_facade:
            continue
        print(f"  round {round_number}/{settings.rounds}: POST /api/v1/auth/login ...", flush=True)
        login = with_cpu(
            {name: p.pid for name, p in system.processes.items()},
            lambda: run_load(
                system.ports.facade,
                "/api/v1/auth/login",
                method="POST",
                headers=["Content-Type: application/json"],
                concurrency=settings.concurrency,
                warmup=settings.login_warmup,
                duration=settings.login_duration,
                variants=str(variants),
            ),
        )
        report.runs.setdefault("POST /api/v1/auth/login", []).append(login)
        wait_until_idle(pids, timeout=30.0)
    report.facts["bcrypt"] = {
        "cost": cost,
        "one_thread": max(raw[1], key=lambda r: r["rate"]),
        "two_threads": max(raw[2], key=lambda r: r["rate"]),
        "runs": raw,
        "service_pool_width": bcrypt_pool_width(),
    }


# -- orchestration --------------------------------------------------------------------------


def describe_foundation(settings: Settings) -> str:
    return (
        f"foundation: concurrency {settings.concurrency}, {settings.rounds} rounds of"
        f" {settings.warmup:g} s warm-up + {settings.duration:g} s,"
        f" BCRYPT_COST={settings.bcrypt_cost}"
    )


def run(settings: Settings) -> Report:
    report = Report(settings)
    has_facade = facade_available()
    with tempfile.TemporaryDirectory(prefix="stockfolio-bench-") as temporary:
        root = Path(temporary)
        (root / "logs").mkdir()
        ports = Ports.pick()
        environ = system_environment(root / "var", ports, settings.bcrypt_cost)
        with Fleet(root / "logs", environ) as fleet:
            with_or_without = "with" if has_facade else "without"
            print(f"starting the system ({with_or_without} the facade) ...", flush=True)
            migrate(environ)
            system = start_system(fleet, ports, with_facade=has_facade)
            read_idle_rss(system, settings, report)
            template = None
            if has_facade:
                template = http_request(ports.facade, "GET", "/health").body
                report.facts["health_body"] = template
            baselines, baseline_processes = start_baselines(
                fleet, template if isinstance(template, dict) else None
            )
            accounts: list[tuple[str, str]] = []
            token = None
            if has_facade:
                for _ in range(-(-settings.concurrency // LOGINS_PER_ACCOUNT)):
                    email, password, token = register_user(ports.facade)
                    accounts.append((email, password))
            pids = {name: p.pid for name, p in system.processes.items()}
            pids.update((p.name, p.pid) for p in baseline_processes)
            targets = round_targets(system, settings, baselines, token)
            measure_rounds(settings, report, targets, pids)
            if has_facade:
                measure_health_all_sequentially(system, settings, report)
            fleet.stop(baseline_processes)
            wait_until_idle([p.pid for p in system.processes.values()], timeout=10.0)
            measure_logins(system, settings, report, accounts, Path(temporary))
            report.facts["rss_after_mb"] = {
                name: round(rss_mb(p.pid), 1) for name, p in system.processes.items()
            }
            for process in system.processes.values():
                process.check_alive()
    build_rows(report, has_facade)
    if not has_facade:
        report.rows.append(Row("facade paths", verdict="SKIP", note="facade/app.py not there yet"))
    return report


PARTS = {
    "all": (
        "foundation",
        "trades",
        "ws",
        "workspace",
        "workspace-writes",
        "terminal",
        "assistant",
        "replicas",
        "orders",
        "alerts",
        "performance",
        "overview",
        "market-splits",
        "revaluation",
    ),
    "foundation": ("foundation",),
    "portfolio": ("trades", "ws"),
    "trades": ("trades",),
    "ws": ("ws",),
    "workspace": ("workspace", "workspace-writes"),
    "workspace-writes": ("workspace-writes",),
    "terminal": ("terminal",),
    "assistant": ("assistant",),
    "replicas": ("replicas",),
    "orders": ("orders",),
    "alerts": ("alerts",),
    "performance": ("performance",),
    "overview": ("overview",),
    "market-splits": ("market-splits",),
    "revaluation": ("revaluation",),
}


@dataclass(frozen=True)
class Plan:
    parts: tuple[str, ...]
    foundation: Settings
    portfolio: PortfolioSettings
    workspace: WorkspaceSettings
    writes: WritesSettings
    terminal: tuple[TerminalSettings, ...]


def parse_args(argv: Sequence[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        choices=sorted(PARTS),
        default="all",
        help="foundation (issue 3), portfolio (issue 4: trades and ws), trades or ws alone,"
        " workspace (issue 6, with workspace-writes), workspace-writes alone, terminal (issue 5),"
        " assistant (issue 7), replicas (issue 15), orders, alerts or performance (issue 16),"
        " overview (all of a user's portfolios), market-splits (the leader's split round),"
        " revaluation (the leader's revaluation round)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best counts)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each run")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--login-duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    portfolio = parser.add_argument_group("portfolio (issue 4)")
    portfolio.add_argument(
        "--databases",
        default="sqlite,postgresql",
        help="trades and workspace writes on: sqlite, postgresql or both",
    )
    portfolio.add_argument("--trade-concurrency", type=int, default=32)
    portfolio.add_argument("--trade-duration", type=float, default=8.0, help="seconds per round")
    portfolio.add_argument(
        "--trade-history",
        type=int,
        default=0,
        help="trades each fresh portfolio holds (imported) before the trades are measured",
    )
    portfolio.add_argument("--subscribers", type=int, default=5000, help="/ws/portfolio sockets")
    portfolio.add_argument("--client-processes", type=int, default=4, help="for those sockets")
    portfolio.add_argument("--ws-seconds", type=float, default=25.0, help="fan-out measured")
    portfolio.add_argument(
        "--client-nice",
        type=int,
        default=10,
        help="nice level of the WebSocket load clients (not the probe); 0 to compete evenly",
    )
    portfolio.add_argument(
        "--ws-client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the subscribers' WebSocket client (bench/wsclient.py, or aiohttp's)",
    )
    terminal = parser.add_argument_group("terminal (issue 5)")
    terminal.add_argument("--terminal-sessions", type=int, default=500, help="shells open at once")
    terminal.add_argument("--terminal-shell", choices=("/bin/bash", "/bin/sh"), default="/bin/bash")
    terminal.add_argument(
        "--terminal-sandbox",
        choices=("bwrap", "off", "both"),
        default="both",
        help="TERMINAL_SANDBOX for the run; both: sandboxed, then without (issue 11's comparison)",
    )
    args = parser.parse_args(argv)
    cost = os.environ.get("BCRYPT_COST", "12").strip() or "12"
    if not cost.isdigit() or not 4 <= int(cost) <= 16:
        parser.error(f"BCRYPT_COST must be an integer from 4 to 16, got {cost!r}")
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    if not databases or not set(databases) <= {"sqlite", "postgresql"}:
        parser.error("--databases takes sqlite, postgresql or both (comma-separated)")
    foundation = Settings(
        rounds=max(1, min(args.rounds, 5)),
        warmup=max(0.5, min(args.warmup, 10.0)),
        duration=max(1.0, min(args.duration, 30.0)),
        login_warmup=3.0,
        login_duration=max(3.0, min(args.login_duration, 30.0)),
        concurrency=max(1, min(args.concurrency, 256)),
        sequential_warmup=0.5,
        sequential_duration=3.0,
        sequential_requests=5000,
        bcrypt_seconds=4.0,
        bcrypt_cost=int(cost),
        idle_seconds=3.0,
    )
    parts = PARTS[args.only]
    portfolio_settings = PortfolioSettings(
        parts=tuple(p for p in parts if p in ("trades", "ws")),
        databases=databases,
        # Accounts are set-up only here: logins are not what these figures measure.
        bcrypt_cost=4,
        trade_concurrency=max(1, min(args.trade_concurrency, 256)),
        trade_users=8,
        trade_rounds=max(1, min(args.rounds, 5)),
        trade_warmup=2.0,
        trade_duration=max(1.0, min(args.trade_duration, 30.0)),
        trade_history=max(0, min(args.trade_history, 10_000)),
        subscribers=max(1, min(args.subscribers, 10_000)),
        symbols_per_socket=10,
        client_processes=max(1, min(args.client_processes, 8)),
        ramp_batch=100,
        probe_sockets=50,
        client_nice=max(0, min(args.client_nice, 19)),
        ws_client=args.ws_client,
        ws_users=50,
        measure_seconds=max(5.0, min(args.ws_seconds, 60.0)),
        update_interval_ms=1000,
        sample_per_process=5,
    )
    workspace_settings = WorkspaceSettings(
        file_mb=20, rounds=max(1, min(args.rounds + 1, 5)), files=10_000, list_requests=500,
        bcrypt_cost=4,
    )  # fmt: skip
    terminal_settings = TerminalSettings(
        sessions=max(1, min(args.terminal_sessions, 2000)),
        users=max(1, min(50, args.terminal_sessions)),
        shell=args.terminal_shell,
        create_concurrency=8,
        join_concurrency=50,
        idle_seconds=5.0,
        echo_samples=1000,
        echo_rounds=max(1, min(args.rounds, 5)),
        echo_interval_ms=20.0,
        close_samples=max(1, min(50, args.terminal_sessions // 10)),
        idle_sessions=100,
        stream_mb=50,
        limited_stream_mb=16,
        bcrypt_cost=4,
    )
    sandboxes = ("bwrap", "off") if args.terminal_sandbox == "both" else (args.terminal_sandbox,)
    terminals = tuple(replace(terminal_settings, sandbox=s) for s in sandboxes)
    writes_settings = WritesSettings(databases=databases)
    return Plan(
        parts, foundation, portfolio_settings, workspace_settings, writes_settings, terminals
    )


R = TypeVar("R")


@dataclass
class Part(Generic[R]):
    """One part of the bench as main runs it: the line saying what it will measure, the run,
    and its table, printed once every chosen part has run."""

    description: str
    measure: Callable[[], R]
    show: Callable[[R], None]
    # What failed in its run, said after the tables (the exit code is then 1); None: nothing.
    failure: Callable[[R], str | None] = lambda _: None
    report: R | None = None

    def run(self) -> None:
        self.report = self.measure()

    def print_report(self) -> None:
        if self.report is not None:
            self.show(self.report)

    def failed(self) -> str | None:
        return None if self.report is None else self.failure(self.report)


def harness_failed(failures: Iterable[tuple[str, object]]) -> str | None:
    failed = ", ".join(what for what, _ in failures)
    return f"the harness failed in: {failed}" if failed else None


def print_terminals(reports: Iterable[TerminalReport]) -> None:
    for report in reports:
        print_terminal(report)


def plan_parts(plan: Plan) -> tuple[Part[Report], Part[PortfolioReport], list[Part[Any]]]:
    """The foundation and portfolio parts (results.json holds what they found), and the parts
    `--only` chose, in the order they run."""
    settings = plan.foundation
    foundation = Part(describe_foundation(settings), lambda: run(settings), print_table)
    portfolio = Part(
        describe_portfolio(plan.portfolio),
        lambda: run_portfolio(plan.portfolio),
        print_portfolio,
        lambda report: harness_failed(report.failures),
    )
    assistant, replicas = AssistantSettings(), ReplicaSettings()
    orders, alerts, performance = OrderSettings(), AlertSettings(), PerformanceSettings()
    overview = OverviewSettings(databases=plan.writes.databases)
    split_rounds = SplitRoundSettings(databases=plan.writes.databases)
    revaluation = RevaluationSettings(databases=plan.writes.databases)
    every: list[tuple[tuple[str, ...], Part[Any]]] = [
        (("foundation",), foundation),
        (("trades", "ws"), portfolio),
        (
            ("workspace",),
            Part(
                describe_workspace(plan.workspace),
                lambda: run_workspace(plan.workspace),
                print_workspace,
            ),
        ),
        (
            ("workspace-writes",),
            Part(describe_writes(plan.writes), lambda: run_writes(plan.writes), print_writes),
        ),
        (
            ("terminal",),
            Part(
                "\n".join(describe_terminal(t) for t in plan.terminal),
                lambda: [run_terminal(t) for t in plan.terminal],
                print_terminals,
                lambda reports: harness_failed(f for r in reports for f in r.failures),
            ),
        ),
        (
            ("assistant",),
            Part(
                describe_assistant(assistant),
                lambda: run_assistant(assistant),
                print_assistant,
                lambda report: "the assistant part had failed chats" if report.failures else None,
            ),
        ),
        (
            ("replicas",),
            Part(
                describe_replicas(replicas),
                lambda: run_replicas(replicas),
                print_replicas,
                lambda report: (
                    "the harness failed in the replicas part" if report.failures else None
                ),
            ),
        ),
        (("orders",), Part(describe_orders(orders), lambda: run_orders(orders), print_orders)),
        (("alerts",), Part(describe_alerts(alerts), lambda: run_alerts(alerts), print_alerts)),
        (
            ("performance",),
            Part(
                describe_performance(performance),
                lambda: run_performance(performance),
                print_performance,
            ),
        ),
        (
            ("overview",),
            Part(describe_overview(overview), lambda: run_overview(overview), print_overview),
        ),
        (
            ("market-splits",),
            Part(
                describe_split_rounds(split_rounds),
                lambda: run_split_rounds(split_rounds),
                print_split_rounds,
            ),
        ),
        (
            ("revaluation",),
            Part(
                describe_revaluation(revaluation),
                lambda: run_revaluation(revaluation),
                print_revaluation,
            ),
        ),
    ]
    chosen = [part for names, part in every if set(names) & set(plan.parts)]
    return foundation, portfolio, chosen


def main(argv: Sequence[str]) -> int:
    plan = parse_args(argv)
    foundation, portfolio, parts = plan_parts(plan)
    print(
        f"Stockfolio bench ({', '.join(plan.parts)}): {os.cpu_count()} CPUs, only {HOST} targeted"
    )
    for part in parts:
        print(part.description, flush=True)
    started = time.monotonic()
    try:
        with stopping_on_signals():
            for part in parts:
                part.run()
    except HarnessError as error:
        print(f"bench: the harness failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    except SystemExit:
        print("bench: stopped by SIGTERM; every process it started was stopped", file=sys.stderr)
        raise
    for part in parts:
        part.print_report()
    path = write_results(
        foundation.report, portfolio.report.document() if portfolio.report is not None else None
    )
    print(f"results: {path.relative_to(REPO)} ({time.monotonic() - started:.0f} s in all)")
    for part in parts:
        failed = part.failed()
        if failed is not None:
            print(f"bench: {failed} (see above)", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
