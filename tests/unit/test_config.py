"""The runtime configuration: read once from the environment, validated with messages that name
the variable, a database URL required in production. (Token keys: test_token_keys.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.config import (
    ConfigError,
    Env,
    RuntimeConfig,
    load_runtime_config,
)
from tests.conftest import token_environment


def load(service: str, tmp_path: Path, **environ: str) -> RuntimeConfig:
    base = {"STOCKFOLIO_VAR_DIR": str(tmp_path / "var"), **token_environment(service)}
    return load_runtime_config(service, {**base, **environ})


def test_production_refuses_to_start_without_a_database_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load("portfolio", tmp_path, STOCKFOLIO_ENV="production")
    assert "PORTFOLIO_DATABASE_URL" in str(raised.value)
    assert "DATABASE_URL" in str(raised.value)


def test_production_starts_with_its_keys_and_database_url(tmp_path: Path) -> None:
    config = load(
        "portfolio",
        tmp_path,
        STOCKFOLIO_ENV="production",
        DATABASE_URL="postgresql://db/shared",
        PORTFOLIO_DATABASE_URL="postgresql://db/portfolio",
    )
    assert config.production
    assert config.token_keys.users
    assert config.database_url == "postgresql://db/portfolio", "the service's own URL wins"


def test_development_defaults_to_one_sqlite_file_per_service_under_var(tmp_path: Path) -> None:
    config = load("portfolio", tmp_path)
    assert config.environment == "development"
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / 'var' / 'portfolio.db'}"


def test_an_unknown_environment_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STOCKFOLIO_ENV"):
        load("users", tmp_path, STOCKFOLIO_ENV="prod")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("USERS_PORT", "forty"),
        ("USERS_PORT", "70000"),
        ("USERS_PORT", "-1"),
        ("ACCESS_TOKEN_TTL", "1"),
        ("SHUTDOWN_GRACE", "soon"),
        ("RPC_DEADLINE", "0"),
        ("USERS_ADMIN_PORT", "4.5"),
    ],
)
def test_malformed_numbers_name_their_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable) as raised:
        load("users", tmp_path, **{variable: value})
    assert value.lstrip("-") in str(raised.value) or "between" in str(raised.value)


@pytest.mark.parametrize("value", ["maybe", "2", "yes please"])
def test_malformed_booleans_name_their_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="USE_MOCK_PRICES") as raised:
        Env({"USE_MOCK_PRICES": value}).bool("USE_MOCK_PRICES", True)
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" on ", True), ("no", False), ("0", False), ("", True)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    assert Env({"FLAG": raw}).bool("FLAG", True) is expected


@pytest.mark.parametrize("address", ["users", "users:", ":4120", "users:http"])
def test_a_malformed_replica_address_names_the_variable(tmp_path: Path, address: str) -> None:
    with pytest.raises(ConfigError, match="USERS_ADDRS") as raised:
        load("portfolio", tmp_path, USERS_ADDRS=f"127.0.0.1:4120,{address}")
    assert repr(address) in str(raised.value)


def test_service_addrs_lists_every_replica(tmp_path: Path) -> None:
    config = load(
        "portfolio",
        tmp_path,
        USERS_ADDRS=" 10.0.0.1:4120, 10.0.0.2:4120 ,,[::1]:4121",
        TERMINAL_PORT="5140",
    )
    assert config.addresses["users"] == ("10.0.0.1:4120", "10.0.0.2:4120", "[::1]:4121")
    assert config.addresses["terminal"] == ("127.0.0.1:5140",), "else one replica on its port"
    assert config.addresses["workspace"] == ("127.0.0.1:4150",)
    assert set(config.addresses) == {"users", "assistant", "terminal", "workspace", "portfolio"}


def test_admin_port_is_the_grpc_port_plus_1000(tmp_path: Path) -> None:
    assert load("portfolio", tmp_path).admin_port == 5160
    moved = load("users", tmp_path, USERS_PORT="4700")
    assert (moved.port, moved.admin_port) == (4700, 5700)
    explicit = load("users", tmp_path, USERS_ADMIN_PORT="9999")
    assert (explicit.port, explicit.admin_port) == (4120, 9999)


def test_a_grpc_port_whose_admin_port_would_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="USERS_ADMIN_PORT"):
        load("users", tmp_path, USERS_PORT="65000")


@pytest.mark.parametrize("value", ["0", "1", "4.9"])
def test_an_rpc_deadline_too_short_for_grpc_service_configs_is_refused(
    tmp_path: Path, value: str
) -> None:
    # grpcio starts a service-config timeout's clock early: short ones failed every call.
    with pytest.raises(ConfigError, match=r"RPC_DEADLINE must be at least 5\.0"):
        load("users", tmp_path, RPC_DEADLINE=value)
    assert load("users", tmp_path, RPC_DEADLINE="5").rpc_deadline == 5.0


def test_port_zero_also_picks_a_free_admin_port(tmp_path: Path) -> None:
    config = load("users", tmp_path, USERS_PORT="0")
    assert (config.port, config.admin_port) == (0, 0)


def test_defaults_match_the_documented_ports_and_timeouts(tmp_path: Path) -> None:
    config = load("users", tmp_path)
    assert (config.host, config.port) == ("127.0.0.1", 4120)
    assert config.redis_url is None
    assert config.rpc_deadline == 30.0
    assert config.jwt_issuer == "stockfolio"
    assert config.log_level == "INFO"
