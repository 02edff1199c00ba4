"""`make bench`, the assistant section (issue 7's figures): time from `stream_chat` to the first
`chunk` at the client over /ws/chat, with `chats` answers streaming at once, and the RSS of the
facade and the assistant service.

The system runs as `make run` starts it (five services and the facade, SQLite, the embedded
default), with the assistant pointed at a local fake of the Anthropic API (tests/fakes/
anthropic.py, in a process of its own) that streams each answer at `tokens_per_second`, its
first token at once: what is measured is our path (facade, gRPC stream, assistant service,
session and message writes, the SDK) on top of the provider's own first token. Per-user limits
are off. Every chat starts a new session. Everything runs on 127.0.0.1, bounded in count and
time, and every process started is stopped on the way out.

`python -m bench.assistant fake --port N` runs the fake alone (what the benchmark starts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.measures import RssSampler, percentile, rss_mb
from bench.report import RESULTS, PartReport, Row, print_rows
from bench.runs import register_user
from bench.system import Fleet, cpu_seconds, start_system, system_environment, wait_for_port
from tests.system_harness import HOST, HarnessError, Ports, free_ports, migrate

FIRST_CHUNK_P99_LIMIT_MS = 1000.0
RESULTS_FILE = RESULTS.parent / "assistant.json"
CHAT_TIMEOUT = 120.0
QUESTION = "How are my portfolios doing this week? (bench)"


@dataclass(frozen=True)
class AssistantSettings:
    chats: int = 200
    rounds: int = 3
    tokens_per_second: float = 50.0
    answer_tokens: int = 50
    users: int = 20


@dataclass
class AssistantReport(PartReport[AssistantSettings]):
    """What the assistant part found."""


def describe_assistant(settings: AssistantSettings) -> str:
    return (
        f"assistant: {settings.chats} concurrent /ws/chat answers x {settings.rounds} rounds, "
        f"fake provider at {settings.tokens_per_second:g} tokens/s, "
        f"{settings.answer_tokens} tokens per answer"
    )


# --- the fake provider's process -----------------------------------------------------------------


def answer_text(tokens: int) -> str:
    return " ".join(f"word{i}" for i in range(tokens))


async def serve_fake(port: int, tokens_per_second: float, tokens: int) -> None:
    from tests.fakes.anthropic import FakeAnthropic, Reply

    text = answer_text(tokens)
    fake = FakeAnthropic(
        tokens_per_second=tokens_per_second, default=lambda body: Reply(text=text), port=port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        await stop.wait()


# --- the client ---------------------------------------------------------------------------------


@dataclass
class ChatResult:
    first_chunk_ms: float | None = None
    done_ms: float | None = None
    chunks: int = 0
    error: str = ""


async def _open(
    http: aiohttp.ClientSession, port: int, token: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"http://{HOST}:{port}/ws/chat?token={token}")
    reply = await ws.receive_json(timeout=30)
    if reply.get("type") != "auth_ok":
        raise HarnessError(f"/ws/chat refused the socket: {reply}")
    return ws


async def _chat(ws: aiohttp.ClientWebSocketResponse) -> ChatResult:
    result = ChatResult()
    started = time.perf_counter()
    await ws.send_json({"type": "stream_chat", "message": QUESTION})
    try:
        async with asyncio.timeout(CHAT_TIMEOUT):
            while True:
                message = await ws.receive_json()
                kind = message.get("type")
                if kind == "chunk":
                    if result.first_chunk_ms is None:
                        result.first_chunk_ms = (time.perf_counter() - started) * 1000
                    result.chunks += 1
                elif kind == "done":
                    result.done_ms = (time.perf_counter() - started) * 1000
                    return result
                elif kind == "error":
                    result.error = f"{message.get('code')}: {message.get('message')}"
                    return result
    except (TimeoutError, aiohttp.ClientError, TypeError, ValueError) as error:
        result.error = f"{type(error).__name__}: {error}"
        return result


async def drive(port: int, tokens: Sequence[str], settings: AssistantSettings) -> list[ChatResult]:
    results: list[ChatResult] = []
    # No connection limit: every socket holds one connection for the whole run.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            for start in range(0, settings.chats, 50):
                batch = range(start, min(settings.chats, start + 50))
                sockets += await asyncio.gather(
                    *(_open(http, port, tokens[i % len(tokens)]) for i in batch)
                )
            for round_number in range(1, settings.rounds + 1):
                print(
                    f"  round {round_number}/{settings.rounds}: "
                    f"{settings.chats} concurrent chats ...",
                    flush=True,
                )
                results += await asyncio.gather(*(_chat(ws) for ws in sockets))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return results


# --- orchestration ------------------------------------------------------------------------------


def run_assistant(settings: AssistantSettings) -> AssistantReport:
    report = AssistantReport(settings)
    with tempfile.TemporaryDirectory(prefix="stockfolio-bench-assistant-") as temporary:
        root = Path(temporary)
        (root / "logs").mkdir()
        ports = Ports.pick()
        [fake_port] = free_ports(1)
        environ = system_environment(root / "var", ports, 4)
        environ.update(
            {
                "CLAUDE_API_KEY": "sk-ant-fake-0123456789",
                "ANTHROPIC_BASE_URL": f"http://{HOST}:{fake_port}",
                "CLAUDE_MAX_RETRIES": "0",
                "ASSISTANT_MESSAGES_RATE": "0",
                "ASSISTANT_TOKENS_PER_DAY": "0",
            }
        )
        with Fleet(root / "logs", environ) as fleet:
            fake = fleet.start(
                "fake-anthropic",
                [
                    "-m",
                    "bench.assistant",
                    "fake",
                    f"--port={fake_port}",
                    f"--tokens-per-second={settings.tokens_per_second}",
                    f"--tokens={settings.answer_tokens}",
                ],
            )
            wait_for_port(fake, fake_port)
            print("starting the system (SQLite, fake Anthropic API) ...", flush=True)
            migrate(environ)
            system = start_system(fleet, ports, with_facade=True)
            tokens = [register_user(ports.facade)[2] for _ in range(settings.users)]
            watched = {
                "facade": system.processes["facade"].pid,
                "assistant": system.processes["assistant"].pid,
            }
            time.sleep(1.0)
            report.facts["rss_idle_mb"] = {n: round(rss_mb(p), 1) for n, p in watched.items()}
            busy = {**watched, "fake provider": fake.pid}
            cpu_before = {n: cpu_seconds(p) for n, p in busy.items()}
            client_before, wall_before = time.process_time(), time.perf_counter()
            with RssSampler(watched, every=0.1) as peak:
                results = asyncio.run(drive(ports.facade, tokens, settings))
            wall = time.perf_counter() - wall_before
            used = {n: cpu_seconds(p) - cpu_before[n] for n, p in busy.items()}
            used["bench client"] = time.process_time() - client_before
            # Cores each process kept busy while the chats ran (2 cores here in all).
            report.facts["cpu_cores_busy"] = {n: round(v / wall, 2) for n, v in used.items()}
            report.facts["rss_peak_mb"] = {n: round(v, 1) for n, v in peak.peak.items()}
            report.facts["rss_after_mb"] = {n: round(rss_mb(p), 1) for n, p in watched.items()}
            for process in system.processes.values():
                process.check_alive()
    summarize(report, results)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(report.document(), indent=2, default=str) + "\n")
    return report


def summarize(report: AssistantReport, results: Sequence[ChatResult]) -> None:
    settings = report.settings
    failed = [r.error for r in results if r.error or r.first_chunk_ms is None]
    first = [r.first_chunk_ms for r in results if r.first_chunk_ms is not None and not r.error]
    done = [r.done_ms for r in results if r.done_ms is not None]
    report.facts["chats"] = len(results)
    report.facts["failed"] = len(failed)
    report.facts["errors"] = sorted(set(failed))[:5]
    report.facts["chunks_per_answer"] = sorted({r.chunks for r in results if not r.error})
    if failed:
        report.failures.append(("assistant", f"{len(failed)} chats failed: {failed[:3]}"))
    if not first:
        report.rows.append(Row("/ws/chat first chunk", verdict="INVALID", note="no chat answered"))
        return
    p50, p99 = percentile(first, 0.5), percentile(first, 0.99)
    ok = p99 < FIRST_CHUNK_P99_LIMIT_MS and not failed
    report.facts["first_chunk_ms"] = {
        "p50": round(p50, 1),
        "p99": round(p99, 1),
        "max": round(max(first), 1),
    }
    report.rows.append(
        Row(
            f"/ws/chat stream_chat -> first chunk ({settings.chats} concurrent)",
            p50_ms=round(p50, 2),
            p99_ms=round(p99, 2),
            requirement=f"p99 < {FIRST_CHUNK_P99_LIMIT_MS:g} ms",
            verdict="PASS" if ok else ("INVALID" if failed else "MISS"),
            note=f"{len(first)} answers, {len(failed)} failed",
        )
    )
    if done:
        report.rows.append(
            Row(
                "/ws/chat stream_chat -> done",
                p50_ms=round(percentile(done, 0.5), 2),
                p99_ms=round(percentile(done, 0.99), 2),
                note=f"{settings.answer_tokens} tokens at {settings.tokens_per_second:g}/s",
            )
        )
    idle, peak = report.facts["rss_idle_mb"], report.facts["rss_peak_mb"]
    cores = ", ".join(f"{n} {v}" for n, v in report.facts["cpu_cores_busy"].items())
    report.rows.append(Row("CPU (cores busy during the chats)", note=cores))
    for name in ("facade", "assistant"):
        report.rows.append(
            Row(f"RSS {name}", note=f"idle {idle[name]} MB, peak {peak[name]} MB under load")
        )


def print_assistant(report: AssistantReport) -> None:
    print("\nassistant (issue 7)")
    print_rows(report.rows)
    print(f"  results: {RESULTS_FILE}")
    for what, error in report.failures:
        print(f"  {what}: {error}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.assistant", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    fake = sub.add_parser("fake", help="run the fake Anthropic API alone")
    fake.add_argument("--port", type=int, required=True)
    fake.add_argument("--tokens-per-second", type=float, default=50.0)
    fake.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args(argv)
    if args.command == "fake":
        asyncio.run(serve_fake(args.port, args.tokens_per_second, args.tokens))
        return 0
    report = run_assistant(AssistantSettings())
    print_assistant(report)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
