"""The users service's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.config import Env, RuntimeConfig
from services.runtime.ratelimit import parse_rate
from services.users.budgets import Allowances
from services.users.guard import LoginPolicy


@dataclass(frozen=True)
class UsersConfig:
    runtime: RuntimeConfig
    bcrypt_cost: int
    refresh_token_ttl: int
    # Development and test only: registering with this email makes an admin (production
    # makes admins with `python -m services.users admin create`).
    admin_email: str | None
    # How failed logins slow down the addresses that make them (services/users/guard.py).
    login: LoginPolicy
    # What a caller of this service's own port may spend (services/users/budgets.py).
    allowances: Allowances


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
        login=LoginPolicy(
            free_failures=env.int("LOGIN_FREE_FAILURES", 5, maximum=1000),
            remember=86400.0,
            first_delay=float(env.int("LOGIN_FIRST_DELAY", 1, minimum=1, maximum=3600)),
            max_delay=float(env.int("LOGIN_MAX_DELAY", 900, minimum=1, maximum=86400)),
            per_address=parse_rate(
                "LOGIN_FAILURES_PER_IP", env.str("LOGIN_FAILURES_PER_IP", "20/15minutes")
            ),
            per_account=parse_rate(
                "LOGIN_FAILURES_PER_ACCOUNT",
                env.str("LOGIN_FAILURES_PER_ACCOUNT", "20/15minutes"),
            ),
        ),
        allowances=Allowances(
            # A person registers once; a team signing up together behind one office address, a
            # hundred times at most in an hour.
            registrations_per_address=parse_rate(
                "REGISTRATIONS_PER_IP", env.str("REGISTRATIONS_PER_IP", "100/hour")
            ),
            # A login a second to one account, all minute, is more than any person's devices.
            logins_per_account=parse_rate(
                "LOGINS_PER_ACCOUNT", env.str("LOGINS_PER_ACCOUNT", "60/minute")
            ),
            # As generous as the facade's own budget per address on login, register and
            # refresh together (RATE_LIMIT_AUTH). Without it, the accounts one address held
            # (registered over days, or elsewhere) would each log in 60 times a minute.
            logins_per_address=parse_rate(
                "LOGINS_PER_IP", env.str("LOGINS_PER_IP", "500/15minutes")
            ),
            # A session refreshes once per ACCESS_TOKEN_TTL (15 min) and at each page load.
            refreshes_per_account=parse_rate(
                "REFRESHES_PER_ACCOUNT", env.str("REFRESHES_PER_ACCOUNT", "60/minute")
            ),
            # A person changes their password a few times a year; ten an hour leaves room for
            # second thoughts. Each costs two bcrypt operations and ends the other sessions.
            password_changes_per_account=parse_rate(
                "PASSWORD_CHANGES_PER_ACCOUNT", env.str("PASSWORD_CHANGES_PER_ACCOUNT", "10/hour")
            ),
            # A service asks about a session at most once per SESSION_CHECK_TTL (2 s), while
            # its token is in its last 30 s or, for the terminal's shells, past it: 600 a minute
            # is 20 (session, service replica) pairs asking all minute long, well above a
            # user's devices.
            session_checks_per_account=parse_rate(
                "SESSION_CHECKS_PER_USER", env.str("SESSION_CHECKS_PER_USER", "600/minute")
            ),
        ),
    )
