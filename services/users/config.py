"""The users service's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import Env, RuntimeConfig
from services.runtime.ratelimit import Rate, parse_rate


@dataclass(frozen=True)
class UsersConfig:
    runtime: RuntimeConfig
    bcrypt_cost: int
    refresh_token_ttl: int
    admin_email: str | None
    # Failed logins tolerated per account and per client address within the window.
    login_failures_per_account: Rate
    login_failures_per_address: Rate


def load_users_config(
    runtime: RuntimeConfig, environ: Mapping[str, str] | None = None
) -> UsersConfig:
    env = Env(runtime.environ if environ is None else environ)
    admin_email = env.optional("STOCKFOLIO_ADMIN_EMAIL")
    return UsersConfig(
        runtime=runtime,
        # 4 is bcrypt's minimum (tests); 12 is a sound production default on current hardware.
        bcrypt_cost=env.int("BCRYPT_COST", 12, minimum=4, maximum=16),
        refresh_token_ttl=env.int("REFRESH_TOKEN_TTL", 7 * 86400, minimum=60),
        admin_email=admin_email.strip().lower() if admin_email else None,
        login_failures_per_account=parse_rate(
            "LOGIN_FAILURES_PER_ACCOUNT", env.str("LOGIN_FAILURES_PER_ACCOUNT", "5/15minutes")
        ),
        login_failures_per_address=parse_rate(
            "LOGIN_FAILURES_PER_IP", env.str("LOGIN_FAILURES_PER_IP", "20/15minutes")
        ),
    )
