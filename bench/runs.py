"""What the bench's sections share: a run of the load generator (its own process), CPU time per
request by process, and a fresh account through the facade."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence

from bench.report import Load
from bench.system import cpu_seconds, http_request
from tests.system_harness import REPO, HarnessError

LOADGEN_SLACK = 30.0


def run_load(
    port: int,
    path: str,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    method: str = "GET",
    headers: Sequence[str] = (),
    body: str = "",
    max_requests: int = 2_000_000,
    variants: str = "",
) -> Load:
    """One run of the load generator, in its own process; its JSON summary. `variants` names a
    JSON file giving each connection its own headers and body (see bench/loadgen.py)."""
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        f"--port={port}",
        f"--path={path}",
        f"--method={method}",
        f"--concurrency={concurrency}",
        f"--warmup={warmup}",
        f"--duration={duration}",
        f"--max-requests={max_requests}",
        *(f"--header={h}" for h in headers),
    ]
    if body:
        argv.append(f"--body={body}")
    if variants:
        argv.append(f"--variants={variants}")
    try:
        done = subprocess.run(
            argv,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=warmup + duration + LOADGEN_SLACK,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(f"load generator on {path} did not finish in time") from None
    if done.returncode != 0:
        raise HarnessError(f"load generator on {path} failed:\n{done.stderr[-2000:]}")
    result: Load = json.loads(done.stdout)
    return result


def with_cpu(
    pids: Mapping[str, int],
    measure: Callable[[], Load],
    *,
    also: Mapping[str, Callable[[], float]] | None = None,
) -> Load:
    """Run `measure`, adding each process's CPU time per completed request, in microseconds:
    unlike a rate, it hardly moves when other tenants of the machine take a core. `also`: more
    CPU-time readers by name (a group of processes, such as the database server's)."""
    readers: dict[str, Callable[[], float]] = {
        name: functools.partial(cpu_seconds, pid) for name, pid in pids.items()
    }
    readers.update(also or {})
    before = {name: read() for name, read in readers.items()}
    load = measure()
    count = max(1, load["completed_total"])
    load["cpu_us_per_request"] = {
        name: round((read() - before[name]) / count * 1e6) for name, read in readers.items()
    }
    return load


def register_user(facade_port: int) -> tuple[str, str, str]:
    """A fresh account through the facade: (email, password, access token)."""
    tag = uuid.uuid4().hex[:12]
    email, password = f"bench-{tag}@example.test", f"Bench-{tag}-long-enough"
    answer = http_request(
        facade_port,
        "POST",
        "/api/v1/auth/register",
        body={"email": email, "password": password, "name": f"Bench {tag}"},
        timeout=30.0,
    )
    if answer.status not in (200, 201):
        raise HarnessError(f"register answered {answer.status}: {answer.body}")
    token = str(answer.body["data"]["tokens"]["accessToken"])
    me = http_request(facade_port, "GET", "/api/v1/users/me", token=token)
    if me.status != 200:
        raise HarnessError(f"/api/v1/users/me answered {me.status}: {me.body}")
    return email, password, token
