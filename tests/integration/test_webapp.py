"""The web process (facade/webapp): the built app, its caching, its headers, the SPA fallback,
/config.json and /healthz, served from a small bundle made here (as `vite build` lays it out)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from facade.webapp.app import create_web_app
from facade.webapp.config import load_web_config
from services.runtime.config import ConfigError
from tests.system_harness import REPO, free_ports, request

Client = TestClient[web.Request, web.Application]
OpenWeb = Callable[..., AbstractAsyncContextManager[Client]]

INDEX = '<!doctype html><html><head><script type="module" src="/assets/index-3f9a1c.js"></script>'
INDEX += '</head><body><div id="app"></div></body></html>'
# Long enough to be worth compressing (more than 1 KB), and compressible.
SCRIPT = "export const answer = 42;\n" + "console.log('stockfolio');\n" * 200
STYLE = "body { margin: 0 }\n"
EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' http://127.0.0.1:4110 ws://127.0.0.1:4110; img-src 'self' data:; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


def write_bundle(dist: Path) -> Path:
    """A bundle shaped like Vite's: index.html, hashed assets, public files, its manifest."""
    (dist / "assets").mkdir(parents=True)
    (dist / ".vite").mkdir()
    (dist / "index.html").write_text(INDEX)
    (dist / "assets" / "index-3f9a1c.js").write_text(SCRIPT)
    (dist / "assets" / "index-77b2e0.css").write_text(STYLE)
    (dist / "assets" / "chart-1d2e3f.js").write_text("plain, uncompressed copy")
    (dist / "assets" / "chart-1d2e3f.js.gz").write_bytes(gzip.compress(b"precompressed copy"))
    (dist / "robots.txt").write_text("User-agent: *\n")
    (dist / ".vite" / "manifest.json").write_text("{}")
    # Vite copies web/public/config.json here; the process answers /config.json itself.
    (dist / "config.json").write_text('{"apiUrl": "http://from-the-bundle.invalid"}')
    return dist


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "dist")


@pytest.fixture
def open_web(dist: Path) -> OpenWeb:
    @asynccontextmanager
    async def open_web(**settings: str) -> AsyncIterator[Client]:
        environ = {"WEB_DIST": str(dist), "WEB_API_URL": "http://127.0.0.1:4110", **settings}
        app = create_web_app(load_web_config(environ))
        # Bodies as sent (undecoded), plain unless a test asks for gzip.
        async with TestClient(
            TestServer(app), auto_decompress=False, headers={"Accept-Encoding": "identity"}
        ) as client:
            yield client

    return open_web


@pytest.fixture
async def client(open_web: OpenWeb) -> AsyncIterator[Client]:
    async with open_web() as opened:
        yield opened


# --- the app, its assets and their caching ---------------------------------------------------


async def test_the_root_serves_index_html_revalidated_every_time(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.text() == INDEX


async def test_hashed_assets_are_cached_for_a_year_as_immutable(client: Client) -> None:
    script = await client.get("/assets/index-3f9a1c.js")
    assert script.status == 200
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert script.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert await script.text() == SCRIPT
    style = await client.get("/assets/index-77b2e0.css")
    assert style.headers["Content-Type"] == "text/css; charset=utf-8"
    assert style.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert await style.text() == STYLE


async def test_unhashed_files_of_the_bundle_are_revalidated(client: Client) -> None:
    robots = await client.get("/robots.txt")
    assert robots.status == 200
    assert robots.headers["Cache-Control"] == "no-cache"
    assert await robots.text() == "User-agent: *\n"


async def test_a_conditional_request_for_an_unchanged_asset_is_not_modified(
    client: Client,
) -> None:
    first = await client.get("/assets/index-77b2e0.css")
    again = await client.get(
        "/assets/index-77b2e0.css", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status == 304
    assert await again.read() == b""


# --- the single-page app's routes ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/dashboard", "/portfolios/7f3e/trades", "/stocks/BRK.B", "/index.html", "/sign-in?next=/"],
)
async def test_a_route_of_the_app_is_answered_with_index_html(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.text() == INDEX


@pytest.mark.parametrize(
    "path", ["/assets/missing-000000.js", "/assets/gone", "/favicon.ico", "/app.css", "/x/y.map"]
)
async def test_a_missing_file_is_a_404_not_index_html(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert await response.text() == f"not found: {path}\n"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/.vite/manifest.json", "/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt"],
)
async def test_hidden_files_and_paths_outside_the_bundle_are_never_served(
    client: Client, dist: Path, path: str
) -> None:
    (dist.parent / "secret.txt").write_text("the key")
    response = await client.get(path)
    assert response.status == 404
    assert "the key" not in await response.text()


async def test_other_methods_are_refused(client: Client) -> None:
    response = await client.post("/dashboard", data=b"x")
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"


# --- headers ---------------------------------------------------------------------------------


async def test_every_answer_carries_the_content_security_policy_and_the_other_headers(
    client: Client,
) -> None:
    for path in ("/", "/assets/index-3f9a1c.js", "/config.json", "/healthz", "/assets/x.js"):
        headers = (await client.get(path)).headers
        assert headers["Content-Security-Policy"] == EXPECTED_CSP, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert "Strict-Transport-Security" not in headers, path


async def test_an_https_api_is_allowed_over_https_and_wss_and_production_adds_hsts(
    open_web: OpenWeb,
) -> None:
    async with open_web(
        WEB_API_URL="https://api.example.com/", STOCKFOLIO_ENV="production"
    ) as client:
        response = await client.get("/")
        policy = response.headers["Content-Security-Policy"]
        assert "connect-src 'self' https://api.example.com wss://api.example.com;" in policy
        assert response.headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains"
        )
        config = await client.get("/config.json")
        assert json.loads(await config.read()) == {"apiUrl": "https://api.example.com"}


# --- compression -----------------------------------------------------------------------------


async def test_a_script_is_gzipped_for_a_client_that_accepts_it(client: Client) -> None:
    response = await client.get("/assets/index-3f9a1c.js", headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    body = await response.read()
    assert len(body) < len(SCRIPT) / 10
    assert gzip.decompress(body).decode() == SCRIPT


async def test_a_client_that_does_not_accept_gzip_gets_the_plain_file(client: Client) -> None:
    response = await client.get("/assets/index-3f9a1c.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in response.headers
    assert await response.text() == SCRIPT


async def test_a_precompressed_copy_beside_a_file_is_sent_as_it_is(client: Client) -> None:
    response = await client.get("/assets/chart-1d2e3f.js", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert gzip.decompress(await response.read()) == b"precompressed copy"


# --- /config.json and /healthz ---------------------------------------------------------------


async def test_config_json_names_the_api_from_web_api_url_alone(client: Client) -> None:
    response = await client.get("/config.json")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-cache"
    assert json.loads(await response.read()) == {"apiUrl": "http://127.0.0.1:4110"}


async def test_healthz_says_the_bundle_is_built(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert json.loads(await response.read()) == {"status": "ok", "bundle": "built"}


async def test_without_a_bundle_every_page_says_to_build_it(
    open_web: OpenWeb, tmp_path: Path
) -> None:
    async with open_web(WEB_DIST=str(tmp_path / "never-built")) as client:
        for path in ("/", "/dashboard", "/assets/index-3f9a1c.js"):
            page = await client.get(path)
            assert page.status == 503, path
            assert page.headers["Content-Type"] == "text/html; charset=utf-8"
            assert page.headers["Cache-Control"] == "no-store"
            text = await page.text()
            assert "The web app is not built yet" in text
            assert "<code>make web</code>" in text
            assert str(tmp_path / "never-built" / "index.html") in text
        health = await client.get("/healthz")
        assert health.status == 200
        assert json.loads(await health.read()) == {"status": "ok", "bundle": "missing"}
        config = await client.get("/config.json")
        assert json.loads(await config.read()) == {"apiUrl": "http://127.0.0.1:4110"}


async def test_a_bundle_built_while_running_is_served_without_a_restart(
    open_web: OpenWeb, tmp_path: Path
) -> None:
    later = tmp_path / "later"
    async with open_web(WEB_DIST=str(later)) as client:
        assert (await client.get("/dashboard")).status == 503
        write_bundle(later)
        page = await client.get("/dashboard")
        assert page.status == 200
        assert await page.text() == INDEX


# --- configuration ---------------------------------------------------------------------------


def test_defaults_are_the_seeds_ports() -> None:
    config = load_web_config({})
    assert (config.host, config.port) == ("127.0.0.1", 4100)
    assert config.api_url == "http://localhost:4110"
    assert config.dist == (Path.cwd() / "web" / "dist").resolve()
    assert config.production is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEB_API_URL", "localhost:4110"),
        ("WEB_API_URL", "ftp://api.example.com"),
        ("WEB_API_URL", "https://api.example.com/?x=1"),
        ("WEB_PORT", "eighty"),
        ("WEB_PORT", "70000"),
    ],
)
def test_bad_values_are_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_web_config({name: value})


# --- the process -----------------------------------------------------------------------------


def test_the_process_starts_without_a_bundle_answers_and_stops_cleanly(tmp_path: Path) -> None:
    """`make run` on a machine without Node: the web process still starts and explains."""
    (port,) = free_ports(1)
    environ = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'gen'}",
        "WEB_PORT": str(port),
        "WEB_DIST": str(tmp_path / "missing"),
        "WEB_API_URL": "http://127.0.0.1:4110",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "facade.webapp"],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        health = None
        while time.monotonic() < deadline and health is None:
            assert process.poll() is None, process.communicate()[0].decode()
            try:
                health = request("GET", f"http://127.0.0.1:{port}/healthz", timeout=1)
            except OSError:
                time.sleep(0.05)
        assert health is not None, "no answer on /healthz within 20 s"
        assert health.body == {"status": "ok", "bundle": "missing"}
        page = request("GET", f"http://127.0.0.1:{port}/")
        assert page.status == 503
        assert "make web" in page.body
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [e["msg"] for e in events if e["level"] == "warning"] == [
        "the web app is not built: every page says to run `make web` until it is"
    ]
    serving = next(e for e in events if e["msg"] == "serving")
    assert (serving["service"], serving["port"], serving["bundle"]) == ("web", port, "missing")
    assert events[-1]["msg"] == "stopped"
