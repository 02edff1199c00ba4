"""The web app's routes: the bundle's files, the SPA fallback, /config.json and /healthz.

Hashed files under /assets/ are cached for a year; everything else (index.html, config.json,
unhashed files from Vite's public/ folder) is revalidated on every use, so a new build is seen
at the next load. Every response carries the Content-Security-Policy and the other headers.
"""

from __future__ import annotations

import asyncio
import html
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

from facade.webapp.config import WebConfig

ASSETS = "assets/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESS_ABOVE = 1024
# What the bundle holds that Python's table may not know (or knows under an older name).
CONTENT_TYPES: Mapping[str, str] = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain",
}
# Names ending so are files: missing, they are 404s, never the app (`/stocks/BRK.B` is a route:
# a ticker's class letter is no file type).
FILE_SUFFIXES = frozenset(
    {*CONTENT_TYPES, ".ico", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif", ".ttf", ".xml"}
)
COMPRESSIBLE = frozenset(
    {
        "text/javascript",
        "text/css",
        "text/html",
        "text/plain",
        "application/json",
        "image/svg+xml",
        "application/manifest+json",
        "application/wasm",
    }
)
TEXT_CHARSET = "utf-8"

CONFIG: web.AppKey[WebConfig] = web.AppKey("config", WebConfig)
BUNDLE: web.AppKey[Bundle] = web.AppKey("bundle")
CONFIG_JSON: web.AppKey[bytes] = web.AppKey("config_json", bytes)


def content_security_policy(config: WebConfig) -> str:
    """Only our own origin, plus the API's HTTP and WebSocket origins for fetch and sockets."""
    api_http, api_ws = config.api_origins
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            # xterm.js (its theme and sizes) and lightweight-charts add <style> elements at run
            # time; blocked, the terminal's text is invisible. Scripts stay 'self' only.
            "style-src 'self' 'unsafe-inline'",
            f"connect-src 'self' {api_http} {api_ws}",
            "img-src 'self' data:",
            "font-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        )
    )


def security_headers(config: WebConfig) -> tuple[tuple[str, str], ...]:
    headers = (
        ("Content-Security-Policy", content_security_policy(config)),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    )
    if config.production:
        return (*headers, ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return headers


@dataclass(frozen=True)
class Bundle:
    """The built app on disk; looked up per request, so a rebuild is served without a restart."""

    root: Path

    @property
    def index(self) -> Path:
        return self.root / "index.html"

    def built(self) -> bool:
        return self.index.is_file()

    def find(self, path: str) -> Path | None:
        """The regular file `path` names inside the bundle, or None: nothing outside the root,
        no hidden files (Vite's .vite/ manifest), no NUL."""
        if "\0" in path or any(part.startswith(".") for part in path.split("/") if part):
            return None
        root = self.root.resolve()
        candidate = (root / path).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate


def looks_like_a_file(path: str) -> bool:
    """`/assets/...` and names of a web file type (`app.js`, `favicon.ico`) are files; anything
    else is a route of the app."""
    return path.startswith(ASSETS) or Path(path).suffix.lower() in FILE_SUFFIXES


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    return (
        CONTENT_TYPES.get(suffix)
        or mimetypes.guess_type(path.name)[0]
        or "application/octet-stream"
    )


def file_response(request: web.Request, path: Path, cache_control: str) -> web.FileResponse:
    """The file with its type and caching; gzip from a `.gz` beside it when there is one (the
    FileResponse picks it), else compressed on the fly when worth it."""
    kind = content_type(path)
    response = web.FileResponse(path)
    response.headers[hdrs.CACHE_CONTROL] = cache_control
    if kind.startswith("text/") or kind in {"application/json", "image/svg+xml"}:
        response.headers[hdrs.CONTENT_TYPE] = f"{kind}; charset={TEXT_CHARSET}"
    else:
        response.headers[hdrs.CONTENT_TYPE] = kind
    if kind in COMPRESSIBLE:
        response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        accepts_gzip = "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "")
        if accepts_gzip and path.stat().st_size > COMPRESS_ABOVE:
            response.enable_compression(web.ContentCoding.gzip)
    return response


def not_built_page(bundle: Bundle) -> web.Response:
    where = html.escape(str(bundle.index))
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Stockfolio: the web app is not built</title></head><body>"
        "<h1>The web app is not built yet</h1>"
        "<p>Build it with <code>make web</code> (it needs Node.js 18 or newer and npm), "
        "then reload this page. <code>make run</code> builds it when Node.js is installed.</p>"
        f"<p>Looked for <code>{where}</code>.</p>"
        "<p>The API itself runs without it: see the facade's <code>/docs</code>.</p>"
        "</body></html>"
    )
    return web.Response(
        status=503,
        text=body,
        content_type="text/html",
        headers={hdrs.CACHE_CONTROL: "no-store", hdrs.RETRY_AFTER: "10"},
    )


def not_found(path: str) -> web.Response:
    return web.Response(
        status=404,
        text=f"not found: /{path}\n",
        headers={hdrs.CACHE_CONTROL: REVALIDATE},
    )


async def serve_app(request: web.Request) -> web.StreamResponse:
    """A file of the bundle; a missing file is a 404; any other path is a route of the app,
    answered with index.html."""
    bundle = request.app[BUNDLE]
    path = request.match_info["path"]
    built, found = await asyncio.to_thread(lambda: (bundle.built(), bundle.find(path)))
    if not built:
        return not_built_page(bundle)
    if found is not None and found != bundle.index.resolve():
        cache = IMMUTABLE if path.startswith(ASSETS) else REVALIDATE
        return file_response(request, found, cache)
    if found is None and looks_like_a_file(path):
        return not_found(path)
    return file_response(request, bundle.index, REVALIDATE)


async def config_json(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[CONFIG_JSON],
        content_type="application/json",
        headers={hdrs.CACHE_CONTROL: REVALIDATE},
    )


async def healthz(request: web.Request) -> web.Response:
    """The process answers; `bundle` says whether there is an app to serve."""
    built = await asyncio.to_thread(request.app[BUNDLE].built)
    return web.json_response(
        {"status": "ok", "bundle": "built" if built else "missing"},
        headers={hdrs.CACHE_CONTROL: "no-store"},
    )


def create_web_app(config: WebConfig) -> web.Application:
    app = web.Application()
    app[CONFIG] = config
    app[BUNDLE] = Bundle(config.dist)
    app[CONFIG_JSON] = json.dumps({"apiUrl": config.api_url}).encode()
    headers = security_headers(config)

    async def add_security_headers(_: web.Request, response: web.StreamResponse) -> None:
        response.headers.extend(headers)

    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/config.json", config_json)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/{path:.*}", serve_app)
    return app
