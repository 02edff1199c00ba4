"""The facade's configuration: the runtime's, plus CORS origins, limits, streams and sockets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from services.runtime.config import ConfigError, Env, RuntimeConfig, load_runtime_config
from services.runtime.ratelimit import Rate, parse_rate

# The web process's address as a browser names it: a page opened at 127.0.0.1:4100 sends that
# Origin, not localhost's. Both are this machine's loopback; production sets its own.
DEFAULT_FRONTEND_URL = "http://localhost:4100,http://127.0.0.1:4100"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class FacadeConfig:
    runtime: RuntimeConfig
    # Browser origins allowed to call the API with credentials (CORS).
    frontend_origins: tuple[str, ...]
    # Per client IP on the public auth RPCs (register, login, refresh).
    rate_limit_auth: Rate
    # Per user (per IP when anonymous) on everything else under /api/.
    rate_limit_api: Rate
    max_body_bytes: int
    # Take the client IP from X-Forwarded-For (only behind a proxy that sets it).
    trust_proxy: bool
    # Streamed request bodies (client-streaming routes: file uploads) may hold this much.
    max_upload_bytes: int = 20 * 1024 * 1024
    # Several facade processes on one machine share FACADE_PORT (SO_REUSEPORT: the kernel
    # spreads connections over them), each a replica of its own. Off, a second facade on the
    # port fails at start instead (a stale one left running would otherwise take half).
    reuse_port: bool = False
    # Seconds of quiet after which a Server-Sent Events stream gets a comment line (and any
    # streamed response checks that its client is still there).
    stream_heartbeat: float = 15.0
    # WebSockets: seconds a socket may stay unauthenticated before it is closed (4401).
    ws_auth_timeout: float = 10.0
    # WebSockets: seconds between protocol pings; a pong missing for half that closes it.
    ws_heartbeat: float = 30.0
    # How often open sockets' sessions are checked again, so a logout closes them too.
    ws_session_recheck: float = 3.0
    # WebSockets: bytes a socket may have waiting to be sent; beyond that it is dropped as a
    # slow consumer, so that it never holds up the others.
    ws_send_queue_bytes: int = 64 * 1024
    # Per user, at this replica (0: no cap): WebSockets of every path together, file watches
    # (streamed), chat sessions joined over all their sockets; and per socket, chat joins.
    ws_sockets_per_user: int = 20
    watches_per_user: int = 10
    chat_joins_per_user: int = 50
    chat_joins_per_socket: int = 20
    # Messages a socket may send: `ws_message_rate` a second on average (0: no limit), bursts
    # of `ws_message_burst`; `ws_message_strikes` refused within 10 s close it (1008).
    ws_message_rate: float = 50.0
    ws_message_burst: int = 100
    ws_message_strikes: int = 100

    @property
    def host(self) -> str:
        return self.runtime.host

    @property
    def port(self) -> int:
        return self.runtime.port

    @property
    def addresses(self) -> Mapping[str, tuple[str, ...]]:
        return self.runtime.addresses

    @property
    def rpc_deadline(self) -> float:
        return self.runtime.rpc_deadline

    @property
    def redis_url(self) -> str | None:
        return self.runtime.redis_url

    @property
    def production(self) -> bool:
        return self.runtime.production


def parse_origins(name: str, raw: str) -> tuple[str, ...]:
    """`https://app.example.com,http://localhost:4100` -> normalised origins; errors name `name`."""
    origins: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if item == "*":
            raise ConfigError(f"{name} must list origins, not '*' (credentials are allowed)")
        url = URL(item)
        if url.scheme not in {"http", "https"} or not url.host or url.path not in {"", "/"}:
            raise ConfigError(f"{name}: {item!r} is not an origin like https://app.example.com")
        if url.query_string or url.fragment:
            raise ConfigError(f"{name}: {item!r} is not an origin like https://app.example.com")
        origin = str(url.origin())
        if origin not in origins:
            origins.append(origin)
    if not origins:
        raise ConfigError(f"{name} must name at least one origin")
    return tuple(origins)


def load_facade_config(
    environ: Mapping[str, str] | None = None, *, runtime: RuntimeConfig | None = None
) -> FacadeConfig:
    """Read the facade's settings once; `runtime` lets tests pass a RuntimeConfig they built."""
    source = os.environ if environ is None else environ
    env = Env(source)
    return FacadeConfig(
        runtime=runtime or load_runtime_config("facade", source, database=False),
        frontend_origins=parse_origins(
            "FRONTEND_URL", env.str("FRONTEND_URL", DEFAULT_FRONTEND_URL)
        ),
        rate_limit_auth=parse_rate("RATE_LIMIT_AUTH", env.str("RATE_LIMIT_AUTH", "500/15minutes")),
        rate_limit_api=parse_rate("RATE_LIMIT_API", env.str("RATE_LIMIT_API", "6000/minute")),
        max_body_bytes=env.int(
            "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024, maximum=1024 * 1024 * 1024
        ),
        max_upload_bytes=env.int(
            "MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1024, maximum=1024 * 1024 * 1024
        ),
        trust_proxy=env.bool("TRUST_PROXY", False),
        reuse_port=env.bool("FACADE_REUSE_PORT", False),
        stream_heartbeat=env.float("STREAM_HEARTBEAT", 15.0, minimum=0.01),
        ws_auth_timeout=env.float("WS_AUTH_TIMEOUT", 10.0, minimum=0.01),
        ws_heartbeat=env.float("WS_HEARTBEAT", 30.0, minimum=0.1),
        ws_session_recheck=env.float("WS_SESSION_RECHECK", 3.0, minimum=0.05),
        ws_send_queue_bytes=env.int(
            "WS_SEND_QUEUE_BYTES", 64 * 1024, minimum=1024, maximum=64 * 1024 * 1024
        ),
        ws_sockets_per_user=env.int("WS_SOCKETS_PER_USER", 20, minimum=0),
        watches_per_user=env.int("FILE_WATCHES_PER_USER", 10, minimum=0),
        chat_joins_per_user=env.int("CHAT_JOINS_PER_USER", 50, minimum=0),
        chat_joins_per_socket=env.int("CHAT_JOINS_PER_SOCKET", 20, minimum=1, maximum=1000),
        ws_message_rate=env.float("WS_MESSAGE_RATE", 50.0, minimum=0.0),
        ws_message_burst=env.int("WS_MESSAGE_BURST", 100, minimum=1),
        ws_message_strikes=env.int("WS_MESSAGE_STRIKES", 100, minimum=0),
    )
