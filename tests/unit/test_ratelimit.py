"""Rate rules as written in the environment: `500/15minutes`, `6000/minute`, `0` (off)."""

from __future__ import annotations

import pytest

from services.runtime.config import ConfigError
from services.runtime.ratelimit import Rate, parse_rate


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("500/15minutes", Rate(500, 900.0)),
        ("6000/minute", Rate(6000, 60.0)),
        ("10/second", Rate(10, 1.0)),
        ("10/seconds", Rate(10, 1.0)),
        ("100/2hours", Rate(100, 7200.0)),
        ("1000/day", Rate(1000, 86400.0)),
        (" 5 / 15 Minutes ", Rate(5, 900.0)),
    ],
)
def test_rates_read_as_hits_per_window(text: str, rate: Rate) -> None:
    assert parse_rate("RATE_LIMIT_API", text) == rate
    assert not rate.unlimited


@pytest.mark.parametrize("text", ["0", " 0 "])
def test_zero_turns_a_limit_off(text: str) -> None:
    assert parse_rate("RATE_LIMIT_AUTH", text).unlimited


@pytest.mark.parametrize(
    "text",
    ["", "500", "500/", "/minute", "500/fortnight", "-5/minute", "5.5/minute", "five/minute"],
)
def test_a_malformed_rate_names_its_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="RATE_LIMIT_AUTH") as raised:
        parse_rate("RATE_LIMIT_AUTH", text)
    assert repr(text) in str(raised.value)


def test_a_window_of_zero_length_is_refused() -> None:
    with pytest.raises(ConfigError, match="RATE_LIMIT_API"):
        parse_rate("RATE_LIMIT_API", "500/0minutes")
