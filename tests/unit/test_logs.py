"""Structured logs: one JSON object per line, carrying the service and the correlation id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from services.runtime.context import correlation_id
from services.runtime.logs import JsonFormatter, configure_logging


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the JSON formatter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("portfolio"))
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, buffer
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def events(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = buffer.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def test_each_event_is_one_json_line_with_service_level_msg_and_correlation_id(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    token = correlation_id.set("req-42")
    try:
        logger.info("trade %s recorded", "t-1", extra={"portfolioId": "p-9", "quantity": 3})
        logger.warning("second\nline")
    finally:
        correlation_id.reset(token)
    first, second = events(buffer)
    assert first["service"] == "portfolio"
    assert first["level"] == "info"
    assert first["msg"] == "trade t-1 recorded"
    assert first["correlationId"] == "req-42"
    assert first["logger"] == "tests.logs"
    assert (first["portfolioId"], first["quantity"]) == ("p-9", 3)
    assert first["ts"].endswith("+00:00")
    assert (second["level"], second["msg"]) == ("warning", "second\nline")
    assert len(buffer.getvalue().splitlines()) == 2, "a newline in a message stays inside its line"


def test_without_a_correlation_id_the_field_is_absent(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    logger.info("startup")
    (event,) = events(buffer)
    assert "correlationId" not in event
    assert "exc" not in event


def test_an_exception_is_included_with_its_traceback(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    try:
        raise ValueError("quantity must be positive")
    except ValueError:
        logger.exception("trade rejected")
    (event,) = events(buffer)
    assert event["level"] == "error"
    assert event["msg"] == "trade rejected"
    assert "Traceback" in event["exc"]
    assert "ValueError: quantity must be positive" in event["exc"]


def test_fields_that_are_not_json_are_written_as_text(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    logger.info("priced", extra={"price": Decimal("187.42"), "symbols": {"AAPL"}})
    (event,) = events(buffer)
    assert event["price"] == "187.42"
    assert event["symbols"] == "{'AAPL'}"


def test_configure_logging_writes_json_to_stdout_and_quietens_library_chatter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("users", "DEBUG")
        logging.getLogger("services.users").debug("hello", extra={"userId": "u-1"})
        logging.getLogger("aiohttp.access").info("GET /health 200")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["hello"]
    assert json.loads(lines[0])["userId"] == "u-1"
    assert json.loads(lines[0])["service"] == "users"
