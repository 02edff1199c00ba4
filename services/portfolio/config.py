"""The portfolio service's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.portfolio.market_data import MarketConfig, load_market_config
from services.runtime.config import Env, RuntimeConfig
from services.runtime.idempotency import DEFAULT_TTL


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
    )
