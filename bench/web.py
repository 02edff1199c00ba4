"""`python -m bench.web`: the web app's figures of issue 14, in headless Chromium.

The system starts as `make run` starts it (tests/system_harness.py: migrations, then honcho with
deploy/Procfile, the web process serving web/dist, built first by `make web` when stale), twice:
with the mock market's own pace (one step a second, as `make run`) for the first load and the
tick latency, then stepping ten times a second (MOCK_UPDATE_INTERVAL=100) for responsiveness.
Each time a fresh user, registered through the API, gets 5 paper portfolios of 20 positions
(the dashboard) and one holding every symbol the mock market lists (41: the most live prices
one page can show; the goal names 100).

1. First load of the dashboard, 5 x 20, over `--loads` fresh browser contexts: signed in through
   the form, then the HTTP cache is switched off (CDP) and the page reloaded, so every file is
   fetched again as on a first visit and the session is restored the app's own way (its refresh
   token, POST /auth/refresh, /users/me). Time to interactive = from navigation start to the
   first moment T at or after `dashboard-total` and all 5 card totals are in the DOM from which
   the main thread has no long task (> 50 ms, PerformanceObserver 'longtask') for 500 ms: T is
   that moment, or the end of the last long task that delayed it. JavaScript shipped = the sum of
   `encodedBodySize` (Resource Timing: the bytes on the wire, gzip as the web process sends them)
   of the .js files fetched before T.
2. Tick on the wire -> DOM: on the 41-position portfolio page, at least `--ticks` ticks. The
   wire's moment: a dedicated worker of the page with a socket of its own to the facade,
   subscribed to the same symbols, stamps each tick as the browser receives it (its thread is
   otherwise idle). The page's: a `message` listener added in the WebSocket constructor (an init
   script, so it runs before the app's) stamps each `price` event, and a MutationObserver each
   `price-<SYM>` cell that appears or changes `data-time`; all paired by symbol and tick time, as
   epoch milliseconds (performance.timeOrigin + now). The arrival is the worker's stamp, or the
   page's event when that ran first (the worker's socket may be written a little later). Wire ->
   DOM is judged; message event -> DOM (the app's own handling) is shown beside it.
3. Ten steps a second (410 ticks/s over 41 symbols): the portfolio page, then the dashboard, each
   kept open `--stream-seconds`; every long task recorded, frame intervals (requestAnimationFrame),
   the tick latency as in 2, and the renderer's main-thread CPU time (CDP Performance metrics:
   what the page costs, whatever else the machine runs).

Prints one markdown table (figure, measured, goal, PASS/MISS). Misses are printed, not raised:
the exit code is non-zero only when the harness failed.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bench.measures import percentile
from tests.browser.screens import CHROMIUM_ARGS
from tests.system_harness import (
    REPO,
    HarnessError,
    System,
    register,
    request,
    running_system,
)

CHROMIUM = Path("/usr/bin/chromium")
DIST = REPO / "web" / "dist"
VIEWPORT = {"width": 1280, "height": 900}
# `make run`'s environment but for these: quick sign-ins (bcrypt 4) and no log lines per request.
SETTINGS = {"BCRYPT_COST": "4", "LOG_LEVEL": "WARNING", "SHUTDOWN_GRACE": "5"}
STREAM_SETTINGS = {**SETTINGS, "MOCK_UPDATE_INTERVAL": "100"}
PORTFOLIOS, POSITIONS = 5, 20
QUIET_MS = 500.0
LONG_TASK_GOAL_MS = 100.0
GOALS = {"tti_ms": 1500.0, "js_kb": 250.0, "tick_p99_ms": 50.0}

# Set before the app runs: long tasks from navigation start, and the moment the dashboard's total
# and every card's total are in the DOM.
FIRST_LOAD_SCRIPT = """
(() => {
  const cards = %d;
  const state = (window.__firstLoad = { long: [], visible: null });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) state.long.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
  const observer = new MutationObserver(() => {
    const total = document.querySelector('[data-testid="dashboard-total"]');
    if (!total || !/[0-9]/.test(total.textContent || "")) return;
    if (document.querySelectorAll('[data-testid^="portfolio-total-"]').length < cards) return;
    state.visible = performance.now();
    observer.disconnect();
  });
  observer.observe(document, { subtree: true, childList: true, characterData: true });
})();
"""

# null until the interactive moment is known: the first T >= visible with QUIET ms free of long
# tasks after it (and those ms have passed, with a margin for the observer's delivery).
TTI_FUNCTION = """
(quiet) => {
  const state = window.__firstLoad;
  if (!state || state.visible === null) return null;
  let t = state.visible;
  const tasks = state.long.map(([s, d]) => [s, s + d]).sort((a, b) => a[0] - b[0]);
  for (const [start, end] of tasks) {
    if (end <= t) continue;
    if (start >= t + quiet) break;
    t = end;
  }
  return performance.now() >= t + quiet + 100 ? t : null;
}
"""

# Set before the app runs: each price message stamped as the page receives it, each price cell
# stamped as it lands (Positions.tsx keys the cell by the tick's time, so a tick adds a new one),
# long tasks and frame intervals.
TICK_SCRIPT = """
(() => {
  const state = (window.__ticks = {
    arrived: new Map(), landed: [], received: 0, long: [], frames: [],
  });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("message", (event) => {
        const now = performance.now();
        if (typeof event.data !== "string" || event.data.indexOf('"price"') < 0) return;
        let message;
        try { message = JSON.parse(event.data); } catch { return; }
        if (message.type !== "price") return;
        state.received++;
        state.arrived.set(`${String(message.symbol).toUpperCase()} ${message.time}`, [now]);
      });
    }
  };
  const landed = (element, now) => {
    const id = element.getAttribute("data-testid");
    if (!id || !id.startsWith("price-")) return;
    const key = `${id.slice(6)} ${element.getAttribute("data-time")}`;
    const arrival = state.arrived.get(key);
    if (!arrival) return;
    state.arrived.delete(key);
    state.landed.push([key, arrival[0], now]);
  };
  new MutationObserver((records) => {
    const now = performance.now();
    for (const record of records) {
      if (record.type === "attributes") { landed(record.target, now); continue; }
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        landed(node, now);
        for (const cell of node.querySelectorAll('[data-testid^="price-"]')) landed(cell, now);
      }
    }
  }).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-time"],
  });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) state.long.push([e.startTime, e.duration]);
  }).observe({ type: "longtask", buffered: true });
  let previous = null;
  const frame = (now) => {
    if (previous !== null) state.frames.push(now - previous);
    previous = now;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})();
"""

# Start a measuring window: forget what came before (ticks still in flight stay paired).
RESET_TICKS = """
() => {
  const s = window.__ticks;
  s.landed = []; s.received = 0; s.long = []; s.frames = [];
  s.windowStart = performance.now();
}
"""

READ_TICKS = """
() => {
  const s = window.__ticks;
  const now = performance.now();
  let undrawn = 0;
  for (const [when] of s.arrived.values()) {
    if (when >= s.windowStart && now - when > 1000) undrawn++;
  }
  return { landed: s.landed, received: s.received, long: s.long, frames: s.frames, undrawn,
           seconds: (now - s.windowStart) / 1000, timeOrigin: performance.timeOrigin };
}
"""


# -- the system and its data -----------------------------------------------------------------


def build_bundle() -> str:
    """`make web` (a no-op when web/dist is fresh); a failed build with a bundle left is used."""
    build = subprocess.run(
        ["make", "--no-print-directory", "web"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if not (DIST / "index.html").is_file():
        raise HarnessError(
            f"make web built no {DIST / 'index.html'}:\n{build.stdout}{build.stderr}"
        )
    if build.returncode != 0:
        print(f"make web failed ({build.returncode}); measuring the last bundle", file=sys.stderr)
        return "last bundle (make web failed)"
    return "fresh" if "vite" in build.stdout else "up to date"


def snapshot_bundle(source: Path, target: Path) -> Path:
    """A copy of web/dist for this run's web process (WEB_DIST): others rebuild web/dist in this
    working tree, and a build empties it for a while. Copied again until every file the entry
    page names is there."""
    for _ in range(30):
        shutil.rmtree(target, ignore_errors=True)
        with contextlib.suppress(OSError):
            shutil.copytree(source, target)
            index = (target / "index.html").read_text()
            named = re.findall(r'(?:src|href)="/(assets/[^"]+)"', index)
            if named and all((target / name).is_file() for name in named):
                (target / WIRE_WORKER_FILE).write_text(WIRE_WORKER)
                return target
        time.sleep(2)
    raise HarnessError(f"could not copy a whole bundle from {source}")


@dataclass(frozen=True)
class Holdings:
    email: str
    password: str
    token: str
    dashboard: list[str]  # the 5 x 20 portfolios
    every_symbol: str  # one portfolio holding each listed symbol
    symbols: list[str]


def api(system: System, method: str, path: str, token: str, body: Any = None) -> Any:
    answer = request(method, f"{system.facade_url}{path}", body=body, token=token, timeout=30.0)
    if answer.status not in (200, 201):
        raise HarnessError(f"{method} {path} answered {answer.status}: {answer.body}")
    return answer.body["data"]


def create_holdings(system: System) -> Holdings:
    """A fresh user, its 5 x 20 portfolios and one holding every symbol, through the REST API."""
    _, account = register(system)
    token = account.access_token
    query = urllib.parse.urlencode({"q": "", "limit": 100})
    symbols = [s["symbol"] for s in api(system, "GET", f"/api/v1/stocks?{query}", token)]
    if len(symbols) < POSITIONS:
        raise HarnessError(f"the market lists {len(symbols)} symbols, fewer than {POSITIONS}")

    def portfolio(name: str, held: Sequence[str]) -> str:
        body = {"name": name, "kind": "paper", "initialCash": "10000000"}
        pid = str(api(system, "POST", "/api/v1/portfolios", token, body)["id"])
        for symbol in held:
            trade = {"portfolioId": pid, "side": "buy", "symbol": symbol, "quantity": "10"}
            api(system, "POST", "/api/v1/trades", token, trade)
        return pid

    plans = [
        (f"Bench {i + 1}", [symbols[(7 * i + j) % len(symbols)] for j in range(POSITIONS)])
        for i in range(PORTFOLIOS)
    ]
    with ThreadPoolExecutor(max_workers=PORTFOLIOS + 1) as pool:
        everything = pool.submit(portfolio, "Every symbol", symbols)
        dashboard = list(pool.map(lambda plan: portfolio(*plan), plans))
        every_symbol = everything.result()
    return Holdings(account.email, account.password, token, dashboard, every_symbol, symbols)


# -- the browser ------------------------------------------------------------------------------


def new_context(browser: Browser, system: System) -> BrowserContext:
    context = browser.new_context(base_url=system.web_url, viewport=VIEWPORT, locale="en-US")  # type: ignore[arg-type]
    context.set_default_timeout(30_000)
    return context


def sign_in(page: Page, holdings: Holdings) -> None:
    page.goto("/sign-in")
    page.fill("#signin-email", holdings.email)
    page.fill("#signin-password", holdings.password)
    page.click("[data-testid=signin-submit]")
    page.wait_for_selector("[data-testid=dashboard-total]")


@dataclass
class FirstLoad:
    visible_ms: float
    tti_ms: float
    js_kb: float  # encodedBodySize of the .js fetched before TTI
    js_files: int
    js_kb_settled: float  # every .js the page fetched within 2 s after TTI (the chart chunk too)
    js_decoded_kb: float
    long_tasks_ms: list[float]
    js_urls: list[str] = field(default_factory=list)


RESOURCES = """
() => performance.getEntriesByType("resource")
  .filter((e) => new URL(e.name).pathname.endsWith(".js"))
  .map((e) => ({ name: e.name, start: e.startTime, encoded: e.encodedBodySize,
                 decoded: e.decodedBodySize }))
"""


def first_load(browser: Browser, system: System, holdings: Holdings) -> FirstLoad:
    """One cold load of the dashboard in a fresh context (see the module's docstring)."""
    context = new_context(browser, system)
    try:
        page = context.new_page()
        sign_in(page, holdings)
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        context.add_init_script(FIRST_LOAD_SCRIPT % PORTFOLIOS)
        page.reload(wait_until="commit")
        try:
            handle = page.wait_for_function(TTI_FUNCTION, arg=QUIET_MS, polling=50)
            tti = float(handle.json_value())
        except PlaywrightTimeout:  # never shown, or never quiet for 500 ms: a miss, not a crash
            tti = math.inf
        visible = float(page.evaluate("window.__firstLoad.visible ?? Infinity"))
        page.wait_for_timeout(2000)
        resources: list[dict[str, Any]] = page.evaluate(RESOURCES)
        long_tasks = [float(d) for _, d in page.evaluate("window.__firstLoad.long")]
    finally:
        context.close()
    early = [r for r in resources if r["start"] < tti]
    return FirstLoad(
        visible_ms=visible,
        tti_ms=tti,
        js_kb=sum(r["encoded"] for r in early) / 1024,
        js_files=len(early),
        js_kb_settled=sum(r["encoded"] for r in resources) / 1024,
        js_decoded_kb=sum(r["decoded"] for r in early) / 1024,
        long_tasks_ms=long_tasks,
        js_urls=[r["name"] for r in early],
    )


def gzip_check(dist: Path, urls: Sequence[str]) -> dict[str, Any]:
    """Whether the web process sends the JS gzipped, and gzip -9 of those files in the bundle."""
    sizes = 0
    for url in urls:
        path = dist / urllib.parse.urlsplit(url).path.lstrip("/")
        sizes += len(gzip.compress(path.read_bytes(), 9)) if path.is_file() else 0
    encoding = ""
    if urls:
        parts = urllib.parse.urlsplit(urls[0])
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            connection.request("GET", parts.path, headers={"Accept-Encoding": "gzip"})
            answer = connection.getresponse()
            answer.read()
            encoding = answer.getheader("Content-Encoding") or "identity"
        finally:
            connection.close()
    return {"content_encoding": encoding, "gzip9_kb": round(sizes / 1024, 1)}


# The wire's reference: a dedicated worker of the page with a socket of its own to the same
# facade, subscribed to the same symbols. Its thread does nothing else, so it stamps each tick as
# the browser receives it, while the page's `message` event may wait behind the main thread's
# other work (rendering, style, layout, paint): that wait is part of wire -> DOM and an in-page
# listener cannot see it. Served from the bundle's copy (CSP: scripts and workers from 'self').
WIRE_WORKER = """
let stamps = [];
onmessage = (event) => {
  const order = event.data;
  if (order.type === "read") { postMessage({ type: "stamps", stamps }); return; }
  const socket = new WebSocket(order.url);
  socket.onmessage = (message) => {
    const now = performance.timeOrigin + performance.now();
    const text = message.data;
    if (text.indexOf('"price"') >= 0) {
      const tick = JSON.parse(text);
      if (tick.type === "price") stamps.push([`${tick.symbol.toUpperCase()} ${tick.time}`, now]);
    } else if (text.indexOf('"auth_ok"') >= 0) {
      socket.send(JSON.stringify({ type: "subscribe", symbols: order.symbols }));
      socket.send('{"type":"ping"}');
    } else if (text.indexOf('"pong"') >= 0) {
      postMessage({ type: "ready" });
    }
  };
  socket.onclose = (closed) => postMessage({ type: "closed", code: closed.code });
};
"""
WIRE_WORKER_FILE = "bench-wire-worker.js"

START_WIRE = """
([file, url, symbols]) => new Promise((resolve, reject) => {
  const worker = (window.__wire = new Worker(file));
  worker.onmessage = (event) => {
    if (event.data.type === "ready") resolve(true);
    else if (event.data.type === "closed") reject(new Error(`closed ${event.data.code}`));
  };
  worker.onerror = (event) => reject(new Error(event.message));
  worker.postMessage({ type: "start", url, symbols });
})
"""

READ_WIRE = """
() => new Promise((resolve) => {
  window.__wire.onmessage = (event) => {
    if (event.data.type === "stamps") resolve(event.data.stamps);
  };
  window.__wire.postMessage({ type: "read" });
})
"""


@dataclass
class TickWindow:
    page_name: str
    landed: list[tuple[str, float, float]]  # key, message event and DOM, epoch seconds
    wire: dict[str, float]  # key -> epoch seconds at the wire's reference (the worker)
    received: int
    undrawn: int
    long_tasks_ms: list[float]
    frames_ms: list[float]
    seconds: float
    cpu: dict[str, float]

    def arrival(self, key: str, event: float) -> float | None:
        """When the browser had the tick: the worker's stamp, or the page's own event when that
        came first (a message cannot be handled before it arrived; the worker's socket may be
        written after the page's, or its thread be waiting for a core)."""
        wire = self.wire.get(key)
        return None if wire is None else min(wire, event)

    @property
    def event_to_dom_ms(self) -> list[float]:
        return [(dom - event) * 1000 for _, event, dom in self.landed]

    @property
    def wire_to_dom_ms(self) -> list[float]:
        return [
            (dom - arrived) * 1000
            for key, event, dom in self.landed
            if (arrived := self.arrival(key, event)) is not None
        ]

    @property
    def wire_to_event_ms(self) -> list[float]:
        return [
            (event - arrived) * 1000
            for key, event, _ in self.landed
            if (arrived := self.arrival(key, event)) is not None
        ]

    @property
    def reference_late_ms(self) -> list[float]:
        """How much later the worker heard a tick than the page's event ran, where it did."""
        return [
            (self.wire[key] - event) * 1000
            for key, event, _ in self.landed
            if key in self.wire and self.wire[key] > event
        ]


def watch_ticks(
    browser: Browser,
    system: System,
    holdings: Holdings,
    path: str,
    ready: str,
    *,
    label: str,
    min_ticks: int,
    seconds: float,
    max_seconds: float,
) -> TickWindow:
    """Open `path` signed in, wait for `ready`, then record ticks and long tasks for at least
    `seconds` and until `min_ticks` ticks landed (at most `max_seconds`)."""
    context = new_context(browser, system)
    try:
        context.add_init_script(TICK_SCRIPT)
        page = context.new_page()
        sign_in(page, holdings)
        page.goto(path)
        page.wait_for_selector(ready)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        socket = (
            system.facade_url.replace("http://", "ws://", 1)
            + "/ws/portfolio?"
            + (urllib.parse.urlencode({"token": holdings.token}))
        )
        page.evaluate(START_WIRE, [f"/{WIRE_WORKER_FILE}", socket, holdings.symbols])
        page.wait_for_timeout(1500)  # the page settled, its chunks loaded
        page.evaluate(RESET_TICKS)
        before = metrics(cdp)
        started = time.monotonic()
        while True:
            page.wait_for_timeout(1000)
            elapsed = time.monotonic() - started
            count = int(page.evaluate("window.__ticks.landed.length"))
            if elapsed >= max_seconds or (elapsed >= seconds and count >= min_ticks):
                break
        found: dict[str, Any] = page.evaluate(READ_TICKS)
        after = metrics(cdp)
        arrivals = {str(key): float(when) / 1000 for key, when in page.evaluate(READ_WIRE)}
    finally:
        context.close()
    origin = float(found["timeOrigin"])
    return TickWindow(
        page_name=label,
        landed=[
            (str(key), (origin + event) / 1000, (origin + dom) / 1000)
            for key, event, dom in found["landed"]
        ],
        wire=arrivals,
        received=int(found["received"]),
        undrawn=int(found["undrawn"]),
        long_tasks_ms=[float(d) for _, d in found["long"]],
        frames_ms=[float(v) for v in found["frames"]],
        seconds=float(found["seconds"]),
        cpu={name: after[name] - before[name] for name in CPU_METRICS},
    )


# The renderer's own clocks (CDP Performance.getMetrics, seconds): the main thread's CPU time,
# its busy (wall) time in tasks, and its script/style/layout time, whatever else the machine runs.
CPU_METRICS = (
    "ThreadTime",
    "TaskDuration",
    "ScriptDuration",
    "RecalcStyleDuration",
    "LayoutDuration",
)


def metrics(cdp: CDPSession) -> dict[str, float]:
    found = cdp.send("Performance.getMetrics")["metrics"]
    return {m["name"]: float(m["value"]) for m in found if m["name"] in CPU_METRICS}


# -- report -----------------------------------------------------------------------------------


@dataclass
class WebReport:
    bundle: str = ""
    loads: list[FirstLoad] = field(default_factory=list)
    gzip: dict[str, Any] = field(default_factory=dict)
    ticks: TickWindow | None = None
    stream: list[TickWindow] = field(default_factory=list)
    symbols: int = 0


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summary(window: TickWindow) -> dict[str, float]:
    long = window.long_tasks_ms
    wire, event, queued = window.wire_to_dom_ms, window.event_to_dom_ms, window.wire_to_event_ms
    return {
        "ticks": len(event),
        "paired_with_wire": len(wire),
        "received": window.received,
        "undrawn": window.undrawn,
        "seconds": round(window.seconds, 1),
        "p50_ms": round(percentile(wire, 0.5), 2),
        "p99_ms": round(percentile(wire, 0.99), 2),
        "max_ms": round(max(wire, default=0.0), 2),
        "reference_late": len(window.reference_late_ms),
        "reference_late_max_ms": round(max(window.reference_late_ms, default=0.0), 1),
        "event_p50_ms": round(percentile(event, 0.5), 2),
        "event_p99_ms": round(percentile(event, 0.99), 2),
        "queued_p50_ms": round(percentile(queued, 0.5), 2),
        "queued_p99_ms": round(percentile(queued, 0.99), 2),
        "long_tasks": len(long),
        "long_over_100": sum(1 for d in long if d > LONG_TASK_GOAL_MS),
        "longest_ms": round(max(long, default=0.0), 1),
        "main_thread_cpu_share": round(window.cpu["ThreadTime"] / window.seconds, 3),
        "main_thread_busy_share": round(window.cpu["TaskDuration"] / window.seconds, 3),
        "cpu_ms_per_tick": round(window.cpu["ThreadTime"] * 1000 / max(1, window.received), 3),
        "script_s": round(window.cpu["ScriptDuration"], 3),
        "style_s": round(window.cpu["RecalcStyleDuration"], 3),
        "layout_s": round(window.cpu["LayoutDuration"], 3),
        "frame_p50_ms": round(percentile(window.frames_ms, 0.5), 1),
        "frame_p99_ms": round(percentile(window.frames_ms, 0.99), 1),
    }


def table(report: WebReport) -> str:
    lines = ["| figure | measured | goal | |", "|---|---|---|---|"]
    if report.loads:
        ttis = [load.tti_ms for load in report.loads]
        p50, worst = percentile(ttis, 0.5), max(ttis, default=0.0)
        visible = percentile([load.visible_ms for load in report.loads], 0.5)
        lines.append(
            f"| dashboard first load ({PORTFOLIOS} x {POSITIONS}, cold cache): time to "
            f"interactive, {len(ttis)} loads | p50 {p50:.0f} ms, max {worst:.0f} ms (total "
            f"shown at p50 {visible:.0f} ms) | < {GOALS['tti_ms']:.0f} ms | "
            f"{verdict(worst < GOALS['tti_ms'])} |"
        )
        kb = max(load.js_kb for load in report.loads)
        files = max(load.js_files for load in report.loads)
        settled = max(load.js_kb_settled for load in report.loads)
        lines.append(
            f"| JS shipped for the first route ({report.gzip.get('content_encoding', '?')} on "
            f"the wire, fetched before interactive; largest of the loads) | {kb:.1f} KB in "
            f"{files} files ({settled:.1f} KB once the chart chunk is in) | "
            f"< {GOALS['js_kb']:.0f} KB | {verdict(kb < GOALS['js_kb'])} |"
        )
    if report.ticks is not None:
        s = summary(report.ticks)
        lines.append(
            f"| tick on the wire -> DOM, {report.symbols} live prices on screen, 1 step/s "
            f"| p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms over "
            f"{s['paired_with_wire']:.0f} ticks (message event -> DOM: p50 "
            f"{s['event_p50_ms']:.1f}, p99 {s['event_p99_ms']:.1f} ms; main thread CPU "
            f"{s['main_thread_cpu_share'] * 100:.0f} % of a core) "
            f"| p99 < {GOALS['tick_p99_ms']:.0f} ms | "
            f"{verdict(s['paired_with_wire'] >= 1000 and s['p99_ms'] < GOALS['tick_p99_ms'])} |"
        )
    for window in report.stream:
        s = summary(window)
        ticks = (
            f"; wire -> DOM p50 {s['p50_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms"
            if s["paired_with_wire"]
            else ""
        )
        lines.append(
            f"| 10 steps/s for {s['seconds']:.0f} s, {window.page_name}: long tasks "
            f"| {s['long_tasks']:.0f} > 50 ms, {s['long_over_100']:.0f} > 100 ms, longest "
            f"{s['longest_ms']:.0f} ms; frame interval p50 {s['frame_p50_ms']:.0f} ms, p99 "
            f"{s['frame_p99_ms']:.0f} ms{ticks}; main thread CPU "
            f"{s['main_thread_cpu_share'] * 100:.0f} % of a core | none > 100 ms | "
            f"{verdict(s['long_over_100'] == 0)} |"
        )
    return "\n".join(lines)


def as_json(report: WebReport) -> dict[str, Any]:
    return {
        "bundle": report.bundle,
        "symbols": report.symbols,
        "first_loads": [
            {
                "visible_ms": round(load.visible_ms, 1),
                "tti_ms": round(load.tti_ms, 1),
                "js_kb": round(load.js_kb, 1),
                "js_decoded_kb": round(load.js_decoded_kb, 1),
                "js_kb_settled": round(load.js_kb_settled, 1),
                "js_files": load.js_files,
                "long_tasks_ms": [round(d) for d in load.long_tasks_ms],
            }
            for load in report.loads
        ],
        "gzip": report.gzip,
        "ticks": None if report.ticks is None else summary(report.ticks),
        "stream": {window.page_name: summary(window) for window in report.stream},
    }


# -- main -------------------------------------------------------------------------------------


def say(started: float, what: str) -> None:
    print(f"[{time.monotonic() - started:5.0f} s] {what}", flush=True)


def run(args: argparse.Namespace, report: WebReport) -> None:
    started = time.monotonic()
    parts = set(args.only or ("load", "ticks", "stream"))
    report.bundle = str(args.dist) if args.dist is not None else build_bundle()
    with (
        sync_playwright() as playwright,
        tempfile.TemporaryDirectory(prefix="stockfolio-bench-web-") as temporary,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        root = Path(temporary)
        dist = snapshot_bundle(args.dist or DIST, root / "dist")
        if parts & {"load", "ticks"}:
            say(started, f"bundle {report.bundle}; starting the system (1 market step/s) ...")
            with running_system(root / "paced", {**SETTINGS, "WEB_DIST": str(dist)}) as system:
                holdings = create_holdings(system)
                report.symbols = len(holdings.symbols)
                if "load" in parts:
                    say(started, f"first load of the dashboard x {args.loads} ...")
                    for _ in range(args.loads):
                        report.loads.append(first_load(browser, system, holdings))
                    report.gzip = gzip_check(dist, report.loads[0].js_urls)
                if "ticks" in parts:
                    say(started, f"ticks on the portfolio of {report.symbols} positions ...")
                    report.ticks = watch_ticks(
                        browser,
                        system,
                        holdings,
                        f"/portfolios/{holdings.every_symbol}",
                        f"[data-testid=position-{holdings.symbols[-1].upper()}]",
                        label=f"portfolio page ({report.symbols} positions)",
                        min_ticks=args.ticks,
                        seconds=5.0,
                        max_seconds=60.0,
                    )
        if "stream" in parts:
            say(started, "starting the system (10 market steps/s) ...")
            stream = {**STREAM_SETTINGS, "WEB_DIST": str(dist)}
            with running_system(root / "stream", stream) as system:
                holdings = create_holdings(system)
                report.symbols = len(holdings.symbols)
                pages = [
                    (
                        f"portfolio page ({report.symbols} positions)",
                        f"/portfolios/{holdings.every_symbol}",
                        f"[data-testid=position-{holdings.symbols[-1].upper()}]",
                    ),
                    (
                        f"dashboard ({PORTFOLIOS} x {POSITIONS})",
                        "/",
                        f"[data-testid=portfolio-total-{holdings.dashboard[-1]}]",
                    ),
                ]
                for label, path, ready in pages:
                    say(started, f"10 steps/s, {label}, {args.stream_seconds:.0f} s ...")
                    report.stream.append(
                        watch_ticks(
                            browser,
                            system,
                            holdings,
                            path,
                            ready,
                            label=label,
                            min_ticks=0,
                            seconds=args.stream_seconds,
                            max_seconds=args.stream_seconds,
                        )
                    )
        say(started, "done")
        browser.close()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__)
    parser.add_argument("--loads", type=int, default=5, help="cold loads of the dashboard")
    parser.add_argument("--ticks", type=int, default=1000, help="ticks paired at 1 step/s")
    parser.add_argument("--stream-seconds", type=float, default=12.0, help="per page, 10 steps/s")
    parser.add_argument("--json", type=Path, help="also write the details here")
    parser.add_argument(
        "--dist", type=Path, help="measure this built bundle instead of web/dist (no make web)"
    )
    parser.add_argument(
        "--only",
        choices=("load", "ticks", "stream"),
        action="append",
        help="measure only these parts (repeatable)",
    )
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(f"bench.web: Chromium is missing at {CHROMIUM}: apt-get install chromium")
        return 1
    report = WebReport()
    started = time.monotonic()
    run(args, report)
    details = as_json(report)
    details["seconds"] = round(time.monotonic() - started, 1)
    if args.json is not None:
        args.json.write_text(json.dumps(details, indent=2) + "\n")
    print(json.dumps(details))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
