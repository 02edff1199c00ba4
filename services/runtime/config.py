"""The runtime configuration every process shares, read once from the environment."""

from __future__ import annotations

import builtins
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.keys import TokenKeyError, TokenKeys, load_token_keys
from services.runtime.redis_url import split_namespace

SERVICE_PORTS: Mapping[str, int] = {
    "facade": 4110,
    "users": 4120,
    "assistant": 4130,
    "terminal": 4140,
    "workspace": 4150,
    "portfolio": 4160,
}
DOMAIN_SERVICES = ("users", "assistant", "terminal", "workspace", "portfolio")
ADMIN_PORT_OFFSET = 1000
# grpcio (1.85, aio) starts a service-config timeout's clock about 1-1.6 s early
# (grpc/grpc#34547, #40633): a 1 s RPC_DEADLINE failed every call at once. Stay well clear.
MIN_RPC_DEADLINE = 5.0


class ConfigError(Exception):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs to run one process of one service."""

    service: str
    environment: str
    host: str
    port: int
    admin_port: int
    var_dir: Path
    database_url: str
    redis_url: str | None
    # Public keys to check tokens with; private keys only in the users service (users' tokens) and
    # in the service-token issuers (their own service tokens: keys.SERVICE_TOKEN_ISSUERS).
    token_keys: TokenKeys = field(repr=False)
    jwt_issuer: str
    access_token_ttl: int
    addresses: Mapping[str, tuple[str, ...]]
    log_level: str
    shutdown_grace: float
    rpc_deadline: float
    session_check_ttl: float
    # Peers allowed to name the end client's address in `x-forwarded-for` (the facade).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Where the plain-HTTP admin port (/health, /metrics) listens: loopback unless the cluster
    # network must reach it (a Prometheus scrape); never a public interface.
    admin_host: str = "127.0.0.1"
    # The environment this was read from: each service reads its own settings from the same
    # source (so a test's or a caller's mapping reaches every setting, not only these).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def production(self) -> bool:
        return self.environment == "production"


class Env:
    """Typed reads of environment variables, with errors that name the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self._environ.get(name, "").strip()
        return value or default

    def optional(self, name: builtins.str) -> builtins.str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int = 0,
        maximum: builtins.int = 2**31,
    ) -> builtins.int:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
        return value

    def float(
        self, name: builtins.str, default: builtins.float, *, minimum: builtins.float = 0.0
    ) -> builtins.float:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self._environ.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")


def service_addresses(env: Env) -> dict[str, tuple[str, ...]]:
    """Every domain service's replicas: `USERS_ADDRS=host:port,host:port`, else its port."""
    found: dict[str, tuple[str, ...]] = {}
    for name in DOMAIN_SERVICES:
        default_port = env.int(f"{name.upper()}_PORT", SERVICE_PORTS[name], maximum=65535)
        raw = env.str(f"{name.upper()}_ADDRS", f"127.0.0.1:{default_port}")
        addresses = tuple(a.strip() for a in raw.split(",") if a.strip())
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"{name.upper()}_ADDRS: {address!r} is not host:port")
        found[name] = addresses
    return found


def token_keys(
    service: str, source: Mapping[str, str], *, production: bool, var_dir: Path
) -> TokenKeys:
    try:
        return load_token_keys(source, service, production=production, var_dir=var_dir)
    except TokenKeyError as error:
        raise ConfigError(str(error)) from None


def trusted_networks(env: Env) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = env.str("TRUSTED_PROXIES", "127.0.0.0/8,::1/128")
    try:
        return tuple(ipaddress.ip_network(n.strip()) for n in raw.split(",") if n.strip())
    except ValueError as error:
        raise ConfigError(f"TRUSTED_PROXIES must list IP networks: {error}") from None


def _redis_url(url: str | None) -> str | None:
    """REDIS_URL, its namespace checked here rather than when the cache connects."""
    if url:
        try:
            split_namespace(url)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return url


def load_runtime_config(
    service: str,
    environ: Mapping[str, str] | None = None,
    *,
    database: bool = True,
    tokens: bool = True,
) -> RuntimeConfig:
    """Read the runtime settings of `service`; `database=False` for processes without one
    (the facade), which then need no database URL in production; `tokens=False` for processes
    that check no token (migrations), which then hold no key."""
    source = dict(os.environ) if environ is None else environ
    env = Env(source)
    environment = env.str("STOCKFOLIO_ENV", "development")
    if environment not in {"development", "production", "test"}:
        raise ConfigError(
            f"STOCKFOLIO_ENV must be development, production or test, got {environment!r}"
        )
    production = environment == "production"
    var_dir = Path(env.str("STOCKFOLIO_VAR_DIR", "var")).resolve()
    prefix = service.upper()
    port = env.int(f"{prefix}_PORT", SERVICE_PORTS.get(service, 0), maximum=65535)
    database_url = env.optional(f"{prefix}_DATABASE_URL") or env.optional("DATABASE_URL")
    if database_url is None:
        if production and database:
            raise ConfigError(f"{prefix}_DATABASE_URL or DATABASE_URL must be set in production")
        database_url = f"sqlite+aiosqlite:///{var_dir / f'{service}.db'}"
    admin_port = env.int(
        f"{prefix}_ADMIN_PORT", port + ADMIN_PORT_OFFSET if port else 0, maximum=65535
    )
    if admin_port > 65535:  # the default, port + 1000, is not range-checked by env.int
        raise ConfigError(
            f"{prefix}_ADMIN_PORT defaults to {prefix}_PORT + {ADMIN_PORT_OFFSET} = {admin_port},"
            f" beyond 65535; set {prefix}_ADMIN_PORT or a lower {prefix}_PORT"
        )
    return RuntimeConfig(
        service=service,
        environment=environment,
        host=env.str(f"{prefix}_HOST", env.str("STOCKFOLIO_HOST", "127.0.0.1")),
        port=port,
        admin_port=admin_port,
        admin_host=env.str("ADMIN_HOST", "127.0.0.1"),
        var_dir=var_dir,
        database_url=database_url,
        redis_url=_redis_url(env.optional("REDIS_URL")),
        token_keys=token_keys(service, source, production=production, var_dir=var_dir)
        if tokens
        else TokenKeys(),
        jwt_issuer=env.str("JWT_ISSUER", "stockfolio"),
        access_token_ttl=env.int("ACCESS_TOKEN_TTL", 900, minimum=5),
        addresses=service_addresses(env),
        log_level=env.str("LOG_LEVEL", "INFO").upper(),
        shutdown_grace=env.float("SHUTDOWN_GRACE", 10.0),
        rpc_deadline=env.float("RPC_DEADLINE", 30.0, minimum=MIN_RPC_DEADLINE),
        session_check_ttl=env.float("SESSION_CHECK_TTL", 2.0),
        trusted_proxies=trusted_networks(env),
        environ=source,
    )
