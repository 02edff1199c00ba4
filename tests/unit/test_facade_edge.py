"""The facade's edge rules: status table, circuit breaker, config, client addresses."""

from __future__ import annotations

import ipaddress

import grpc
import pytest
from aiohttp.test_utils import make_mocked_request

from facade.breaker import CircuitBreaker
from facade.config import load_facade_config
from facade.envelope import ApiError, from_rpc_error
from facade.limits import client_ip
from services.runtime.config import ConfigError
from services.runtime.errors import AlreadyExists, DomainError, InvalidArgument, ResourceExhausted
from services.runtime.status import internal_status, to_status
from tests.conftest import token_environment

BASE = {"STOCKFOLIO_ENV": "test", **token_environment("facade")}


def rpc_error(code: grpc.StatusCode, details: str, trailers: tuple[object, ...] = ()) -> object:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)


def from_domain(error: DomainError) -> ApiError:
    code, message, trailers = to_status(error)
    return from_rpc_error(rpc_error(code, message, trailers), "portfolio")


# --- the status table ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.INVALID_ARGUMENT, 422),
        (grpc.StatusCode.FAILED_PRECONDITION, 422),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.OUT_OF_RANGE, 500),
    ],
)
def test_grpc_codes_map_to_http_statuses_by_the_one_table(
    code: grpc.StatusCode, status: int
) -> None:
    error = from_rpc_error(rpc_error(code, "said by the service"), "users")
    assert error.status == status
    assert error.code == (code.name if status != 500 else "INTERNAL")


def test_a_500_never_carries_the_services_own_text() -> None:
    code, _, trailers = internal_status()
    error = from_rpc_error(
        rpc_error(code, "KeyError: 'password_hash' at repository.py:42", trailers),
        "users",
    )
    assert (error.status, error.code, error.message) == (500, "INTERNAL", "internal error")


def test_the_services_reason_and_field_violations_become_the_error() -> None:
    error = from_domain(InvalidArgument("bad input", fields=[("name", "is required")]))
    assert (error.status, error.code, error.message) == (422, "VALIDATION_ERROR", "bad input")
    assert error.fields == [("name", "is required")]
    assert error.service == "portfolio"
    taken = from_domain(AlreadyExists("taken", reason="EMAIL_TAKEN"))
    assert (taken.status, taken.code) == (409, "EMAIL_TAKEN")


def test_retry_info_becomes_retry_after() -> None:
    error = from_domain(ResourceExhausted("slow down", retry_after=2.5))
    assert (error.status, error.code, error.retry_after) == (429, "RATE_LIMITED", 2.5)


def test_an_unreachable_service_is_named_without_grpc_internals() -> None:
    raw = "failed to connect to all addresses; last error: ipv4:10.1.2.3:4160: Connection refused"
    error = from_rpc_error(
        rpc_error(grpc.StatusCode.UNAVAILABLE, raw),
        "portfolio",
    )
    assert error.status == 503
    assert error.message == "the portfolio service is unavailable; retry shortly"
    assert error.service == "facade"
    late = from_rpc_error(
        rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        "assistant",
    )
    assert (late.status, late.message) == (504, "the assistant service did not answer in time")


def test_a_cancelled_call_is_499() -> None:
    error = from_rpc_error(rpc_error(grpc.StatusCode.CANCELLED, "x"), "users")
    assert error.status == 499


# --- the circuit breaker -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tripped(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker("portfolio", threshold=5, cooldown=5.0, clock=clock)
    for _ in range(5):
        breaker.admit()
        breaker.record(reached=False)
    return breaker


def test_the_breaker_opens_after_five_unreached_calls_and_fails_fast() -> None:
    breaker = tripped(Clock())
    assert breaker.state == "open"
    with pytest.raises(ApiError) as caught:
        breaker.admit()
    assert (caught.value.status, caught.value.code) == (503, "SERVICE_UNAVAILABLE")
    assert "portfolio" in caught.value.message
    assert caught.value.retry_after == 5.0


def test_any_answer_resets_the_count() -> None:
    breaker = CircuitBreaker("users", threshold=5, clock=Clock())
    for _ in range(4):
        breaker.record(reached=False)
    breaker.record(reached=True)  # an error the service itself returned counts as an answer
    for _ in range(4):
        breaker.record(reached=False)
    assert breaker.state == "closed"
    breaker.admit()


def test_after_the_cooldown_one_trial_goes_through_and_others_wait() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 5.0
    assert breaker.state == "half-open"
    breaker.admit()  # the trial
    with pytest.raises(ApiError):
        breaker.admit()  # a second caller while the trial is out


def test_a_successful_trial_closes_the_circuit() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 5.0
    breaker.admit()
    breaker.record(reached=True)
    assert breaker.state == "closed"
    breaker.admit()


def test_a_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 5.0
    breaker.admit()
    breaker.record(reached=False)
    assert breaker.state == "open"
    clock.now += 4.9
    with pytest.raises(ApiError):
        breaker.admit()


def test_an_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 5.0
    breaker.admit()
    breaker.abandon()
    breaker.admit()


# --- config --------------------------------------------------------------------------------


def test_defaults_follow_the_design() -> None:
    config = load_facade_config(BASE)
    assert config.port == 4110
    assert config.frontend_origins == ("http://localhost:4100", "http://127.0.0.1:4100")
    assert (config.rate_limit_auth.limit, config.rate_limit_auth.window) == (500, 900.0)
    assert (config.rate_limit_api.limit, config.rate_limit_api.window) == (6000, 60.0)
    assert config.max_body_bytes == 10 * 1024 * 1024
    assert config.trust_proxy is False


def test_several_origins_and_zero_rates() -> None:
    config = load_facade_config(
        {
            **BASE,
            "FRONTEND_URL": "https://app.example.com/, http://localhost:4100",
            "RATE_LIMIT_API": "0",
            "TRUST_PROXY": "true",
        }
    )
    assert config.frontend_origins == ("https://app.example.com", "http://localhost:4100")
    assert config.rate_limit_api.unlimited
    assert config.trust_proxy


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRONTEND_URL", "*"),
        ("FRONTEND_URL", "localhost:4100"),
        ("FRONTEND_URL", "https://app.example.com/login"),
        ("RATE_LIMIT_AUTH", "lots"),
        ("RATE_LIMIT_API", "10/fortnight"),
        ("MAX_BODY_BYTES", "ten"),
        ("TRUST_PROXY", "maybe"),
    ],
)
def test_bad_values_are_errors_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_facade_config({**BASE, name: value})


# --- the client address ------------------------------------------------------------------


def request_from(remote: str, forwarded: str | None = None) -> object:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return make_mocked_request("GET", "/", headers=headers).clone(remote=remote)


PROXY = (ipaddress.ip_network("10.0.0.0/8"),)


def test_the_client_ip_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    request = request_from("10.0.0.5", "203.0.113.9, 198.51.100.1, 10.0.0.1")
    assert client_ip(request, ()) == "10.0.0.5"  # type: ignore[arg-type]
    # Right-most untrusted: the client may have written 203.0.113.9 itself.
    assert client_ip(request, PROXY) == "198.51.100.1"  # type: ignore[arg-type]
    spoofed = request_from("198.51.100.1", "203.0.113.9")
    assert client_ip(spoofed, PROXY) == "198.51.100.1"  # type: ignore[arg-type]


def test_a_garbled_forwarded_header_falls_back_to_the_peer() -> None:
    request = request_from("10.0.0.5", "not-an-ip")
    assert client_ip(request, PROXY) == "10.0.0.5"  # type: ignore[arg-type]
