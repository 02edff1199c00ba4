"""The printed table and the JSON results: rows, ratios, verdicts (PASS, MISS, INVALID)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from tests.system_harness import REPO

RESULTS = REPO / "var" / "bench" / "results.json"
RSS_LIMIT_MB = 120.0
Load = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """How long and how hard one `make bench` measures."""

    rounds: int
    warmup: float
    duration: float
    login_warmup: float
    login_duration: float
    concurrency: int
    sequential_warmup: float
    sequential_duration: float
    sequential_requests: int
    bcrypt_seconds: float
    bcrypt_cost: int
    idle_seconds: float


@dataclass
class Row:
    """One line of the printed table."""

    path: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    baseline: str = ""
    ratio: float | None = None
    requirement: str = ""
    verdict: str = ""
    note: str = ""


S = TypeVar("S")


@dataclass
class PartReport(Generic[S]):
    """What one part of the bench found: its settings, its table's rows, the facts behind them,
    and what went wrong, as (part, what)."""

    settings: S
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "settings": asdict(self.settings),  # type: ignore[call-overload]
            "rows": [asdict(r) for r in self.rows],
            "facts": self.facts,
        }


@dataclass
class Report:
    settings: Settings
    rows: list[Row] = field(default_factory=list)
    runs: dict[str, list[Load]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def best(runs: Sequence[Load], *, by: str = "rps") -> Load:
    """The best of several rounds: noise on a shared machine only ever makes a run worse."""
    if by == "rps":
        return max(runs, key=lambda r: r["rps"])
    return min(runs, key=lambda r: r[by] if r["requests"] else float("inf"))


def verdict(ok: bool, load: Load | None = None) -> str:
    """PASS or MISS; INVALID when more than 1% of the requests failed (the figure means nothing)."""
    if load is not None:
        failed = load["non_2xx"] + load["transport_errors"]
        if load["requests"] == 0 or failed > 0.01 * max(1, load["requests"]):
            return "INVALID"
    return "PASS" if ok else "MISS"


def p99_row(path: str, p50: float, p99: float, *, limit_ms: float, valid: bool, note: str) -> Row:
    """A latency row whose p99 must stay under `limit_ms`; INVALID when the run itself was not
    valid (the figure means nothing)."""
    return Row(
        path,
        p50_ms=p50,
        p99_ms=p99,
        requirement=f"p99 < {limit_ms:.0f} ms",
        verdict=("PASS" if p99 < limit_ms else "MISS") if valid else "INVALID",
        note=note,
    )


def load_row(path: str, load: Load, **extra: Any) -> Row:
    note = extra.pop("note", "")
    failed = load["non_2xx"] + load["transport_errors"]
    if failed:
        note = f"{note}; " if note else ""
        note += f"{failed} failed ({load['statuses']})"
    return Row(path, load["rps"], load["p50_ms"], load["p99_ms"], note=note, **extra)


def against_baseline(path: str, load: Load, name: str, base: Load, floor: float) -> Row:
    """The row of a run that must reach `floor` times the requests per second of baseline
    `name`."""
    ratio = load["rps"] / base["rps"]
    return load_row(
        path,
        load,
        baseline=name,
        ratio=ratio,
        requirement=f">= {floor:.2f} x {name}",
        verdict=verdict(ratio >= floor, load),
    )


def under_limit(path: str, load: Load, stat: str, limit_ms: float, *, note: str = "") -> Row:
    """The row of a run whose `stat` latency ("p50", "p99") must stay under `limit_ms`."""
    return load_row(
        path,
        load,
        requirement=f"{stat} < {limit_ms:g} ms",
        verdict=verdict(load[f"{stat}_ms"] < limit_ms, load),
        note=note,
    )


def build_rows(report: Report, has_facade: bool) -> None:
    runs, rows = report.runs, report.rows
    a, b = best(runs["A"]), best(runs["B"])
    rows.append(load_row("baseline A: raw aiohttp, same JSON", a))
    rows.append(
        load_row(
            "baseline B: aiohttp -> grpc.aio unary",
            b,
            baseline="A",
            ratio=b["rps"] / a["rps"] if a["rps"] else None,
            note="B/A (issue 3 expects ~0.12-0.15 here)",
        )
    )
    if has_facade:
        health, me = best(runs["GET /health"]), best(runs["GET /api/v1/users/me"])
        rows.append(against_baseline("GET /health", health, "A", a, 0.7))
        rows.append(against_baseline("GET /api/v1/users/me", me, "B", b, 0.6))
        one = runs["GET /health/all (sequential)"][0]
        note = f"{one['requests']} requests"
        rows.append(under_limit("GET /health/all, one at a time", one, "p50", 5.0, note=note))
        many = best(runs["GET /health/all (c64)"], by="p99_ms")
        rows.append(under_limit("GET /health/all, c64", many, "p99", 20.0))
    add_bcrypt_rows(report, has_facade)
    add_rss_rows(report)


def add_bcrypt_rows(report: Report, has_facade: bool) -> None:
    facts = report.facts["bcrypt"]
    one, two = facts["one_thread"], facts["two_threads"]
    report.rows.append(
        Row(
            f"raw bcrypt.checkpw cost {facts['cost']}, 1 thread",
            one["rate"],
            note=f"{one['checks']} checks",
        )
    )
    report.rows.append(
        Row(
            f"raw bcrypt.checkpw cost {facts['cost']}, 2 threads",
            two["rate"],
            note=f"{two['checks']} checks",
        )
    )
    width = facts["service_pool_width"]
    chosen, label = (two, "bcrypt 2 thr") if width >= 2 else (one, "bcrypt 1 thr")
    facts["compared_with"] = label
    if not has_facade:
        return
    login = best(report.runs["POST /api/v1/auth/login"])
    ratio = login["rps"] / chosen["rate"] if chosen["rate"] else 0.0
    report.rows.append(
        load_row(
            "POST /api/v1/auth/login",
            login,
            baseline=label,
            ratio=ratio,
            requirement=">= 0.80 x raw",
            verdict=verdict(ratio >= 0.8, login),
            note=f"latency is queueing at c{report.settings.concurrency} behind bcrypt",
        )
    )


def add_rss_rows(report: Report) -> None:
    for name, mb in report.facts["rss_idle_mb"].items():
        report.rows.append(
            Row(
                f"idle RSS {name}",
                requirement=f"< {RSS_LIMIT_MB:.0f} MB",
                verdict=verdict(mb < RSS_LIMIT_MB),
                note=f"{mb:.1f} MB",
            )
        )
    after = report.facts.get("rss_after_mb", {})
    if after:
        listed = ", ".join(f"{k} {v:.0f}" for k, v in after.items())
        report.facts["rss_note"] = f"RSS after the load (MB, for information): {listed}"


def number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def print_table(report: Report) -> None:
    print_rows(report.rows)
    print_cpu_per_request(report)
    print()
    if "rss_note" in report.facts:
        print(report.facts["rss_note"])
    facts = report.facts["bcrypt"]
    print(
        f"Logins are compared with raw checkpw on {facts['compared_with']}: the users service"
        f" verifies passwords on a pool of {facts['service_pool_width']} threads and bcrypt"
        " releases the GIL, so it can use that many cores at once."
    )


def print_rows(rows: Sequence[Row]) -> None:
    """The table: one line per row, the note last."""
    header = ("path", "req/s", "p50 ms", "p99 ms", "baseline", "ratio", "requirement", "result")
    lines = [
        (
            r.path,
            number(r.rps),
            number(r.p50_ms, 2),
            number(r.p99_ms, 2),
            r.baseline,
            number(r.ratio, 3),
            r.requirement,
            r.verdict,
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    right = {1, 2, 3, 5}

    def render(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ]
        return " | ".join(parts)

    print()
    print(render(header) + " | note")
    print("-+-".join("-" * w for w in widths) + "-+-" + "-" * 20)
    for line in lines:
        print(render(line[:-1]) + " | " + line[-1])
    print()


def capacity(spent: dict[str, int], cores: int) -> float:
    """Requests/s the CPU times allow: the busiest process has one core, all share `cores`."""
    busiest, total = max(spent.values(), default=0), sum(spent.values())
    if not busiest:
        return 0.0
    return min(1e6 / busiest, cores * 1e6 / total)


def cpu_cross_checks(report: Report) -> list[str]:
    """The ratios again, from CPU time per request rather than from rates: another tenant taking
    a core moves a rate a lot and a CPU time little."""

    def spent(name: str) -> dict[str, int]:
        runs = report.runs.get(name)
        return best(runs).get("cpu_us_per_request", {}) if runs else {}

    cores = os.cpu_count() or 1
    lines = []
    pairs = (("GET /health", "A", 0.7), ("GET /api/v1/users/me", "B", 0.6))
    for path, baseline, needed in pairs:
        ours, theirs = capacity(spent(path), cores), capacity(spent(baseline), cores)
        if ours and theirs:
            lines.append(
                f"  {path:<24} {ours:,.0f}/s vs {baseline} {theirs:,.0f}/s:"
                f" ratio {ours / theirs:.3f} (needs >= {needed})"
            )
    login = spent("POST /api/v1/auth/login").get("users")
    if login:
        per_check = report.facts["bcrypt"]["one_thread"]["cpu_ms_per_check"] * 1000
        lines.append(
            f"  POST /api/v1/auth/login  users spends {login / 1000:,.0f} ms CPU per login vs"
            f" {per_check / 1000:,.0f} ms per raw check: ratio {per_check / login:.3f}"
            " (needs >= 0.8)"
        )
    return lines


def print_cpu_per_request(report: Report) -> None:
    """Where each path's CPU goes, by process: the figure to read on a noisy machine."""
    print("CPU time per completed request, by process (µs; all cores; best round of each):")
    for name, runs in report.runs.items():
        if name == "GET /health/all (sequential)":
            continue
        by = "p99_ms" if name == "GET /health/all (c64)" else "rps"
        spent = best(runs, by=by).get("cpu_us_per_request", {})
        busy = {k: v for k, v in spent.items() if v >= 5}
        listed = ", ".join(f"{k} {v:,}" for k, v in sorted(busy.items(), key=lambda kv: -kv[1]))
        print(f"  {name:<24} {listed}  (total {sum(spent.values()):,})")
    facts = report.facts["bcrypt"]
    print(
        f"  raw bcrypt.checkpw       {facts['one_thread']['cpu_ms_per_check'] * 1000:,.0f}"
        " per check (1 thread)"
    )
    checks = cpu_cross_checks(report)
    if checks:
        print("Cross-check, capacity implied by those CPU times (not a verdict):")
        print("\n".join(checks))


def write_results(report: Report | None, portfolio: dict[str, Any] | None = None) -> Path:
    """var/bench/results.json: the foundation part at the top (settings, rows, runs, facts), the
    portfolio part under `portfolio`. A part this run did not measure (`--only`) is kept from
    the previous file, with the time it was measured."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    document: dict[str, Any] = {}
    if RESULTS.is_file():
        try:
            previous = json.loads(RESULTS.read_text())
        except ValueError:
            previous = {}
        if isinstance(previous, dict):
            document = previous
            document.setdefault("foundation_finished", previous.get("finished"))
    document["finished"] = now
    document["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if report is not None:
        document.update(
            {
                "foundation_finished": now,
                "settings": asdict(report.settings),
                "rows": [asdict(r) for r in report.rows],
                "runs": report.runs,
                "facts": report.facts,
            }
        )
    if portfolio is not None:
        document["portfolio"] = {"finished": now, **portfolio}
    RESULTS.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return RESULTS
