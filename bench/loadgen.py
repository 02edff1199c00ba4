"""An HTTP/1.1 keep-alive load generator, run in its own process: `python -m bench.loadgen`.

Each of `concurrency` connections sends one request, waits for the whole response, and sends
the next (no pipelining), as wrk does. A warm-up runs first and is not counted; then requests
that complete inside the measured window count toward the rate and the latency percentiles.
Everything is bounded: by time, by a request count, and by a drain timeout at the end. Only
127.0.0.1 is ever targeted. Prints one JSON object on stdout.

`--variants FILE` gives each connection its own request: a JSON list of {"headers": ["Name:
value", ...], "body": "..."}; connection i sends variant i mod len (e.g. one portfolio and its
owner's token per connection), each with the method and path of the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import cast

from bench.measures import percentile

HOST = "127.0.0.1"
DRAIN_SECONDS = 3.0


@dataclass(frozen=True)
class Plan:
    port: int
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    concurrency: int
    warmup: float
    duration: float
    max_requests: int
    # Per-connection (headers, body) pairs; empty: every connection sends `headers` and `body`.
    variants: tuple[tuple[tuple[tuple[str, str], ...], bytes], ...] = ()

    def request_bytes(self, connection: int = 0) -> bytes:
        headers, body = self.headers, self.body
        if self.variants:
            extra, body = self.variants[connection % len(self.variants)]
            headers = headers + extra
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body or self.method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Tally:
    issued: int = 0
    completed: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[str, int]
    non_2xx: int
    transport_errors: int
    unfinished: int
    # Every response, warm-up included: what the servers' CPU time is divided by.
    completed_total: int


class ResponseReader(asyncio.Protocol):
    """One connection; `exchange` writes a request and resolves with the response's status."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have the same methods.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._complete()

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bool]]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        start = end + 4
        marker = head.find(b"\r\ncontent-length:")
        if marker >= 0:
            stop = head.find(b"\r\n", marker + 2)
            length = int(head[marker + 17 : stop if stop >= 0 else len(head)])
            total = start + length
            if len(self._buffer) < total:
                return
        elif b"\r\ntransfer-encoding: chunked" in head:
            last = self._buffer.find(b"\r\n0\r\n\r\n", start - 2)
            if last < 0:
                return
            total = last + 7
        else:
            waiter.set_exception(ConnectionError("response without a length"))
            return
        del self._buffer[:total]
        keep_alive = b"\r\nconnection: close" not in head
        waiter.set_result((int(head[9:12]), keep_alive))


async def connect(port: int) -> ResponseReader:
    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(ResponseReader, HOST, port)
    return reader


async def worker(
    plan: Plan, tally: Tally, window: tuple[float, float], connection: int = 0
) -> None:
    request = plan.request_bytes(connection)
    measure_from, measure_to = window
    reader: ResponseReader | None = None
    clock = time.perf_counter
    try:
        while tally.issued < plan.max_requests and clock() < measure_to:
            if reader is None or reader.closed:
                try:
                    reader = await connect(plan.port)
                except OSError:
                    tally.transport_errors += 1
                    await asyncio.sleep(0.05)
                    continue
            tally.issued += 1
            started = clock()
            try:
                status, keep_alive = await reader.exchange(request)
            except ConnectionError:
                tally.transport_errors += 1
                reader.close()
                reader = None
                continue
            done = clock()
            tally.completed += 1
            if measure_from <= done < measure_to:
                tally.latencies.append(done - started)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if not keep_alive:
                reader.close()
                reader = None
    finally:
        if reader is not None:
            reader.close()


def summarize(tally: Tally, seconds: float, unfinished: int) -> Result:
    ordered = sorted(tally.latencies)
    count = len(ordered)
    non_2xx = sum(n for status, n in tally.statuses.items() if not 200 <= status < 300)
    return Result(
        requests=count,
        seconds=round(seconds, 3),
        rps=round(count / seconds, 2) if seconds > 0 else 0.0,
        p50_ms=round(percentile(ordered, 0.50) * 1000, 3),
        p99_ms=round(percentile(ordered, 0.99) * 1000, 3),
        mean_ms=round(sum(ordered) / count * 1000, 3) if count else 0.0,
        max_ms=round(ordered[-1] * 1000, 3) if count else 0.0,
        statuses={str(k): v for k, v in sorted(tally.statuses.items())},
        non_2xx=non_2xx,
        transport_errors=tally.transport_errors,
        unfinished=unfinished,
        completed_total=tally.completed,
    )


async def run(plan: Plan) -> Result:
    tally = Tally()
    begin = time.perf_counter()
    window = (begin + plan.warmup, begin + plan.warmup + plan.duration)
    tasks = [
        asyncio.create_task(worker(plan, tally, window, connection))
        for connection in range(plan.concurrency)
    ]
    _, pending = await asyncio.wait(tasks, timeout=plan.warmup + plan.duration + DRAIN_SECONDS)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failures = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if failures:
        raise RuntimeError(f"{len(failures)} workers failed") from failures[0]
    # A run stopped by the request count ends early: the window is what actually elapsed.
    measured = max(0.0, min(time.perf_counter(), window[1]) - window[0])
    return summarize(tally, measured, len(pending))


def parse_args(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--path", default="/")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--body", default="", help="request body (sent as given)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, not counted")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--variants", default="", help="JSON file: a request per connection")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536 or not args.path.startswith("/"):
        parser.error("a port on 127.0.0.1 and an absolute path are required")

    def split(raw: str) -> tuple[str, str]:
        name, sep, value = raw.partition(":")
        if not sep:
            parser.error(f"header {raw!r} is not 'Name: value'")
        return name.strip(), value.strip()

    headers = [split(raw) for raw in args.header]
    variants = []
    if args.variants:
        with open(args.variants, encoding="utf-8") as file:
            listed = json.load(file)
        if not isinstance(listed, list) or not listed:
            parser.error("--variants must hold a non-empty JSON list")
        for item in listed:
            extra = tuple(split(str(raw)) for raw in item.get("headers", []))
            variants.append((extra, str(item.get("body", "")).encode()))
    return Plan(
        port=args.port,
        method=args.method.upper(),
        path=args.path,
        headers=tuple(headers),
        body=args.body.encode(),
        concurrency=max(1, min(args.concurrency, 1024)),
        warmup=max(0.0, min(args.warmup, 60.0)),
        duration=max(0.1, min(args.duration, 120.0)),
        max_requests=max(1, args.max_requests),
        variants=tuple(variants),
    )


def main(argv: list[str]) -> None:
    plan = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a project dependency
        result = asyncio.run(run(plan))
    else:
        result = uvloop.run(run(plan))
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
