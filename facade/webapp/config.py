"""The web process's configuration: where it listens, the bundle it serves, the API it names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from services.runtime.config import ConfigError, Env

DEFAULT_PORT = 4100
DEFAULT_API_URL = "http://localhost:4110"
DEFAULT_DIST = "web/dist"
WEBSOCKET_SCHEME = {"http": "ws", "https": "wss"}


@dataclass(frozen=True)
class WebConfig:
    host: str
    port: int
    # The built app (index.html and assets/); it may be missing: then a page says to build it.
    dist: Path
    # The facade's base URL, the one value the app is told (/config.json) and the CSP allows.
    api_url: str
    production: bool
    log_level: str
    shutdown_grace: float

    @property
    def api_origins(self) -> tuple[str, str]:
        """The API's HTTP origin and its WebSocket twin (`ws:` for `http:`, `wss:` for `https:`)."""
        url = URL(self.api_url)
        http = str(url.origin())
        return http, str(url.origin().with_scheme(WEBSOCKET_SCHEME[url.scheme]))


def parse_api_url(name: str, raw: str) -> str:
    """`https://api.example.com/` -> `https://api.example.com`; errors name `name`."""
    url = URL(raw.strip())
    if url.scheme not in WEBSOCKET_SCHEME or not url.host:
        raise ConfigError(f"{name}: {raw!r} is not an http(s) URL like https://api.example.com")
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigError(f"{name}: {raw!r} must be a base URL, without query, fragment or user")
    return str(url).rstrip("/")


def load_web_config(environ: Mapping[str, str] | None = None) -> WebConfig:
    """Read the web process's settings once (WEB_*, and the shared STOCKFOLIO_HOST, LOG_LEVEL,
    SHUTDOWN_GRACE and STOCKFOLIO_ENV)."""
    env = Env(os.environ if environ is None else environ)
    environment = env.str("STOCKFOLIO_ENV", "development")
    if environment not in {"development", "production", "test"}:
        raise ConfigError(
            f"STOCKFOLIO_ENV must be development, production or test, got {environment!r}"
        )
    return WebConfig(
        host=env.str("WEB_HOST", env.str("STOCKFOLIO_HOST", "127.0.0.1")),
        port=env.int("WEB_PORT", DEFAULT_PORT, maximum=65535),
        dist=Path(env.str("WEB_DIST", DEFAULT_DIST)).resolve(),
        api_url=parse_api_url("WEB_API_URL", env.str("WEB_API_URL", DEFAULT_API_URL)),
        production=environment == "production",
        log_level=env.str("LOG_LEVEL", "INFO").upper(),
        shutdown_grace=env.float("SHUTDOWN_GRACE", 10.0),
    )
