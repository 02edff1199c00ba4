"""Channels are configured through gRPC's own service config, from what the protos declare:
round robin over replicas, health-checked subchannels, retries only where the RPC is safe to
repeat, and a default deadline."""

from __future__ import annotations

import json
from typing import Any

import pytest
from stockfolio.portfolio.v1 import portfolio_pb2
from stockfolio.users.v1 import users_pb2

from services.runtime.channels import (
    KEEPALIVE_TIME_MS,
    RETRY_POLICY,
    SERVER_KEEPALIVE_OPTIONS,
    channel_options,
    channel_target,
    service_config,
)
from services.runtime.descriptors import MethodRule, method_rules

USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
PORTFOLIO = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


def test_one_ip_replica_is_an_ipv4_target() -> None:
    assert channel_target(["127.0.0.1:4120"]) == "ipv4:127.0.0.1:4120"


def test_several_ip_replicas_share_one_target() -> None:
    assert channel_target(["10.0.0.1:4120", "10.0.0.2:4121"]) == "ipv4:10.0.0.1:4120,10.0.0.2:4121"


def test_ipv6_replicas_are_an_ipv6_target() -> None:
    assert channel_target(["[::1]:4120", "[::1]:4121"]) == "ipv6:[::1]:4120,[::1]:4121"


def test_one_dns_name_resolves_through_dns() -> None:
    assert channel_target(["users.stockfolio.svc:4120"]) == "dns:///users.stockfolio.svc:4120"


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.1:4120", "users:4120"],
        ["users-a:4120", "users-b:4120"],
        ["10.0.0.1:4120", "[::1]:4120"],
        [],
    ],
)
def test_mixed_or_missing_replicas_are_refused(addresses: list[str]) -> None:
    with pytest.raises(ValueError, match=r"replica|address"):
        channel_target(addresses)


def config_for(*services: Any, deadline: float = 30.0) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(service_config(services, deadline=deadline))
    return loaded


def retried_methods(config: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (name["service"], name.get("method", "*"))
        for entry in config.get("methodConfig", [])
        if "retryPolicy" in entry
        for name in entry["name"]
    }


def test_service_config_balances_round_robin_over_health_checked_replicas() -> None:
    config = config_for(USERS)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "stockfolio.users.v1.UsersService"}


def test_retries_cover_exactly_the_methods_safe_to_repeat() -> None:
    retried = retried_methods(config_for(USERS))
    users = "stockfolio.users.v1.UsersService"
    assert retried == {
        ("grpc.health.v1.Health", "*"),
        (users, "ValidateToken"),
        (users, "CheckSession"),
        (users, "GetMe"),
        (users, "ListUsers"),
        (users, "GetUser"),
        (users, "ListAccountDeletions"),
    }
    for unsafe in ("Login", "Register", "Refresh", "Logout", "UpdateUser", "DeleteUser"):
        assert (users, unsafe) not in retried


def test_the_retry_policy_is_three_attempts_with_exponential_backoff_on_unavailable() -> None:
    (policy,) = [e["retryPolicy"] for e in config_for(USERS)["methodConfig"] if "retryPolicy" in e]
    assert policy == RETRY_POLICY
    assert policy["maxAttempts"] == 3
    assert policy["backoffMultiplier"] > 1
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_every_unary_method_gets_the_default_deadline() -> None:
    config = config_for(USERS, PORTFOLIO, deadline=12.5)
    timed = [e for e in config["methodConfig"] if "timeout" in e]
    assert {entry["timeout"] for entry in timed} == {"12.500s"}
    service_wide = [n for e in timed for n in e["name"] if "method" not in n]
    assert {n["service"] for n in service_wide} == {
        "grpc.health.v1.Health",
        "stockfolio.users.v1.UsersService",
        "stockfolio.portfolio.v1.PortfolioService",
    }


def test_streaming_methods_get_no_deadline_and_keep_their_retries() -> None:
    config = config_for(PORTFOLIO, deadline=12.5)
    untimed = {
        n["method"]: "retryPolicy" in e
        for e in config["methodConfig"]
        if "timeout" not in e
        for n in e["name"]
    }
    # The export is safe to repeat (retried until its first message); the feeds are not.
    assert untimed == {
        "ExportPortfolio": True,
        "StreamMarket": False,
        "StreamPortfolioEvents": False,
    }


def test_no_method_is_named_twice_in_the_service_config() -> None:
    # gRPC rejects a whole service config that names one method in two entries.
    config = config_for(USERS, PORTFOLIO)
    names = [json.dumps(n, sort_keys=True) for e in config["methodConfig"] for n in e["name"]]
    assert len(names) == len(set(names))


def test_method_rules_read_auth_and_idempotency_from_the_protos() -> None:
    rules = method_rules([USERS])
    base = "/stockfolio.users.v1.UsersService/"
    assert rules[base + "Login"] == MethodRule(public=True, required_role="", idempotent=False)
    assert rules[base + "Register"].public
    assert rules[base + "Refresh"].public
    assert rules[base + "ListUsers"] == MethodRule(
        public=False, required_role="admin", idempotent=True
    )
    assert rules[base + "GetMe"] == MethodRule(public=False, required_role="", idempotent=True)
    assert rules[base + "Logout"] == MethodRule(public=False, required_role="", idempotent=False)
    assert len(rules) == len(USERS.methods)


def test_no_portfolio_rpc_is_public() -> None:
    rules = method_rules([PORTFOLIO])
    assert rules, "the portfolio service declares RPCs"
    assert not any(rule.public for rule in rules.values())


def test_a_probe_channel_sees_not_serving_replicas_and_never_retries() -> None:
    config = json.loads(service_config([USERS], deadline=30, probe=True))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert "healthCheckConfig" not in config, "a probe must reach a NOT_SERVING replica"
    assert retried_methods(config) == set()


def test_servers_accept_the_pings_our_channels_send() -> None:
    """A server refuses pings closer than its minimum (gRPC: 5 minutes) and, at the third,
    closes the connection with GOAWAY "too_many_pings", failing every call on it; the fuzzer
    met that as a 503 while a quiet market stream shared the connection."""
    channel = dict(channel_options([], deadline=30.0, probe=False))
    server = dict(SERVER_KEEPALIVE_OPTIONS)
    assert channel["grpc.keepalive_time_ms"] == KEEPALIVE_TIME_MS
    assert (
        server["grpc.http2.min_ping_interval_without_data_ms"] < channel["grpc.keepalive_time_ms"]
    )
    assert server["grpc.keepalive_permit_without_calls"] == 1
    assert channel["grpc.http2.max_pings_without_data"] == 0
