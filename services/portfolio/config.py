"""The portfolio service's settings, its market data's among them, read once from the
environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from services.runtime.account_deletions import DEFAULT_INTERVAL as DEFAULT_PURGE_INTERVAL
from services.runtime.account_deletions import purge_interval
from services.runtime.config import ConfigError, Env, RuntimeConfig
from services.runtime.idempotency import DEFAULT_TTL

DEFAULT_ALPHA_VANTAGE_URL = "https://www.alphavantage.co/query"


@dataclass(frozen=True)
class MarketConfig:
    """Where prices come from, read once from the environment. The API key is kept out of
    `repr` so the config can be logged."""

    use_mock_prices: bool
    mock_update_interval_ms: int
    mock_seed: int
    alpha_vantage_api_key: str | None = field(repr=False)
    alpha_vantage_url: str
    alpha_vantage_per_minute: int  # 0: no limit (a premium key)
    alpha_vantage_per_day: int  # 0: no limit
    quote_cache_ttl: float  # seconds

    @property
    def uses_alpha_vantage(self) -> bool:
        return not self.use_mock_prices and self.alpha_vantage_api_key is not None


def load_market_config(environ: Mapping[str, str] | None = None) -> MarketConfig:
    env = Env(os.environ if environ is None else environ)
    url = env.str("ALPHA_VANTAGE_URL", DEFAULT_ALPHA_VANTAGE_URL)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"ALPHA_VANTAGE_URL must be an http(s) URL, got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        # Not echoed: a key pasted into the URL must not reach the logs through this message.
        raise ConfigError(
            "ALPHA_VANTAGE_URL must not carry a query string or credentials;"
            " put the key in ALPHA_VANTAGE_API_KEY"
        )
    api_key = env.optional("ALPHA_VANTAGE_API_KEY")
    return MarketConfig(
        # A key alone selects Alpha Vantage; USE_MOCK_PRICES=true keeps the simulation anyway.
        use_mock_prices=env.bool("USE_MOCK_PRICES", api_key is None),
        mock_update_interval_ms=env.int("MOCK_UPDATE_INTERVAL", 1000, minimum=10),
        mock_seed=env.int("MOCK_SEED", 42),
        alpha_vantage_api_key=api_key,
        alpha_vantage_url=url,
        alpha_vantage_per_minute=env.int("ALPHA_VANTAGE_PER_MINUTE", 5),
        alpha_vantage_per_day=env.int("ALPHA_VANTAGE_PER_DAY", 25),
        quote_cache_ttl=env.float("QUOTE_CACHE_TTL", 60.0, minimum=1.0),
    )


@dataclass(frozen=True)
class PortfolioConfig:
    runtime: RuntimeConfig
    market: MarketConfig
    # Seconds between the calculator's revaluations of every portfolio.
    revalue_interval: float
    # Trade rows one CSV import may hold.
    max_import_rows: int
    # Seconds an Idempotency-Key's first response is kept.
    idempotency_ttl: float
    # Seconds between the savings-plan job's checks for due runs (plan_runner.py).
    plan_interval: float = 60.0
    # Seconds between two reads of the users service's account deletions (erasure.py).
    purge_interval: float = DEFAULT_PURGE_INTERVAL


def load_portfolio_config(
    runtime: RuntimeConfig, environ: Mapping[str, str] | None = None
) -> PortfolioConfig:
    source = runtime.environ if environ is None else environ
    env = Env(source)
    return PortfolioConfig(
        runtime=runtime,
        market=load_market_config(source),
        revalue_interval=env.float("PORTFOLIO_REVALUE_INTERVAL", 60.0, minimum=0.05),
        max_import_rows=env.int("PORTFOLIO_MAX_IMPORT_ROWS", 10_000, minimum=1, maximum=1_000_000),
        idempotency_ttl=env.float("IDEMPOTENCY_TTL", DEFAULT_TTL, minimum=1.0),
        plan_interval=env.float("PORTFOLIO_PLAN_INTERVAL", 60.0, minimum=0.05),
        purge_interval=purge_interval(env),
    )
