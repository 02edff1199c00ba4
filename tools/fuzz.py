"""`make fuzz`: Schemathesis against the started system, as a signed-in client sees it.

Starts the system as the e2e tests do (tests/system_harness.py: migrations, then honcho with
deploy/Procfile on free ports, a temporary var/ folder, embedded defaults), registers a fresh
user, and runs Schemathesis on the system's own /api/v1/openapi.json with a fixed seed and a
bounded number of examples per operation. Prints totals and exits 1 on any server error or
schema violation; a schema-valid request rejected (positive_data_acceptance) fails the run only
on an operation outside ALLOWED_REJECTIONS.

Run it with `make fuzz`, or `PYTHONPATH=.:gen .venv/bin/python tools/fuzz.py --help`; on some
operations only with `--operation PortfolioService_GetPerformance` (their OpenAPI operationIds,
the option repeated for several).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.system import postgres_databases
from tests.system_harness import (
    BIN,
    Account,
    System,
    register,
    running_system,
)

SEED = 20261204
# Cases per operation. 150 took 10 minutes over 91 operations here and ran out of time in CI
# (17,500 requests); 50 sends about a third of that and still fills every schema's corners
# (Schemathesis's explicit examples and boundary values come first).
MAX_EXAMPLES = 50
# A guard, not a budget: the run takes about three minutes on two cores. When it runs out, the
# cases that finished are still reported, and the run fails as incomplete.
RUN_TIMEOUT = 900.0
REQUEST_TIMEOUT = 10.0

# A failure of any of these fails the run.
STRICT_CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)
# A business rule may refuse a schema-valid request; reported apart (see ALLOWED_REJECTIONS).
ACCEPTANCE_CHECK = "positive_data_acceptance"
CHECKS = (*STRICT_CHECKS, ACCEPTANCE_CHECK)

# Routes that never answer over plain HTTP, with why. WebSockets (/ws/...) and terminal sockets
# are not in the OpenAPI document, so they need no entry here.
EXCLUDED_PATHS = {
    "/api/v1/files:watch": "a server-streaming watch: it streams file events until the client "
    "leaves, so every request would run into the request timeout",
}

# Operations whose schema-valid requests a business rule or the user's state may refuse, each
# with the rule. Everything a request's shape can say is stated by the protos' rules, so a
# rejection anywhere else (or for a shape reason) fails the run.
ALLOWED_REJECTIONS: Mapping[str, str] = {
    "POST /api/v1/auth/register": "the password policy beyond length (a letter and a digit, "
    "not the email; at most 72 bytes, which JSON Schema cannot count); a taken email",
    "PUT /api/v1/users/{id}": "a new password at most 72 bytes (stated in words: JSON Schema "
    "counts characters); one's own new password or new email needs the current password, "
    "right; a taken email; only admins change roles",
    "DELETE /api/v1/users/{id}": "deleting one's own account needs the current password, "
    "right; the last admin cannot be deleted",
    "POST /api/v1/chat/message": "the model must be one the provider offers now (ListModels)",
    "POST /api/v1/chat/stream": "the model must be one the provider offers now (ListModels)",
    "GET /api/v1/chat/sessions/{id}": "before, a cursor, must be the id of a message of this "
    "session",
    "POST /api/v1/terminal/terminals/create": "the shell must be one this install offers "
    "(TERMINAL_SHELLS)",
    "POST /api/v1/terminal/terminals/{session_id}/resize": "cols and rows, at the top or in "
    "dimensions: the document states it (anyOf of required), which a generator may not follow",
    "GET /api/v1/files": "the path must be a folder that exists",
    "GET /api/v1/files/{path}": "the path must be a file, not a folder",
    "PUT /api/v1/files/{path}": "the path must be a file, not a folder; the sha must be the "
    "file's current one",
    "GET /api/v1/files:download": "the path must be a file, not a folder",
    "POST /api/v1/files:move": "the new path must not be the path itself or inside it",
    "POST /api/v1/files:upload": "the path (required, as the document says) must be one a "
    "file may take: not a folder, not under a file, within the quota",
    "POST /api/v1/git/branches": "the branch must not exist yet",
    "POST /api/v1/git/branches:switch": "the branch must exist",
    "POST /api/v1/git/commit": "there must be something to commit",
    "POST /api/v1/git/push": "the remote must exist",
    "POST /api/v1/git/pull": "the remote must exist",
    "POST /api/v1/git/remotes": "the host must resolve to a public address; file:// URLs "
    "must lie inside the configured roots",
    "GET /api/v1/trades": "from must not be after to",
    "POST /api/v1/trades": "the symbol is required for buy, sell and dividend and refused for "
    "cash; a sell must not exceed the holding; a paper portfolio's cash must cover a buy",
    "POST /api/v1/positions": "a BUY by another name: a paper portfolio's cash must cover it",
    "POST /api/v1/trades:import": "the CSV's header and rows must be trades",
    "POST /api/v1/orders": "the portfolio must be a paper portfolio of the caller (a tracking "
    "one takes no orders) and the symbol one the market knows; limit needs limitPrice, stop "
    "stopPrice, stop_limit both, and a price the type does not use is refused (rules across "
    "fields); at most 100 open orders per portfolio",
    "POST /api/v1/orders/{id}:cancel": "the order must be the caller's and still open; "
    "Schemathesis also sends an empty id despite the document's minLength 1, and "
    "/api/v1/orders/:cancel is the order ':cancel' of GET /api/v1/orders/{id} (405)",
    "POST /api/v1/watchlists": "every symbol must be one the market knows, none listed twice "
    "(in any case); at most 50 watchlists per user",
    "PUT /api/v1/watchlists/{id}": "every symbol must be one the market knows, none listed twice "
    "(in any case)",
    "POST /api/v1/alerts": "the symbol must be one the market knows; above and below need a "
    "price, percent_change a percent (not zero) and a window (rules across fields); at most 200 "
    "active alerts per user",
    "PUT /api/v1/alerts/{id}": "resuming an alert needs room under the 200 active alerts",
    "POST /api/v1/portfolios": "the currency must be one the service has rates for (USD, EUR, "
    "GBP, JPY, CHF; the document says three letters)",
    "PUT /api/v1/portfolios/{id}": "the currency must be one the service has rates for, and "
    "cannot change once the portfolio has trades",
    "POST /api/v1/portfolios/{portfolio_id}/splits": "the date must be a day of the calendar "
    "(the document says YYYY-MM-DD), today or before; numerator and denominator must differ "
    "(a rule across fields); one split per symbol and day; a later trade must still hold",
    "DELETE /api/v1/portfolios/{portfolio_id}/splits/{id}": "a later trade must still hold "
    "without the split",
    "GET /api/v1/fx": "both codes must be ones the service has rates for; a day before any "
    "rate is known has none (404)",
    "GET /api/v1/portfolios/{portfolio_id}/realized-gains": "from and to must be days of the "
    "calendar (the document says YYYY-MM-DD), from not after to (a rule across fields)",
    "PUT /api/v1/portfolios/{portfolio_id}/targets": "each weight more than 0 and all of them "
    "adding up to at most 100, no symbol listed twice in any case (rules across items)",
    "POST /api/v1/portfolios/{portfolio_id}/plans": "the portfolio must be a paper portfolio "
    "of the caller (a tracking one takes no plans); startDate must be a day of the calendar "
    "(the document says YYYY-MM-DD) within a year of today; the symbol one the market knows; "
    "at most 50 plans per portfolio",
    "GET /api/v1/portfolios/{portfolio_id}/income": "from and to must be days of the calendar "
    "(the document says YYYY-MM-DD), from not after to, and the period with groupBy at most "
    "1,200 periods (0001-01-01 to 9999-12-31 by month is 119,988): rules across fields",
}

# Limits that would throttle a fuzzer from one address and one account; raised for this run only.
FUZZ_LIMITS = {
    # facade/config.py: per-IP budget on register/login/refresh, per-user budget on the rest.
    "RATE_LIMIT_AUTH": "0",
    "RATE_LIMIT_API": "0",
    # services/users/config.py: the brute-force guard. The fuzzer sends many wrong logins from
    # 127.0.0.1, which would lock out the re-logins that renew its own token.
    "LOGIN_FAILURES_PER_IP": "0",
    "LOGIN_FAILURES_PER_ACCOUNT": "0",
    "LOGIN_FREE_FAILURES": "1000",
    # services/users/budgets.py: the cases register, log in and refresh from 127.0.0.1 as
    # often as they are generated (50 examples a route), and the fuzzer's own user logs in
    # again to renew its token.
    "REGISTRATIONS_PER_IP": "0",
    "LOGINS_PER_ACCOUNT": "0",
    "LOGINS_PER_IP": "0",
    "REFRESHES_PER_ACCOUNT": "0",
    # services/assistant/config.py: chat messages per user per window.
    "ASSISTANT_MESSAGES_RATE": "0",
}

# The user's token comes from tools/fuzz_auth.py; the schema's own sign-up flow stays unused.
SCHEMATHESIS_CONFIG = """\
[auth]
auto-signup = false
"""
AUTH_HOOKS = "tools.fuzz_auth"


SERVICES = ("users", "assistant", "terminal", "workspace", "portfolio")


@contextlib.contextmanager
def started_system(root: Path, *, postgresql: bool = False) -> Iterator[System]:
    """The system as the e2e `system` fixture starts it, with FUZZ_LIMITS on top; with
    `postgresql`, every service on a fresh PostgreSQL database of its own (what production
    runs: some input only PostgreSQL refuses)."""
    with contextlib.ExitStack() as stack:
        settings = dict(FUZZ_LIMITS)
        if postgresql:
            urls = stack.enter_context(postgres_databases(SERVICES))
            settings |= {f"{name.upper()}_DATABASE_URL": url for name, url in urls.items()}
        system = stack.enter_context(running_system(root, settings, log=root / "system.log"))
        yield system


def schemathesis_command(system: System, config: Path, reports: Path, args: Options) -> list[str]:
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{system.facade_url}/api/v1/openapi.json",
        "--url",
        system.facade_url,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        # No example database: a run must not depend on what an earlier run found.
        "--generation-database",
        "none",
        # The API refuses U+0000 in every text field (its document says so, in words JSON
        # Schema has none for): a string holding one is not a valid request.
        "--generation-allow-x00",
        "false",
        # One worker: the cases share one user's state, so their order must not vary.
        "--workers",
        "1",
        # Every case of an operation, even after one failed: a rejected schema-valid request
        # must not hide a server error behind it.
        "--continue-on-failure",
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--report",
        "ndjson,json",
        "--report-ndjson-path",
        str(reports / "events.ndjson"),
        "--report-json-path",
        str(reports / "run.json"),
        "--no-color",
    ]
    for path in EXCLUDED_PATHS:
        command += ["--exclude-path", path]
    for operation in args.operations:
        command += ["--include-operation-id", operation]
    return command


def client_environment(system: System, account: Account) -> dict[str, str]:
    """Schemathesis's environment: its auth hooks and the user they sign in as, and no proxy,
    so that nothing leaves 127.0.0.1."""
    environ = {
        k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy"}
    }
    environ.update(
        {
            "SCHEMATHESIS_HOOKS": AUTH_HOOKS,
            "FUZZ_URL": system.facade_url,
            "FUZZ_EMAIL": account.email,
            "FUZZ_PASSWORD": account.password,
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return environ


@dataclass(frozen=True)
class Failure:
    """One distinct failure: a check that failed on an operation, with one case showing it."""

    check: str
    operation: str
    title: str
    message: str
    request: Mapping[str, Any]
    response: Mapping[str, Any] | None


@dataclass
class Totals:
    operations: set[str] = field(default_factory=set)
    cases: set[str] = field(default_factory=set)
    requests: int = 0
    failed_checks: Counter[str] = field(default_factory=Counter)
    distinct: dict[tuple[str, str, str], Failure] = field(default_factory=dict)
    occurrences: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def decoded(payload: Mapping[str, Any] | None) -> str:
    if not payload:
        return ""
    if "$base64" in payload:
        return base64.b64decode(payload["$base64"]).decode("utf-8", "replace")
    return str(payload.get("string", ""))


def read_events(path: Path) -> Totals:
    """Totals from Schemathesis's NDJSON event log (one scenario's cases per ScenarioFinished)."""
    totals = Totals()
    with path.open(encoding="utf-8") as events:
        for line in events:
            event = json.loads(line)
            if "NonFatalError" in event:
                error = event["NonFatalError"]
                value = error.get("value") or {}
                totals.errors.append(
                    f"{error.get('label')}: {value.get('type')}: {value.get('message', '')[:300]}"
                )
            finished = event.get("ScenarioFinished")
            if finished is None:
                continue
            recorder = finished["recorder"]
            interactions = recorder.get("interactions", {})
            totals.requests += len(interactions)
            for case_id, checks in recorder.get("checks", {}).items():
                case = recorder["cases"].get(case_id, {}).get("value", {})
                operation = f"{case.get('method', '?')} {case.get('path', '?')}"
                if case_id not in totals.cases:
                    totals.cases.add(case_id)
                    totals.operations.add(recorder["label"])
                for check in checks:
                    if check["status"] != "failure":
                        continue
                    totals.failed_checks[check["name"]] += 1
                    failure = check["failure_info"]["failure"]
                    label = failure.get("operation") or operation
                    key = (check["name"], label, failure["title"])
                    totals.occurrences[key] += 1
                    if key not in totals.distinct:
                        totals.distinct[key] = Failure(
                            check=check["name"],
                            operation=label,
                            title=failure["title"],
                            message=failure.get("message", ""),
                            request=interactions.get(case_id, {}).get("request", {}),
                            response=interactions.get(case_id, {}).get("response"),
                        )
    return totals


def describe(failure: Failure) -> str:
    request = failure.request
    body = decoded(request.get("body"))
    lines = [f"    {request.get('method', '?')} {request.get('uri', '?')}"]
    if body:
        lines.append(f"      body: {body[:300]}")
    response = failure.response
    if response is not None:
        lines.append(
            f"      -> {response['status_code']}: {decoded(response.get('content'))[:300]}"
        )
    return "\n".join(lines)


def report(totals: Totals, run: Mapping[str, Any], elapsed: float) -> int:
    """Prints the totals; the exit status the run deserves."""
    operations = run.get("operations") or {}
    print("\n==== fuzz totals ====")
    print(f"duration: {elapsed:.0f} s (Schemathesis: {run.get('running_time', 0.0):.0f} s)")
    print(
        f"operations: {operations.get('tested', len(totals.operations))} tested"
        f" of {operations.get('total', '?')} ({len(EXCLUDED_PATHS)} excluded)"
    )
    print(f"test cases: {len(totals.cases)}; requests sent: {totals.requests}")
    print("failures by check (failed check results / distinct operation+failure):")
    for check in CHECKS:
        distinct = sum(1 for key in totals.distinct if key[0] == check)
        print(f"  {check}: {totals.failed_checks[check]} / {distinct}")
    strict = [f for key, f in totals.distinct.items() if key[0] in STRICT_CHECKS]
    rejected = [f for key, f in totals.distinct.items() if key[0] == ACCEPTANCE_CHECK]
    unexpected = [f for f in rejected if f.operation not in ALLOWED_REJECTIONS]
    for heading, failures in (
        ("server errors and schema violations", strict),
        ("schema-valid requests rejected, on operations not in ALLOWED_REJECTIONS", unexpected),
    ):
        if failures:
            print(f"\n{heading}:")
            for failure in sorted(failures, key=lambda f: (f.check, f.operation)):
                count = totals.occurrences[(failure.check, failure.operation, failure.title)]
                print(f"  [{failure.check}] {failure.operation}: {failure.title} (x{count})")
                print(describe(failure))
    allowed = len(rejected) - len(unexpected)
    print(f"\nrejections on allowed operations (not failing the run): {allowed}")
    for error in totals.errors:
        print(f"error: {error}")
    complete = bool(run.get("complete", False))
    if not complete:
        print("error: Schemathesis did not complete its run (stopped, or it gave no summary)")
    failed = bool(strict or unexpected or totals.errors or not complete)
    print(f"\nfuzz: {'FAILED' if failed else 'passed'}")
    return 1 if failed else 0


@dataclass(frozen=True)
class Options:
    seed: int
    max_examples: int
    report_dir: Path | None
    postgresql: bool = False
    operations: tuple[str, ...] = ()


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES)
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="keep Schemathesis's reports (events.ndjson, run.json) and the system's log here",
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="every service on a fresh PostgreSQL database (127.0.0.1:5432) instead of SQLite",
    )
    parser.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="OPERATION_ID",
        help="only this operation (its operationId, e.g. PortfolioService_GetPerformance); "
        "repeat for several",
    )
    parsed = parser.parse_args(argv)
    return Options(
        parsed.seed,
        parsed.max_examples,
        parsed.report_dir,
        parsed.postgresql,
        tuple(parsed.operation),
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stockfolio-fuzz-") as scratch:
        root = Path(scratch)
        reports = options.report_dir.resolve() if options.report_dir else root / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        config = root / "schemathesis.toml"
        config.write_text(SCHEMATHESIS_CONFIG)
        with started_system(root, postgresql=options.postgresql) as system:
            account = register(system)[1]
            command = schemathesis_command(system, config, reports, options)
            print("$", " ".join(command), flush=True)
            try:
                subprocess.run(
                    command,
                    cwd=root,
                    env=client_environment(system, account),
                    stdin=subprocess.DEVNULL,
                    timeout=RUN_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                print(f"\nfuzz: Schemathesis ran out of its {RUN_TIMEOUT:.0f} s", flush=True)
        if options.report_dir:
            (reports / "system.log").write_text((root / "system.log").read_text())
        totals = read_events(reports / "events.ndjson")
        summary = reports / "run.json"
        # No summary when the run was stopped: it is then incomplete, which fails it.
        run = json.loads(summary.read_text()) if summary.is_file() else {}
        code = report(totals, run, time.monotonic() - started)
        if code:
            print_errors((root / "system.log").read_text())
        return code


def print_errors(log: str, most: int = 200) -> None:
    """The system's own error lines and the tracebacks after them: a server error found in CI
    is then explained in CI's output, after the scratch folder holding the log is gone."""
    lines = log.splitlines()
    shown: list[str] = []
    for index, line in enumerate(lines):
        if '"level": "error"' in line or "Traceback" in line:
            shown.extend(lines[index : index + 30])
        if len(shown) >= most:
            break
    if shown:
        print("\n==== the system's errors (from its log) ====")
        print("\n".join(shown[:most]))


if __name__ == "__main__":
    sys.exit(main())
