"""/ws/portfolio fan-out, the two kinds of process the benchmark starts (`python -m bench.fanout`):

- `clients`: opens its share of the subscribers (aiohttp WebSockets to 127.0.0.1, in batches),
  each authenticated with `?token=` and subscribed to its symbols, then reads every socket
  continuously. For each `price` whose `time` (the tick's creation time at the portfolio
  service, UTC) falls inside the measured window it records the delivery latency (this
  machine's clock at receipt minus `time`) in a histogram, and which ticks each socket got.
- `market`: the reference. One gRPC StreamMarket subscription straight to the portfolio service
  (with a service token from the system's own development secret), recording every tick the
  market published: what each subscriber must have received. A tick the stream hands on again
  (a replica's resync after a gap repeats every symbol's latest quote) counts once, and the
  resyncs and leader terms the stream showed are reported.

Both talk to the benchmark over JSON lines: they print `{"event": ...}` on stdout and read
`{"command": ...}` on stdin (`window` to start counting, `report` to answer and leave). A client
checks its sockets against the reference itself, so only counts travel back.

A tick is *lost* for a socket when the market published it (symbol and time, in the window) for
a symbol the socket follows and the socket never received it, although the socket was open and
read continuously until the end. The subscriber is a client that keeps up: it does nothing but
read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import grpc
import uvloop
from aiohttp import WSMsgType
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from bench import wsclient
from bench.measures import percentile
from services.runtime.auth import bearer
from services.runtime.config import load_runtime_config
from services.runtime.tokens import service_token_signer

HOST = "127.0.0.1"
PATH = "/ws/portfolio"
BUCKETS_PER_MS = 10  # the latency histogram's resolution: 0.1 ms
MAX_BUCKET = 60_000 * BUCKETS_PER_MS  # a minute; anything later lands in the last bucket
CONNECT_TIMEOUT = 30.0
CLOSE_TIMEOUT = 5.0
ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)
# A `price` message exactly as facade/portfolio_feed.py writes it (compact JSON, this key
# order, string values without quotes or escapes); any other form goes through json.loads.
PRICE = re.compile(
    r'\{"type":"price","symbol":"([^"\\]*)","price":"([^"\\]*)","change":"[^"\\]*",'
    r'"changePercent":"[^"\\]*","time":"([^"\\]*)"\}'
)


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def next_command() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise SystemExit("the benchmark went away (stdin closed)")
    command: dict[str, Any] = json.loads(line)
    return command


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def lower_priority(nice: int) -> None:
    """Nice this process, and its autogroup too: with autogroups (Linux's default for
    desktop-like kernels), each session is scheduled as one entity and a process's own nice
    value only counts against the processes of its session."""
    os.nice(nice)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
        group.write(str(nice))


class Clock:
    """Publication times, parsed once per distinct `time` string (every tick of one market
    step shares it)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, str]] = {}

    def read(self, text: str) -> tuple[float, str]:
        """(epoch seconds, the one shared copy of `text`)."""
        found = self._seen.get(text)
        if found is None:
            found = (datetime.fromisoformat(text).timestamp(), text)
            self._seen[text] = found
        return found


@dataclass
class Window:
    start: float = float("inf")
    end: float = float("-inf")

    def holds(self, moment: float) -> bool:
        return self.start <= moment <= self.end


def read_lag_ms() -> dict[str, float]:
    """How long after their data arrived this process read its sockets (the lean client's)."""
    lags = wsclient.read_lags
    if not lags:  # none kept, or none read
        return {}
    return {
        key: round(percentile(lags, share) * 1000, 1)
        for key, share in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
    }


# --- clients ----------------------------------------------------------------------------------


@dataclass
class Subscriber:
    index: int
    symbols: tuple[str, ...]
    sampled: bool
    ws: Any = None
    # Ticks received inside the window: symbol -> publication times (shared strings).
    got: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # For sampled sockets: symbol -> [(time, price)], to compare with the market's sequence.
    prices: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    closed_at: float | None = None
    close_code: int | None = None
    other: int = 0  # messages that were neither price nor pong
    # The lean client's wait for a reply of one type while the socket is being set up.
    waiting_for: str = ""
    waiter: asyncio.Future[None] | None = None


class Clients:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        with open(args.tokens, encoding="utf-8") as listed:
            self.tokens: list[str] = json.load(listed)
        self.all_symbols: list[str] = args.symbols.split(",")
        self.clock = Clock()
        self.window = Window()
        self.histogram = [0] * (MAX_BUCKET + 1)
        self.negative = 0  # latencies below zero (clock trouble): counted, not histogrammed
        self.per_tick_max: dict[str, float] = {}
        # symbol -> [sum of latencies, count]: where in a market step the time goes.
        self.per_symbol: dict[str, list[float]] = {}
        self.subscribers: list[Subscriber] = []
        self.readers: list[asyncio.Task[None]] = []
        self.failures: dict[str, int] = defaultdict(int)

    def symbols_of(self, index: int) -> tuple[str, ...]:
        every = self.all_symbols
        return tuple(every[(index + k) % len(every)] for k in range(self.args.per_socket))

    # Called for every message of every socket: kept lean. A price as the facade writes it is
    # read with one regular expression (a fifth of json.loads' cost here, and the clients share
    # the cores with the facade they measure); anything else is parsed as JSON.
    def on_text(self, subscriber: Subscriber, data: str, received: float) -> str:
        price = PRICE.fullmatch(data)
        if price is not None:
            symbol, value, stamp = price.groups()
            self.on_price(subscriber, symbol, value, stamp, received)
            return "price"
        message = json.loads(data)
        kind = message.get("type")
        if kind == "price":
            self.on_price(
                subscriber, message["symbol"], message["price"], message["time"], received
            )
        elif kind not in ("pong", "auth_ok"):
            subscriber.other += 1
        return str(kind)

    def on_price(
        self, subscriber: Subscriber, symbol: str, price: str, stamp: str, received: float
    ) -> None:
        published, shared = self.clock.read(stamp)
        window = self.window
        if window.start <= published <= window.end:
            subscriber.got[symbol].append(shared)
            if subscriber.sampled:
                subscriber.prices[symbol].append((shared, price))
            latency = received - published
            if latency < 0:
                self.negative += 1
            else:
                self.histogram[min(MAX_BUCKET, int(latency * 1000 * BUCKETS_PER_MS))] += 1
            if latency > self.per_tick_max.get(shared, -1.0):
                self.per_tick_max[shared] = latency
            by_symbol = self.per_symbol.get(symbol)
            if by_symbol is None:
                self.per_symbol[symbol] = [latency, 1]
            else:
                by_symbol[0] += latency
                by_symbol[1] += 1

    async def open_lean(self, subscriber: Subscriber) -> None:
        """As `open`, with the lean client (bench/wsclient.py): reading happens in its
        protocol's callbacks, so there is no reader task."""
        token = self.tokens[subscriber.index % len(self.tokens)]
        on_text = self.on_text
        loop = asyncio.get_running_loop()

        def deliver(data: str, received: float) -> None:
            kind = on_text(subscriber, data, received)
            waiter = subscriber.waiter
            if waiter is not None and kind == subscriber.waiting_for and not waiter.done():
                waiter.set_result(None)

        def ended() -> None:
            subscriber.closed_at = time.time()
            if subscriber.ws is not None:
                subscriber.close_code = subscriber.ws.close_code

        # The waiter is set before each request: its reply may come in the same read.
        subscriber.waiting_for, subscriber.waiter = "auth_ok", loop.create_future()
        ws = await wsclient.connect(HOST, self.args.port, f"{PATH}?token={token}", deliver, ended)
        subscriber.ws = ws
        await self._reply(subscriber, ws)
        ws.send_text(json.dumps({"type": "subscribe", "symbols": list(subscriber.symbols)}))
        subscriber.waiting_for, subscriber.waiter = "pong", loop.create_future()
        ws.send_text('{"type":"ping"}')  # its pong says the subscription is in effect
        await self._reply(subscriber, ws)

    @staticmethod
    async def _reply(subscriber: Subscriber, ws: wsclient.RawWebSocket) -> None:
        waiter = subscriber.waiter
        assert waiter is not None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.wait((waiter, ws.ended), return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                raise ConnectionError(
                    f"closed ({ws.close_code}) while waiting for {subscriber.waiting_for}"
                )
        finally:
            subscriber.waiter = None

    async def open(self, session: aiohttp.ClientSession, subscriber: Subscriber) -> None:
        token = self.tokens[subscriber.index % len(self.tokens)]
        url = f"ws://{HOST}:{self.args.port}{PATH}?token={token}"
        ws = await session.ws_connect(url, autoping=True, heartbeat=None, max_msg_size=1 << 20)
        subscriber.ws = ws
        first = await ws.receive(timeout=CONNECT_TIMEOUT)
        if first.type is not WSMsgType.TEXT or json.loads(first.data).get("type") != "auth_ok":
            raise ConnectionError(f"no auth_ok: {first.type} {str(first.data)[:100]}")
        await ws.send_str(json.dumps({"type": "subscribe", "symbols": list(subscriber.symbols)}))
        await ws.send_str('{"type":"ping"}')
        while True:  # the pong says the subscription is in effect (messages run in order)
            reply = await ws.receive(timeout=CONNECT_TIMEOUT)
            if reply.type is not WSMsgType.TEXT:
                raise ConnectionError(f"closed while subscribing: {reply.type} {reply.data}")
            if self.on_text(subscriber, reply.data, time.time()) == "pong":
                break
        self.readers.append(asyncio.create_task(self.read(subscriber)))

    async def read(self, subscriber: Subscriber) -> None:
        ws = subscriber.ws
        text = WSMsgType.TEXT
        wall = time.time
        on_text = self.on_text
        while True:
            message = await ws.receive()
            if message.type is text:
                on_text(subscriber, message.data, wall())
            elif message.type in ENDED:
                break
        subscriber.closed_at = time.time()
        subscriber.close_code = ws.close_code

    async def ramp(self, session: aiohttp.ClientSession) -> float:
        args = self.args
        started = time.monotonic()
        indices = range(args.first, args.first + args.count)
        for batch_start in range(0, len(indices), args.batch):
            batch = [
                Subscriber(i, self.symbols_of(i), sampled=(i - args.first) < args.sample)
                for i in indices[batch_start : batch_start + args.batch]
            ]
            lean = args.client == "lean"
            results = await asyncio.gather(
                *(self.open_lean(s) if lean else self.open(session, s) for s in batch),
                return_exceptions=True,
            )
            for subscriber, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    self.failures[f"{type(result).__name__}: {str(result)[:120]}"] += 1
                    if subscriber.ws is not None:
                        with contextlib.suppress(Exception):
                            await subscriber.ws.close()
                else:
                    self.subscribers.append(subscriber)
        return time.monotonic() - started

    def check(self, reference: Mapping[str, Sequence[Sequence[str]]]) -> dict[str, Any]:
        """Each socket's ticks against the market's, symbol by symbol."""
        expected = {symbol: [t for t, _ in ticks] for symbol, ticks in reference.items()}
        expected_sets = {symbol: set(times) for symbol, times in expected.items()}
        totals: dict[str, int] = defaultdict(int)
        lossy_sockets = 0
        examples: list[dict[str, Any]] = []
        closed_codes: dict[str, int] = defaultdict(int)
        for subscriber in self.subscribers:
            lost_here = 0
            for symbol in subscriber.symbols:
                want = expected_sets.get(symbol, set())
                got = subscriber.got.get(symbol, [])
                got_set = set(got)
                missing = want - got_set
                totals["expected"] += len(want)
                totals["received"] += len(got)
                totals["lost"] += len(missing)
                totals["duplicates"] += len(got) - len(got_set)
                totals["unpublished"] += len(got_set - want)
                totals["out_of_order"] += sum(1 for a, b in itertools.pairwise(got) if b < a)
                lost_here += len(missing)
                if missing and len(examples) < 5:
                    examples.append(
                        {
                            "socket": subscriber.index,
                            "symbol": symbol,
                            "missing": sorted(missing)[:5],
                        }
                    )
            if lost_here:
                lossy_sockets += 1
            if subscriber.closed_at is not None:
                closed_codes[str(subscriber.close_code)] += 1
        sample = self.check_sample(reference)
        return {
            **totals,
            "sockets_with_loss": lossy_sockets,
            "loss_examples": examples,
            "closed_early": dict(closed_codes),
            "sample": sample,
        }

    def check_sample(self, reference: Mapping[str, Sequence[Sequence[str]]]) -> dict[str, Any]:
        """For the sampled sockets: the exact (time, price) sequence of each symbol must be the
        market's."""
        compared = matched = 0
        told = False
        for subscriber in self.subscribers:
            if not subscriber.sampled:
                continue
            for symbol in subscriber.symbols:
                compared += 1
                want = [tuple(tick) for tick in reference.get(symbol, [])]
                got = subscriber.prices.get(symbol, [])
                if got == want:
                    matched += 1
                elif not told:  # the first difference, to the log (stderr)
                    told = True
                    pairs = zip(got, want, strict=False)
                    at = next(
                        (i for i, (g, w) in enumerate(pairs) if g != w), min(len(got), len(want))
                    )
                    print(
                        f"sampled socket {subscriber.index}, {symbol}: {len(got)} ticks, the market"
                        f" {len(want)}; first difference at {at}: got {got[at : at + 2]},"
                        f" the market {want[at : at + 2]}",
                        file=sys.stderr,
                    )
        return {"sequences_compared": compared, "sequences_identical": matched}

    def histogram_sparse(self) -> dict[str, int]:
        return {str(i): n for i, n in enumerate(self.histogram) if n}

    async def close_all(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)

        async def close(subscriber: Subscriber) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await subscriber.ws.close()

        for start in range(0, len(self.subscribers), 500):
            await asyncio.gather(*(close(s) for s in self.subscribers[start : start + 500]))


async def run_clients(args: argparse.Namespace) -> None:
    if args.nice > 0:
        lower_priority(min(args.nice, 19))
    limit = raise_fd_limit()
    clients = Clients(args)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        seconds = await clients.ramp(session)
        emit(
            "connected",
            sockets=len(clients.subscribers),
            failed=sum(clients.failures.values()),
            failures=dict(clients.failures),
            seconds=round(seconds, 3),
            fd_limit=limit,
        )
        command = await next_command()
        if command.get("command") == "window":
            clients.window = Window(float(command["from"]), float(command["to"]))
            wsclient.keep_read_lags()
            cpu_started = time.process_time()
            command = await next_command()
            cpu = time.process_time() - cpu_started
        else:
            cpu = 0.0
        if command.get("command") != "report":
            raise SystemExit(f"unexpected command {command}")
        checked = clients.check(command["reference"])
        emit(
            "report",
            sockets=len(clients.subscribers),
            histogram=clients.histogram_sparse(),
            negative=clients.negative,
            per_tick_max={k: round(v, 6) for k, v in clients.per_tick_max.items()},
            per_symbol={k: [round(v[0], 6), int(v[1])] for k, v in clients.per_symbol.items()},
            cpu_seconds=round(cpu, 3),
            read_lag_ms=read_lag_ms(),
            other_messages=sum(s.other for s in clients.subscribers),
            **checked,
        )
        await clients.close_all()


# --- the market reference -------------------------------------------------------------------


async def run_market(args: argparse.Namespace) -> None:
    # The reference stream speaks as the facade does, with the facade's development key.
    config = load_runtime_config("facade", database=False)
    token, _ = service_token_signer(config).issue("portfolio")
    clock = Clock()
    ticks: list[tuple[str, str, str, float]] = []
    resyncs = 0
    terms: set[int] = set()
    async with grpc.aio.insecure_channel(f"{HOST}:{args.port}") as channel:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        call = stub.StreamMarket(portfolio_pb2.StreamMarketRequest(), metadata=(bearer(token),))
        await call.initial_metadata()  # subscribed: from here on no tick is missed

        async def follow() -> None:
            nonlocal resyncs
            async for message in call:
                received = time.time()
                resyncs += message.resync
                terms.add(message.term)
                for quote in message.quotes:
                    ticks.append((quote.symbol, quote.time.ToJsonString(), quote.price, received))

        follower = asyncio.create_task(follow())
        emit("ready")
        command = await next_command()
        if follower.done() and follower.exception() is not None:
            raise follower.exception()  # type: ignore[misc]
        follower.cancel()
        call.cancel()
        window = Window(float(command["from"]), float(command["to"]))
        published: dict[str, list[tuple[str, str]]] = defaultdict(list)
        latencies = []
        steps = set()
        seen: set[tuple[str, str]] = set()
        repeated = 0
        for symbol, text, price, received in ticks:
            moment, _ = clock.read(text)
            if window.holds(moment):
                if (symbol, text) in seen:
                    repeated += 1
                    continue
                seen.add((symbol, text))
                published[symbol].append((text, price))
                latencies.append(received - moment)
                steps.add(text)
        latencies.sort()

        def at(fraction: float) -> float:
            if not latencies:
                return 0.0
            return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

        emit(
            "report",
            ticks=dict(published),
            steps=len(steps),
            total_ticks=len(latencies),
            p50_ms=round(at(0.5), 3),
            p99_ms=round(at(0.99), 3),
            max_ms=round(latencies[-1] * 1000, 3) if latencies else 0.0,
            repeated_ticks=repeated,
            resyncs=resyncs,
            terms=sorted(terms),
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    kinds = parser.add_subparsers(dest="kind", required=True)
    clients = kinds.add_parser("clients", help="a share of the /ws/portfolio subscribers")
    clients.add_argument("--port", type=int, required=True, help="the facade's, on 127.0.0.1")
    clients.add_argument("--tokens", required=True, help="JSON file: access tokens to spread")
    clients.add_argument("--symbols", required=True, help="comma-separated: the market's symbols")
    clients.add_argument("--first", type=int, default=0, help="index of the first socket")
    clients.add_argument("--count", type=int, required=True, help="sockets to open")
    clients.add_argument("--per-socket", type=int, default=10, help="symbols each follows")
    clients.add_argument("--batch", type=int, default=100, help="connections opened at once")
    clients.add_argument("--sample", type=int, default=5, help="sockets checked price by price")
    clients.add_argument(
        "--nice", type=int, default=0, help="lower this process's CPU priority (os.nice)"
    )
    clients.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the WebSocket client: bench/wsclient.py (default) or aiohttp's",
    )
    market = kinds.add_parser("market", help="the reference: every tick the market publishes")
    market.add_argument("--port", type=int, required=True, help="the portfolio service's gRPC")
    args = parser.parse_args(argv)
    if args.kind == "clients":
        args.count = max(1, min(args.count, 20_000))
        args.batch = max(1, min(args.batch, 1000))
        args.per_socket = max(1, min(args.per_socket, len(args.symbols.split(","))))
    return args


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    uvloop.run(run_clients(args) if args.kind == "clients" else run_market(args))


if __name__ == "__main__":
    main(sys.argv[1:])
