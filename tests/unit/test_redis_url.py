"""REDIS_URL's namespace: split from the URL, checked at configuration."""

from __future__ import annotations

import pytest

from services.runtime.config import ConfigError, load_runtime_config
from services.runtime.redis_url import split_namespace


def test_a_url_without_a_namespace_is_left_as_it_is() -> None:
    url = "redis://:secret@cache.internal:6379/2?socket_keepalive=true"
    assert split_namespace(url) == (url, "")


def test_the_namespace_is_taken_out_and_the_other_parameters_kept() -> None:
    assert split_namespace("rediss://h:6380/3?namespace=team-a&ssl_cert_reqs=none") == (
        "rediss://h:6380/3?ssl_cert_reqs=none",
        "team-a",
    )
    assert split_namespace("redis://h/0?namespace=prod.eu_1") == ("redis://h/0", "prod.eu_1")


@pytest.mark.parametrize("bad", ["", "a b", "a:b", "x" * 65, "é"])
def test_a_namespace_of_other_characters_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        split_namespace(f"redis://h/0?namespace={bad}")


def test_the_configuration_refuses_a_bad_namespace_naming_redis_url(tmp_path: object) -> None:
    environ = {
        "STOCKFOLIO_ENV": "test",
        "STOCKFOLIO_VAR_DIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:6379/0?namespace=no:colons",
    }
    with pytest.raises(ConfigError, match="REDIS_URL's namespace"):
        load_runtime_config("users", environ, database=False, tokens=False)
    environ["REDIS_URL"] = "redis://127.0.0.1:6379/0?namespace=ok"
    config = load_runtime_config("users", environ, database=False, tokens=False)
    assert config.redis_url == "redis://127.0.0.1:6379/0?namespace=ok"
