"""`make bench`, the portfolio section (issue 4's figures): trades through the facade on SQLite
and on PostgreSQL, and /ws/portfolio fan-out to thousands of subscribers.

Order: a system on SQLite (the embedded default) serves the fan-out first (a fresh facade, so its
peak RSS is the sockets' own), then the trades; a second system, on fresh PostgreSQL databases
for users and portfolio (created here, migrated, dropped at the end whatever happens), serves the
trades again. Everything runs on 127.0.0.1, bounded in count and time, and every process started
is stopped (SIGTERM, then SIGKILL) on the way out.

Trades: `concurrency` connections, each with a portfolio of its own (spread over a few users),
each sending BUY 1 share at a given price, one request at a time. Each trade locks its portfolio
and applies itself to the portfolio's stored book (each buy opens a lot, so the book grows with
the trades): fresh portfolios every round, and their trade counts at the end are reported.

pgbench: on the same PostgreSQL, before the trades, TPC-B (five statements a transaction) at the
trades' concurrency, on a scratch database of its own: at scale 1 (`pgbench -i` as is: every
transaction updates the one branch row) and at one branch per client (no row shared, as the
trades' portfolios share none). Each trades row prints its ratio to both.

Fan-out: see bench/fanout.py for the clients, the market reference and what "lost" means.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.measures import RssSampler, high_water_mb, percentile, rss_mb
from bench.report import (
    RESULTS,
    Load,
    PartReport,
    Row,
    best,
    load_row,
    p99_row,
    print_rows,
    verdict,
)
from bench.runs import register_user, run_load, with_cpu
from bench.system import (
    POSTGRES_ADMIN_URL,
    Fleet,
    Process,
    System,
    cpu_seconds,
    cpu_split,
    http_request,
    postgres_activity,
    postgres_cpu_seconds,
    postgres_databases,
    scheduling,
    start_system,
    system_environment,
    wait_until_idle,
)
from tests.system_harness import REPO, HarnessError, Ports, migrate

WS_RSS_LIMIT_MB = 200.0
# Issue 15's goal for trades on PostgreSQL at c32.
TRADES_GOAL_RPS = 1000.0
TRADES_P99_MS = 100.0
WS_P99_LIMIT_MS = 250.0
DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TRADE_SYMBOLS = ("AAPL", "MSFT", "NVDA", "JPM", "KO", "XOM", "SPY", "QQQ")
LOGS = RESULTS.parent / "logs" / "portfolio"
# Per step of the fan-out, how long the benchmark waits for the processes it drives.
MARKET_READY_TIMEOUT = 30.0
RAMP_TIMEOUT = 240.0
REPORT_TIMEOUT = 90.0
PGBENCH = "pgbench"
PGBENCH_SECONDS = 10
PGBENCH_INIT_TIMEOUT = 120.0
SETTLE_SECONDS = 2.0  # after the ramp: the subscriptions' first prices are sent
DELIVERY_GRACE = 3.0  # after the window: ticks published at its very end are still arriving


@dataclass(frozen=True)
class PortfolioSettings:
    parts: tuple[str, ...]  # "trades", "ws"
    databases: tuple[str, ...]  # "sqlite", "postgresql"
    bcrypt_cost: int
    trade_concurrency: int
    trade_users: int
    trade_rounds: int
    trade_warmup: float
    trade_duration: float
    subscribers: int
    symbols_per_socket: int
    client_processes: int
    ramp_batch: int
    probe_sockets: int
    # The load clients' CPU priority below the system's (nice, autogroup included): on one
    # 2-core machine a client woken by each write otherwise preempts the facade in the middle of
    # its fan-out (measured: ~400 preemptions and ~170 ms on the run queue per market step),
    # which a facade serving remote clients never sees. The probe keeps normal priority.
    client_nice: int
    # The subscribers' WebSocket client: "lean" (bench/wsclient.py) or "aiohttp".
    ws_client: str
    ws_users: int
    measure_seconds: float
    update_interval_ms: int
    sample_per_process: int
    # Trades each fresh portfolio is given (one CSV import, dated in the past) before the load.
    trade_history: int = 0


@dataclass
class PortfolioReport(PartReport[PortfolioSettings]):
    runs: dict[str, list[Load]] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {**super().document(), "runs": self.runs}


# --- the systems --------------------------------------------------------------------------


@contextlib.contextmanager
def portfolio_system(
    root: Path, settings: PortfolioSettings, extra_env: Mapping[str, str]
) -> Iterator[tuple[Fleet, System]]:
    """The whole system (as `make run` starts it) with the benchmark's settings; every process
    it started is stopped on exit, and the logs are kept under var/bench/logs/portfolio/."""
    (root / "logs").mkdir(parents=True)
    ports = Ports.pick()
    environ = system_environment(root / "var", ports, settings.bcrypt_cost)
    environ.update(
        {
            "USE_MOCK_PRICES": "true",
            "MOCK_UPDATE_INTERVAL": str(settings.update_interval_ms),
            **extra_env,
        }
    )
    try:
        with Fleet(root / "logs", environ) as fleet:
            migrate(environ)
            system = start_system(fleet, ports, with_facade=True)
            yield fleet, system
            for process in system.processes.values():
                process.check_alive()
    finally:
        kept = LOGS / root.name
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(root / "logs", kept, dirs_exist_ok=True)


# --- trades -------------------------------------------------------------------------------


def create_portfolios(
    facade: int, tokens: Sequence[str], count: int, tag: str
) -> list[tuple[str, str]]:
    """`count` fresh portfolios, owned in turn by each token's user: (token, portfolio id)."""
    made = []
    for i in range(count):
        token = tokens[i % len(tokens)]
        answer = http_request(
            facade, "POST", "/api/v1/portfolios", body={"name": f"bench {tag} #{i}"}, token=token
        )
        if answer.status != 201:
            raise HarnessError(f"POST /api/v1/portfolios answered {answer.status}: {answer.body}")
        made.append((token, str(answer.body["data"]["id"])))
    return made


def give_history(facade: int, owned: Sequence[tuple[str, str]], count: int) -> None:
    """`count` buys of 1 share, one a minute from 2020-01-01, imported into each portfolio."""
    if count <= 0:
        return
    rows = "".join(
        f"2020-01-{1 + i // 1440:02d}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z,buy,KO,1,50\n"
        for i in range(count)
    )
    for token, portfolio_id in owned:
        answer = http_request(
            facade,
            "POST",
            "/api/v1/trades:import",
            body={"portfolioId": portfolio_id, "csv": "date,side,symbol,quantity,price\n" + rows},
            token=token,
        )
        if answer.status != 200:
            raise HarnessError(
                f"POST /api/v1/trades:import answered {answer.status}: {answer.body}"
            )


def trade_count(facade: int, token: str, portfolio_id: str) -> int:
    answer = http_request(
        facade, "GET", f"/api/v1/trades?portfolioId={portfolio_id}&limit=1", token=token
    )
    if answer.status != 200:
        raise HarnessError(f"GET /api/v1/trades answered {answer.status}: {answer.body}")
    return int(answer.body["pagination"]["total"])


def measure_trades(
    label: str,
    system: System,
    settings: PortfolioSettings,
    report: PortfolioReport,
    work: Path,
    postgres_url: str = "",
) -> None:
    """Rounds of trades, each on fresh portfolios. On PostgreSQL, the portfolio database's
    sessions and commits during each round are read too (pg_stat_database)."""
    facade = system.ports.facade
    tokens = [register_user(facade)[2] for _ in range(settings.trade_users)]
    pids = {name: p.pid for name, p in system.processes.items()}
    name = f"POST /api/v1/trades ({label})"
    for round_number in range(1, settings.trade_rounds + 1):
        owned = create_portfolios(
            facade, tokens, settings.trade_concurrency, f"{label} round {round_number}"
        )
        give_history(facade, owned, settings.trade_history)
        variants = [
            {
                "headers": [f"Authorization: Bearer {token}", "Content-Type: application/json"],
                "body": json.dumps(
                    {
                        "portfolioId": portfolio_id,
                        "symbol": TRADE_SYMBOLS[i % len(TRADE_SYMBOLS)],
                        "side": "buy",
                        "quantity": "1",
                        "price": "100.00",
                    }
                ),
            }
            for i, (token, portfolio_id) in enumerate(owned)
        ]
        path = work / f"trades-{label}-{round_number}.json"
        path.write_text(json.dumps(variants))
        print(f"  round {round_number}/{settings.trade_rounds}: {name} ...", flush=True)
        activity = postgres_activity(postgres_url) if postgres_url else None
        load = with_cpu(
            pids,
            functools.partial(
                run_load,
                facade,
                "/api/v1/trades",
                method="POST",
                concurrency=settings.trade_concurrency,
                warmup=settings.trade_warmup,
                duration=settings.trade_duration,
                variants=str(path),
            ),
            # The server runs here too: its CPU is part of what a trade costs this machine.
            also={"postgresql": postgres_cpu_seconds} if postgres_url else None,
        )
        if activity is not None:
            time.sleep(1.0)  # the statistics collector's delay
            after = postgres_activity(postgres_url)
            load["postgresql"] = {key: after[key] - activity[key] for key in after}
        counts = [trade_count(facade, token, pid) for token, pid in owned]
        load["portfolios"] = len(owned)
        load["history"] = settings.trade_history
        load["users"] = len(tokens)
        load["trades_per_portfolio"] = {
            "min": min(counts),
            "max": max(counts),
            "mean": round(sum(counts) / len(counts), 1),
            "recorded": sum(counts),
        }
        report.runs.setdefault(name, []).append(load)
        wait_until_idle(list(pids.values()), timeout=15.0)


# --- pgbench ------------------------------------------------------------------------------


def pgbench_scales(clients: int) -> tuple[int, ...]:
    """Scale 1 (`pgbench -i` as is) and one branch per client."""
    return (1, clients) if clients > 1 else (1,)


def measure_pgbench(settings: PortfolioSettings, report: PortfolioReport) -> None:
    """TPC-B at the trades' concurrency on a scratch database of the same PostgreSQL, once per
    scale; its transactions per second and mean latency go to report.facts["pgbench"]."""
    if shutil.which(PGBENCH) is None:
        raise HarnessError("pgbench is not installed (apt-get install postgresql-client)")
    server = urlsplit(POSTGRES_ADMIN_URL)
    found = []
    with postgres_databases(("pgbench",)) as urls:
        database = urls["pgbench"].rsplit("/", 1)[1]
        where = [
            f"--host={server.hostname}",
            f"--port={server.port or 5432}",
            f"--username={server.username}",
        ]
        for scale in pgbench_scales(settings.trade_concurrency):
            print(f"  pgbench TPC-B, scale {scale}, c{settings.trade_concurrency} ...", flush=True)
            run_pgbench([*where, "--initialize", "--quiet", f"--scale={scale}", database])
            clients = settings.trade_concurrency
            output = run_pgbench(
                [
                    *where,
                    f"--client={clients}",
                    f"--jobs={min(2, clients)}",
                    f"--time={PGBENCH_SECONDS}",
                    database,
                ]
            )
            found.append({"scale": scale, "clients": clients, **pgbench_figures(output)})
    report.facts["pgbench"] = found


def run_pgbench(arguments: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            [PGBENCH, *arguments],
            capture_output=True,
            text=True,
            timeout=PGBENCH_INIT_TIMEOUT + PGBENCH_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(f"pgbench {' '.join(arguments)} did not finish") from None
    if done.returncode != 0:
        raise HarnessError(f"pgbench {' '.join(arguments)} failed: {done.stderr.strip()}")
    return done.stdout


def pgbench_figures(output: str) -> dict[str, float]:
    """Transactions per second and mean latency from pgbench's report."""
    tps = re.search(r"^tps = ([0-9.]+)", output, re.MULTILINE)
    latency = re.search(r"^latency average = ([0-9.]+) ms", output, re.MULTILINE)
    processed = re.search(r"actually processed: (\d+)", output)
    if tps is None or latency is None:
        raise HarnessError(f"pgbench printed no tps:\n{output}")
    return {
        "tps": round(float(tps.group(1)), 1),
        "latency_ms": float(latency.group(1)),
        "transactions": int(processed.group(1)) if processed else 0,
    }


# --- fan-out ------------------------------------------------------------------------------


class Talker:
    """JSON lines to and from a process started with pipes (bench/fanout.py)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        stdout = self.process.popen.stdout
        assert stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for raw in stdout:
                self._lines.put(raw.decode("utf-8", "replace"))
        self._lines.put(None)

    def send(self, **command: Any) -> None:
        stdin = self.process.popen.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps(command) + "\n").encode())
            stdin.flush()
        except OSError as error:
            raise HarnessError(
                f"{self.process.name} went away: {error}\n{self.process.log_tail()}"
            ) from None

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise HarnessError(
                    f"{self.process.name} ended before `{event}`:\n{self.process.log_tail()}"
                )
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and message.get("event") == event:
                    return message
        raise HarnessError(f"{self.process.name}: no `{event}` within {timeout:.0f} s")


def facade_metrics(port: int) -> dict[str, float]:
    """The facade's WebSocket figures from its /metrics (Prometheus text)."""
    found: dict[str, float] = {}
    try:
        answer = http_request(port, "GET", "/metrics")
    except OSError:
        return found
    if answer.status != 200 or not isinstance(answer.body, str):
        return found
    for line in answer.body.splitlines():
        if line.startswith(("stockfolio_ws_", "stockfolio_ws_dropped")):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                found[name] = float(value)
    return found


def merge_histograms(reports: Sequence[Mapping[str, Any]]) -> list[tuple[int, int]]:
    merged: dict[int, int] = {}
    for one in reports:
        for bucket, count in one["histogram"].items():
            merged[int(bucket)] = merged.get(int(bucket), 0) + int(count)
    return sorted(merged.items())


def histogram_percentile(buckets: Sequence[tuple[int, int]], fraction: float) -> float:
    """Nearest-rank percentile in ms (a bucket's upper edge: 0.1 ms resolution)."""
    total = sum(n for _, n in buckets)
    if not total:
        return 0.0
    rank = max(1, min(total, round(fraction * total + 0.5)))
    seen = 0
    for bucket, count in buckets:
        seen += count
        if seen >= rank:
            return (bucket + 1) / 10
    return (buckets[-1][0] + 1) / 10


def leave(fleet: Fleet, processes: Sequence[Process], *, wait: float) -> None:
    """Give processes up to `wait` seconds to end by themselves, then stop what is left."""
    deadline = time.monotonic() + wait
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
    fleet.stop(processes)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def measure_fanout(
    fleet: Fleet, system: System, settings: PortfolioSettings, report: PortfolioReport, work: Path
) -> None:
    ports = system.ports
    facade = system.processes["facade"]
    n = settings.subscribers
    print(f"  /ws/portfolio: {n:,} subscribers x {settings.symbols_per_socket} symbols ...")
    tokens = [register_user(ports.facade)[2] for _ in range(settings.ws_users)]
    tokens_file = work / "ws-tokens.json"
    tokens_file.write_text(json.dumps(tokens))
    stocks = http_request(ports.facade, "GET", "/api/v1/stocks?limit=100", token=tokens[0])
    if stocks.status != 200:
        raise HarnessError(f"GET /api/v1/stocks answered {stocks.status}: {stocks.body}")
    symbols = [str(s["symbol"]) for s in stocks.body["data"]]

    market_process = fleet.start(
        "ws-market",
        ["-m", "bench.fanout", "market", f"--port={ports.grpc['portfolio']}"],
        pipes=True,
    )
    started = [market_process]
    finished = False
    try:
        market = Talker(market_process)
        market.expect("ready", MARKET_READY_TIMEOUT)

        facts: dict[str, Any] = {
            "subscribers": n,
            "symbols": len(symbols),
            "symbols_per_socket": settings.symbols_per_socket,
            "client_processes": settings.client_processes,
            "ramp_batch": settings.ramp_batch,
            "ws_client": settings.ws_client,
            "users": len(tokens),
            "update_interval_ms": settings.update_interval_ms,
            "facade_rss_before_mb": round(rss_mb(facade.pid), 1),
        }
        # The load's sockets spread over the client processes, and a few in a process of their own
        # (the probe): with little to read, its latencies are the facade's, hardly its own.
        probe = min(settings.probe_sockets, n - 1) if n > 1 else 0
        bulk = n - probe
        shares = [bulk // settings.client_processes] * settings.client_processes
        for k in range(bulk % settings.client_processes):
            shares[k] += 1
        names = [f"ws-clients-{k}" for k in range(len(shares))]
        if probe:
            shares.append(probe)
            names.append("ws-probe")
        with RssSampler({"facade": facade.pid}, every=0.25) as sampler:
            ramp_started = time.monotonic()
            talkers: list[Talker] = []
            first = 0
            for name, count in zip(names, shares, strict=True):
                argv = [
                    "-m",
                    "bench.fanout",
                    "clients",
                    f"--port={ports.facade}",
                    f"--tokens={tokens_file}",
                    f"--symbols={','.join(symbols)}",
                    f"--first={first}",
                    f"--count={count}",
                    f"--per-socket={settings.symbols_per_socket}",
                    f"--batch={settings.ramp_batch}",
                    f"--sample={settings.sample_per_process}",
                    f"--nice={0 if name == 'ws-probe' else settings.client_nice}",
                    f"--client={settings.ws_client}",
                ]
                process = fleet.start(name, argv, pipes=True)
                started.append(process)
                talkers.append(Talker(process))
                first += count
            connected = [t.expect("connected", RAMP_TIMEOUT) for t in talkers]
            facts["ramp_seconds"] = round(time.monotonic() - ramp_started, 1)
            facts["connected"] = sum(c["sockets"] for c in connected)
            facts["connect_failures"] = {
                reason: count for c in connected for reason, count in c["failures"].items()
            }
            facts["facade_rss_after_ramp_mb"] = round(rss_mb(facade.pid), 1)
            print(
                f"    {facts['connected']:,} connected in {facts['ramp_seconds']} s;"
                f" measuring {settings.measure_seconds:g} s ...",
                flush=True,
            )
            time.sleep(SETTLE_SECONDS)
            start = time.time() + 1.0
            end = start + settings.measure_seconds
            for talker in talkers:
                talker.send(command="window", **{"from": start, "to": end})
            watched = {name: p.pid for name, p in system.processes.items()}
            watched.update((t.process.name, t.process.pid) for t in talkers)
            watched["ws-market"] = market_process.pid
            sleep_until(start)
            cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            facade_before = cpu_split(facade.pid)
            scheduled_before = scheduling(facade.pid)
            sleep_until(end)
            cpu_after = {name: cpu_seconds(pid) for name, pid in watched.items()}
            facade_after = cpu_split(facade.pid)
            scheduled_after = scheduling(facade.pid)
            facts["facade_rss_end_mb"] = round(rss_mb(facade.pid), 1)
            time.sleep(DELIVERY_GRACE)
            market.send(command="report", **{"from": start, "to": end})
            reference = market.expect("report", REPORT_TIMEOUT)
            for talker in talkers:
                talker.send(command="report", reference=reference["ticks"])
            reports = [t.expect("report", REPORT_TIMEOUT) for t in talkers]
            facts["facade_metrics"] = facade_metrics(ports.facade)
        facts["facade_rss_peak_sampled_mb"] = round(sampler.peak["facade"], 1)
        facts["facade_rss_peak_mb"] = round(high_water_mb(facade.pid), 1)
        facts["rss_timeline_mb"] = [
            (round(t, 1), round(mb, 1)) for t, mb in sampler.samples["facade"][::4]
        ]
        finished = True
    finally:
        # On the way out each process leaves by itself (it closes its sockets first); on a
        # failure there is nothing to wait for.
        leave(fleet, started, wait=10.0 if finished else 0.0)

    seconds = settings.measure_seconds
    facts["cpu_percent"] = {
        name: round((cpu_after[name] - cpu_before[name]) / seconds * 100, 1) for name in watched
    }
    facts["facade_cpu_user_system_percent"] = [
        round((facade_after[i] - facade_before[i]) / seconds * 100, 1) for i in (0, 1)
    ]
    facts["reference"] = {k: v for k, v in reference.items() if k not in ("ticks", "event")}
    steps = max(1, int(reference.get("steps", 0)))
    facts["facade_main_thread_per_step"] = {
        key: round((scheduled_after[key] - scheduled_before[key]) / steps * scale, 1)
        for key, scale in (
            ("on_cpu", 1000),
            ("run_queue", 1000),
            ("voluntary", 1),
            ("nonvoluntary", 1),
            ("write_calls", 1),
        )
        if key in scheduled_before and key in scheduled_after
    }
    facts["per_process"] = {
        talker.process.name: {
            "sockets": one["sockets"],
            "p50_ms": histogram_percentile(merge_histograms([one]), 0.50),
            "p99_ms": histogram_percentile(merge_histograms([one]), 0.99),
            "cpu_percent": round(one["cpu_seconds"] / seconds * 100, 1),
        }
        for talker, one in zip(talkers, reports, strict=True)
    }
    # Mean latency of each symbol, in the order the market publishes a step's ticks.
    sums: dict[str, list[float]] = {}
    for one in reports:
        for symbol, (total, count) in one["per_symbol"].items():
            entry = sums.setdefault(symbol, [0.0, 0])
            entry[0] += total
            entry[1] += count
    order = [symbol for symbol, _ in reference["ticks"].items()]
    facts["mean_ms_by_publication_order"] = [
        (symbol, round(sums[symbol][0] / sums[symbol][1] * 1000, 1))
        for symbol in order
        if symbol in sums and sums[symbol][1]
    ]
    buckets = merge_histograms(reports)
    delivered = sum(count for _, count in buckets)
    completion: dict[str, float] = {}
    for one in reports:
        for tick, latency in one["per_tick_max"].items():
            completion[tick] = max(completion.get(tick, 0.0), latency)
    totals = {
        key: sum(int(one[key]) for one in reports)
        for key in (
            "expected",
            "received",
            "lost",
            "duplicates",
            "unpublished",
            "out_of_order",
            "sockets_with_loss",
            "negative",
            "other_messages",
        )
    }
    closed: dict[str, int] = {}
    for one in reports:
        for code, count in one["closed_early"].items():
            closed[code] = closed.get(code, 0) + count
    facts.update(
        {
            "delivered": delivered,
            "deliveries_per_second": round(delivered / seconds, 1),
            "p50_ms": histogram_percentile(buckets, 0.50),
            "p90_ms": histogram_percentile(buckets, 0.90),
            "p99_ms": histogram_percentile(buckets, 0.99),
            "p999_ms": histogram_percentile(buckets, 0.999),
            "max_ms": histogram_percentile(buckets, 1.0),
            "tick_completion_ms": {
                "ticks": len(completion),
                "p50": round(percentile(list(completion.values()), 0.5) * 1000, 1),
                "p99": round(percentile(list(completion.values()), 0.99) * 1000, 1),
                "max": round(max(completion.values(), default=0.0) * 1000, 1),
            },
            **totals,
            "closed_early": closed,
            "sample": {
                key: sum(one["sample"][key] for one in reports)
                for key in ("sequences_compared", "sequences_identical")
            },
            "loss_examples": [e for one in reports for e in one["loss_examples"]][:5],
            "client_cpu_seconds": [one["cpu_seconds"] for one in reports],
            # How late the load clients read what had arrived (not part of the latency above).
            "client_read_lag_ms": [one.get("read_lag_ms", {}) for one in reports],
        }
    )
    report.facts["ws"] = facts


# --- orchestration ------------------------------------------------------------------------


MEASURED_CODE = (
    "facade/sockets.py",
    "facade/portfolio_feed.py",
    "facade/ws_portfolio.py",
    "services/portfolio/trades.py",
    "services/portfolio/book.py",
    "services/portfolio/book_states.py",
    "services/portfolio/repository.py",
    "services/portfolio/mock_market.py",
    "services/runtime/db.py",
)


def code_fingerprints() -> dict[str, str]:
    """A short hash of each file the figures mostly depend on: others edit them while the
    benchmark runs, and a figure means little without the code it measured."""
    found = {}
    for name in MEASURED_CODE:
        path = REPO / name
        if path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return found


@contextlib.contextmanager
def attempt(report: PortfolioReport, what: str) -> Iterator[None]:
    """Run one part; if the harness fails there, say so and go on with the next part (its
    processes are stopped by the Fleet that started them)."""
    try:
        yield
    except HarnessError as error:
        print(f"bench: {what} failed: {error}", file=sys.stderr, flush=True)
        report.failures.append((what, str(error)))


def run_portfolio(settings: PortfolioSettings) -> PortfolioReport:
    report = PortfolioReport(settings)
    report.facts["code"] = code_fingerprints()
    trades, ws = "trades" in settings.parts, "ws" in settings.parts
    on_sqlite = trades and "sqlite" in settings.databases
    shutil.rmtree(LOGS, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="stockfolio-bench-portfolio-") as temporary:
        root = Path(temporary)
        if ws or on_sqlite:
            print("starting the system on SQLite ...", flush=True)
            with (
                attempt(report, "the system on SQLite"),
                portfolio_system(root / "sqlite", settings, {}) as (fleet, system),
            ):
                if ws:
                    with attempt(report, "/ws/portfolio fan-out"):
                        measure_fanout(fleet, system, settings, report, root)
                    wait_until_idle([p.pid for p in system.processes.values()], timeout=20.0)
                if on_sqlite:
                    with attempt(report, "trades on SQLite"):
                        measure_trades("SQLite", system, settings, report, root)
        if trades and "postgresql" in settings.databases:
            with attempt(report, "pgbench"):
                measure_pgbench(settings, report)
            print("starting the system on PostgreSQL (fresh databases) ...", flush=True)
            with (
                attempt(report, "the system on PostgreSQL"),
                postgres_databases(("users", "portfolio")) as urls,
            ):
                report.facts["postgresql_databases"] = list(urls)
                extra = {
                    "USERS_DATABASE_URL": urls["users"],
                    "PORTFOLIO_DATABASE_URL": urls["portfolio"],
                }
                with portfolio_system(root / "postgresql", settings, extra) as (_, system):
                    measure_trades("PostgreSQL", system, settings, report, root, urls["portfolio"])
    build_portfolio_rows(report)
    return report


# --- rows ---------------------------------------------------------------------------------


def build_portfolio_rows(report: PortfolioReport) -> None:
    settings = report.settings
    for label in DATABASES.values():
        runs = report.runs.get(f"POST /api/v1/trades ({label})")
        if not runs:
            continue
        load = best(runs)
        failed = load["non_2xx"] + load["transport_errors"]
        per = load["trades_per_portfolio"]
        began = f"began with {load['history']} and " if load.get("history") else ""
        note = (
            f"{load['portfolios']} portfolios of {load['users']} users, one per"
            f" connection; each {began}ended with {per['min']}-{per['max']} trades"
        )
        pgbench = report.facts.get("pgbench", []) if label == "PostgreSQL" else []
        if pgbench:
            ratios = ", ".join(
                f"{load['rps'] / run['tps']:.2f} x pgbench at scale {run['scale']}"
                for run in pgbench
            )
            note = f"{ratios}; {note}"
        good = not failed and load["rps"] >= TRADES_GOAL_RPS and load["p99_ms"] < TRADES_P99_MS
        report.rows.append(
            load_row(
                f"POST /api/v1/trades, {label}, c{settings.trade_concurrency}",
                load,
                baseline=f"pgbench s{pgbench[0]['scale']}" if pgbench else "",
                ratio=load["rps"] / pgbench[0]["tps"] if pgbench else None,
                requirement=(
                    f">= {TRADES_GOAL_RPS:,.0f}/s, p99 < {TRADES_P99_MS:g} ms, 0 errors"
                    if label == "PostgreSQL"
                    else "0 errors"
                ),
                verdict=(
                    verdict(good, load) if label == "PostgreSQL" else ("MISS" if failed else "PASS")
                ),
                note=note,
            )
        )
    for run in report.facts.get("pgbench", []):
        report.rows.append(
            Row(
                f"pgbench TPC-B, scale {run['scale']}, c{run['clients']}",
                rps=run["tps"],
                note=(
                    f"transactions/s of 5 statements; mean latency {run['latency_ms']:.1f} ms;"
                    " same PostgreSQL, scratch database, before the trades"
                ),
            )
        )
    facts = report.facts.get("ws")
    if facts:
        add_fanout_rows(report, facts)
    for what, error in report.failures:
        first_line = error.strip().splitlines()[0] if error.strip() else "?"
        report.rows.append(Row(what, verdict="FAILED", note=first_line[:160]))


def print_read_lags(facts: Mapping[str, Any]) -> None:
    """Latencies are to the kernel's arrival time; how late the load clients then read it."""
    lags = [lag for lag in facts.get("client_read_lag_ms", []) if lag]
    if lags:
        shown = "; ".join(
            f"p50 {g['p50']:.0f} / p99 {g['p99']:.0f} / max {g['max']:.0f}" for g in lags
        )
        print(
            "Latencies run to each frame's arrival at its socket (the kernel's receive time);"
            f" the load clients read them later, by (ms, per client process): {shown}"
        )


def add_fanout_rows(report: PortfolioReport, facts: Mapping[str, Any]) -> None:
    rows = report.rows
    n = facts["subscribers"]
    all_connected = facts["connected"] == n
    valid = facts["delivered"] > 0 and facts["unpublished"] == 0 and all_connected
    shape = f"{n:,} subs x {facts['symbols_per_socket']} symbols"
    rows.append(
        p99_row(
            f"/ws/portfolio delivery latency, {shape}",
            facts["p50_ms"],
            facts["p99_ms"],
            limit_ms=WS_P99_LIMIT_MS,
            valid=valid,
            note=(
                f"{facts['delivered']:,} prices in {report.settings.measure_seconds:g} s"
                f" ({facts['deliveries_per_second']:,.0f}/s); p99.9 {facts['p999_ms']:.0f} ms,"
                f" max {facts['max_ms']:.0f} ms; every socket, timed to"
                + (
                    " each frame's arrival (the kernel's receive time) at lean clients"
                    if facts.get("ws_client") == "lean"
                    else " its read by aiohttp clients"
                )
                + f" on the same 2 cores (nice {report.settings.client_nice})"
            ),
        )
    )
    probe = facts["per_process"].get("ws-probe")
    if probe:
        rows.append(
            Row(
                f"  of which {probe['sockets']} probe sockets (own process)",
                p50_ms=probe["p50_ms"],
                p99_ms=probe["p99_ms"],
                note=(
                    f"diagnostic, no verdict: a client with little to read"
                    f" ({probe['cpu_percent']:.0f}% CPU, normal priority) sees about the facade's"
                    " own delivery time"
                ),
            )
        )
    lost_ok = facts["lost"] == 0 and not facts["closed_early"] and all_connected
    sample = facts["sample"]
    rows.append(
        Row(
            "/ws/portfolio ticks lost (client keeping up)",
            requirement="0 lost",
            verdict=("PASS" if lost_ok else "MISS") if facts["expected"] else "INVALID",
            note=(
                f"{facts['lost']:,} of {facts['expected']:,} expected;"
                f" {facts['sockets_with_loss']} sockets with a loss;"
                f" {facts['duplicates']} dup, {facts['out_of_order']} out of order,"
                f" {facts['unpublished']} unknown; closed early {facts['closed_early'] or 0};"
                f" sampled {sample['sequences_identical']}/{sample['sequences_compared']}"
                " (symbol, sequence of time+price) identical to the market's"
            ),
        )
    )
    peak = max(facts["facade_rss_peak_mb"], facts["facade_rss_peak_sampled_mb"])
    rows.append(
        Row(
            "/ws/portfolio facade RSS (peak)",
            requirement=f"< {WS_RSS_LIMIT_MB:.0f} MB",
            verdict=verdict(peak < WS_RSS_LIMIT_MB),
            note=(
                f"{peak:.1f} MB peak; {facts['facade_rss_before_mb']:.0f} MB before,"
                f" {facts['facade_rss_after_ramp_mb']:.0f} after the ramp,"
                f" {facts['facade_rss_end_mb']:.0f} at the window's end"
            ),
        )
    )
    cpu = facts["cpu_percent"]
    clients = sum(v for k, v in cpu.items() if k.startswith(("ws-clients", "ws-probe")))
    user, system = facts["facade_cpu_user_system_percent"]
    rows.append(
        Row(
            "/ws/portfolio facade CPU",
            note=(
                f"{cpu.get('facade', 0):.0f}% of a core over the window ({user:.0f}% user,"
                f" {system:.0f}% kernel); portfolio {cpu.get('portfolio', 0):.0f}%, the client"
                f" processes {clients:.0f}% together"
            ),
        )
    )
    rows.append(
        Row(
            "/ws/portfolio connection ramp",
            note=(
                f"{facts['connected']:,}/{n:,} sockets in {facts['ramp_seconds']} s"
                f" ({facts['client_processes']} processes, {facts['ramp_batch']} at a time each);"
                f" failures {facts['connect_failures'] or 0}"
            ),
        )
    )


def describe_portfolio(settings: PortfolioSettings) -> str:
    parts = []
    if "trades" in settings.parts:
        parts.append(
            f"trades on {' and '.join(DATABASES[d] for d in settings.databases)} at"
            f" c{settings.trade_concurrency}, {settings.trade_rounds} rounds of"
            f" {settings.trade_warmup:g} s warm-up + {settings.trade_duration:g} s"
            + (
                f", portfolios starting with {settings.trade_history} trades"
                if settings.trade_history
                else ""
            )
            + "; pgbench TPC-B beside them on PostgreSQL"
        )
    if "ws" in settings.parts:
        parts.append(
            f"/ws/portfolio {settings.subscribers:,} subscribers x {settings.symbols_per_socket}"
            f" symbols, {settings.measure_seconds:g} s measured, prices every"
            f" {settings.update_interval_ms} ms"
        )
    return "portfolio: " + "; ".join(parts) + f", BCRYPT_COST={settings.bcrypt_cost}"


def ceiling(spent: Mapping[str, int]) -> str:
    """The most requests a second the machine could do at that CPU per request: its cores all
    busy, and each process (one core at most: one event loop) within its own core."""
    cores = os.cpu_count() or 1
    total = sum(spent.values())
    # PostgreSQL is many processes: it is not held to one core.
    single = {k: v for k, v in spent.items() if k != "postgresql"} or spent
    busiest, most = max(single.items(), key=lambda kv: kv[1])
    machine = cores * 1e6 / max(1, total)
    alone = 1e6 / max(1, most)
    return (
        f"ceiling at this CPU: {machine:,.0f}/s on {cores} cores all busy;"
        f" about {alone:,.0f}/s where {busiest} fills one core (its event loop's;"
        " gRPC's own thread adds a little beside it)"
    )


def print_portfolio(report: PortfolioReport) -> None:
    print("Portfolio (issue 4):")
    print_rows(report.rows)
    spent_lines = []
    for name, runs in report.runs.items():
        spent = best(runs).get("cpu_us_per_request", {})
        busy = {k: v for k, v in spent.items() if v >= 5}
        listed = ", ".join(f"{k} {v:,}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]))
        spent_lines.append(f"  {name:<34} {listed}  (total {sum(spent.values()):,})")
        if spent:
            spent_lines.append(f"  {'':<34} {ceiling(spent)}")
    if spent_lines:
        print("CPU time per trade, by process (µs; best round):")
        print("\n".join(spent_lines))
        for name, runs in report.runs.items():
            rounds = ", ".join(
                f"{r['rps']:,.0f}/s p99 {r['p99_ms']:.0f} ms"
                f" ({r['trades_per_portfolio']['max']} trades/portfolio)"
                for r in runs
            )
            print(f"  {name} rounds: {rounds}")
            for r in runs:
                if "postgresql" in r:
                    activity = r["postgresql"]
                    trades = max(1, r["completed_total"])
                    print(
                        f"    portfolio database: {activity['sessions']} sessions opened,"
                        f" {activity['commits'] / trades:.2f} commits and"
                        f" {activity['rollbacks'] / trades:.2f} rollbacks per trade"
                    )
    facts = report.facts.get("ws")
    if facts:
        reference = facts["reference"]
        completion = facts["tick_completion_ms"]
        cpu = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(facts["cpu_percent"].items()))
        print(
            "Fan-out: the market published"
            f" {reference.get('total_ticks', 0):,} ticks in {reference.get('steps', 0)} steps;"
            f" straight from its gRPC stream they arrive in p50 {reference.get('p50_ms', 0):.1f} /"
            f" p99 {reference.get('p99_ms', 0):.1f} ms. The last subscriber of a tick gets it"
            f" p50 {completion['p50']:.0f} / p99 {completion['p99']:.0f} /"
            f" max {completion['max']:.0f} ms after publication."
        )
        print(f"CPU over the window (% of one core): {cpu}")
        step = facts["facade_main_thread_per_step"]
        print_read_lags(facts)
        print(
            f"The facade's main thread, per market step: {step['on_cpu']:.0f} ms on a CPU,"
            f" {step['run_queue']:.0f} ms runnable but waiting for one,"
            f" {step['nonvoluntary']:.0f} preemptions, {step['voluntary']:.0f} waits;"
            f" {step.get('write_calls', 0):,.0f} write system calls per step for"
            f" {facts['subscribers']:,} sockets"
        )
        ordered = facts["mean_ms_by_publication_order"]
        if ordered:
            listed = ", ".join(f"{symbol} {ms:.0f}" for symbol, ms in ordered)
            print(
                f"Mean latency by symbol, in the order a market step publishes them (ms): {listed}"
            )
    print()
