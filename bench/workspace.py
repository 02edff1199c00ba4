"""`make bench`, the workspace section (issue 6's figures): a 20 MB upload and download through
the facade, and the first page of a 10,000-file folder.

The system here is what these paths touch: users, workspace and the facade, each its own
process (SQLite, a temporary var/ folder). Uploads and downloads run one at a time, `rounds`
times each: MB/s is the file's size over the request's wall time (the best round counts), and
each process's RSS is sampled every few milliseconds in a thread while the transfer runs; its
growth is the peak over what it held just before (the worst round counts). The requirement:
each process grows by less than 3 x the file's size. The listing is `requests` sequential
GETs of the first page (20 entries, folders first then names) of a folder of 10,000 files
written straight to disk; p50/p99 are over those requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measures import RssSampler, percentile
from bench.report import RESULTS, PartReport, Row, print_rows
from bench.runs import register_user
from bench.system import (
    Fleet,
    Process,
    http_request,
    system_environment,
    wait_for_http,
    wait_until_idle,
)
from tests.system_harness import HOST, HarnessError, Ports, migrate

MB = 1024 * 1024
BLOCK = 256 * 1024
GROWTH_FACTOR = 3.0
WORKSPACE_RESULTS = RESULTS.parent / "workspace.json"
SERVICES = ("users", "workspace")


@dataclass(frozen=True)
class WorkspaceSettings:
    file_mb: int
    rounds: int
    files: int
    list_requests: int
    bcrypt_cost: int


@dataclass
class WorkspaceReport(PartReport[WorkspaceSettings]):
    """What the workspace part found."""


@contextlib.contextmanager
def workspace_system(root: Path, settings: WorkspaceSettings) -> Iterator[tuple[Ports, Fleet]]:
    ports = Ports.pick()
    environ = system_environment(root / "var", ports, settings.bcrypt_cost)
    (root / "logs").mkdir(parents=True)
    with Fleet(root / "logs", environ) as fleet:
        migrate(environ, SERVICES)
        for name in SERVICES:
            process = fleet.start(name, ["-m", f"services.{name}"])
            wait_for_http(process, ports.admin[name], "/health")
        facade = fleet.start("facade", ["-m", "facade"])
        wait_for_http(facade, ports.facade, "/health")
        yield ports, fleet


def processes(fleet: Fleet) -> dict[str, Process]:
    return {p.name: p for p in fleet.processes}


def upload(port: int, token: str, project: str, path: str, source: Path) -> float:
    """POST the file through the facade (streamed from disk); seconds it took."""
    size = source.stat().st_size
    connection = http.client.HTTPConnection(HOST, port, timeout=120, blocksize=BLOCK)
    try:
        started = time.perf_counter()
        with source.open("rb") as body:
            connection.request(
                "POST",
                f"/api/v1/files:upload?project={project}&path={path}",
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
            )
            response = connection.getresponse()
            answer = response.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise HarnessError(f"upload answered {response.status}: {answer[:300]!r}")
    written = json.loads(answer)["data"]
    if int(written["size"]) != size:
        raise HarnessError(f"upload wrote {written['size']} bytes of {size}")
    return elapsed


def get(connection: http.client.HTTPConnection, path: str, token: str) -> http.client.HTTPResponse:
    """GET through the facade as the token's user; the response, its body still to read."""
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return connection.getresponse()


def download(port: int, token: str, project: str, path: str, size: int) -> float:
    """GET the file through the facade, reading it in blocks and dropping them; seconds."""
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        started = time.perf_counter()
        response = get(connection, f"/api/v1/files:download?project={project}&path={path}", token)
        received = 0
        while block := response.read(BLOCK):
            received += len(block)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200 or received != size:
        raise HarnessError(f"download answered {response.status} with {received} of {size} bytes")
    return elapsed


def list_first_page(port: int, token: str, project: str, requests: int) -> list[float]:
    """Sequential GETs of the folder's first page on one kept-alive connection; ms each."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    timings: list[float] = []
    try:
        for _ in range(requests):
            started = time.perf_counter()
            response = get(connection, f"/api/v1/files?project={project}&path=many", token)
            answer = response.read()
            timings.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise HarnessError(f"listing answered {response.status}: {answer[:300]!r}")
    finally:
        connection.close()
    body = json.loads(answer)
    if len(body["data"]) != 20 or body["pagination"]["total"] < 10_000:
        raise HarnessError(f"listing answered {body['pagination']}")
    return timings


def run_workspace(settings: WorkspaceSettings) -> WorkspaceReport:
    report = WorkspaceReport(settings)
    size = settings.file_mb * MB
    with tempfile.TemporaryDirectory(prefix="stockfolio-bench-workspace-") as temporary:
        root = Path(temporary)
        source = root / "upload.bin"
        with source.open("wb") as out:
            for _ in range(settings.file_mb):
                out.write(os.urandom(MB))
        print("starting users, workspace and the facade ...", flush=True)
        with workspace_system(root / "system", settings) as (ports, fleet):
            _, _, token = register_user(ports.facade)
            created = http_request(
                ports.facade,
                "POST",
                "/api/v1/workspace/projects",
                body={"name": "bench", "template": "empty"},
                token=token,
            )
            if created.status != 201:
                raise HarnessError(f"creating a project answered {created.status}")
            project = str(created.body["data"]["id"])
            running = processes(fleet)
            pids = {"facade": running["facade"].pid, "workspace": running["workspace"].pid}
            transfers: dict[str, list[dict[str, Any]]] = {"upload": [], "download": []}
            for round_number in range(1, settings.rounds + 1):
                print(f"  round {round_number}/{settings.rounds}: upload, download", flush=True)
                for kind in ("upload", "download"):
                    wait_until_idle(list(pids.values()), timeout=10.0)
                    with RssSampler(pids, every=0.005) as sampler:
                        if kind == "upload":
                            seconds = upload(ports.facade, token, project, "big.bin", source)
                        else:
                            seconds = download(ports.facade, token, project, "big.bin", size)
                    transfers[kind].append(
                        {
                            "seconds": round(seconds, 3),
                            "mb_per_s": round(settings.file_mb / seconds, 1),
                            "rss_before_mb": sampler.before,
                            "rss_growth_mb": sampler.growth(),
                        }
                    )
            report.facts["transfers"] = transfers
            user_id = http_request(ports.facade, "GET", "/api/v1/users/me", token=token).body[
                "data"
            ]["id"]
            folder = root / "system" / "var" / "workspaces" / user_id / "bench" / "many"
            folder.mkdir()
            print(f"  writing {settings.files} files, then listing ...", flush=True)
            for n in range(settings.files):
                (folder / f"file-{n:05d}.txt").write_bytes(b"x")
            timings = list_first_page(ports.facade, token, project, settings.list_requests)
            report.facts["listing_ms"] = {
                "requests": len(timings),
                "p50": round(percentile(timings, 0.5), 2),
                "p99": round(percentile(timings, 0.99), 2),
            }
            for process in running.values():
                process.check_alive()
    build_workspace_rows(report)
    WORKSPACE_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    WORKSPACE_RESULTS.write_text(json.dumps(report.document(), indent=2) + "\n")
    return report


def build_workspace_rows(report: WorkspaceReport) -> None:
    settings = report.settings
    limit = GROWTH_FACTOR * settings.file_mb
    for kind, runs in report.facts["transfers"].items():
        fastest = max(r["mb_per_s"] for r in runs)
        growth = {
            name: max(r["rss_growth_mb"][name] for r in runs) for name in ("facade", "workspace")
        }
        report.rows.append(
            Row(
                f"{kind} {settings.file_mb} MB through the facade",
                requirement=f"RSS growth < {limit:g} MB each",
                verdict="PASS" if max(growth.values()) < limit else "MISS",
                note=(
                    f"best {fastest} MB/s of {len(runs)}; peak RSS growth facade"
                    f" {growth['facade']} MB, workspace {growth['workspace']} MB"
                ),
            )
        )
    listing = report.facts["listing_ms"]
    report.rows.append(
        Row(
            f"GET /api/v1/files, first page of {settings.files} files",
            p50_ms=listing["p50"],
            p99_ms=listing["p99"],
            note=f"{listing['requests']} sequential requests",
        )
    )


def describe_workspace(settings: WorkspaceSettings) -> str:
    return (
        f"workspace: {settings.file_mb} MB upload and download x{settings.rounds}, first page of"
        f" {settings.files} files x{settings.list_requests}"
    )


def print_workspace(report: WorkspaceReport) -> None:
    print("\nworkspace (issue 6)")
    print_rows(report.rows)
    print(f"workspace results: {WORKSPACE_RESULTS}")
