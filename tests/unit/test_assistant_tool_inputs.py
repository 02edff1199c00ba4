"""What the assistant reads that a model or an older version wrote: a tool's input must be a
JSON object whose numbers a double holds (a protobuf Struct keeps numbers as doubles; 1e999
and a number of 400 digits are valid JSON all the same), stored calls are read back with such
numbers as their text; and list_portfolios' result, whose totals count every portfolio while
it lists the first TOOL_LIST_LIMIT, as the offline answer says them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.protobuf import struct_pb2
from stockfolio.portfolio.v1 import portfolio_pb2

from services.assistant.domain import parse_tool_input, read_stored_json
from services.assistant.offline import offline_answer
from services.assistant.tools import TOOL_LIST_LIMIT, portfolio_listing


def test_a_tool_input_of_ordinary_json_is_read_as_it_is() -> None:
    given = '{"symbol": "KO", "limit": 3, "ratio": -1.5e300, "big": 1' + "0" * 300 + "}"
    assert parse_tool_input(given) == {
        "symbol": "KO",
        "limit": 3,
        "ratio": -1.5e300,
        "big": 10**300,
    }
    assert parse_tool_input("") == {}


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ('{"symbol": 1e999}', "1e999 is not a finite number within a double's range"),
        ('{"symbol": -1E400}', "-1E400 is not a finite number"),
        ('{"a": [' + "9" * 401 + "]}", "999999999999999999999999… is not a finite number"),
        ('{"a": ' + "9" * 5000 + "}", "999999999999999999999999… is not a finite number"),
        ('{"a": NaN}', "NaN is not a finite number"),
        ('{"a": -Infinity}', "-Infinity is not a finite number"),
        ('{"a": ', "the input is not valid JSON: Expecting value"),
        ("[1, 2]", "the input must be a JSON object"),
        ("[" * 100_000, "the input is nested too deeply"),
        # A Struct is two protobuf levels a JSON level, and protobuf reads 100: 40 was valid
        # JSON that broke the answer when it was sent on.
        ('{"x": ' + '{"a": ' * 40 + "1" + "}" * 41, "nested deeper than 32 levels"),
        ('{"x": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32 levels"),
        # A lone surrogate is valid JSON, and no UTF-8 text (nor a Struct) holds it.
        ('{"symbol": "\\ud800"}', "a string that is not valid Unicode text"),
        ('{"\\udc00": 1}', "a string that is not valid Unicode text"),
    ],
)
def test_a_tool_input_no_struct_can_hold_is_refused_saying_why(given: str, said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        parse_tool_input(given)


def test_a_tool_input_as_deep_as_a_struct_holds_is_read() -> None:
    deepest = '{"x": ' + '{"a": ' * 30 + "1" + "}" * 31
    value = parse_tool_input(deepest)
    for _ in range(31):
        value = value["x"] if "x" in value else value["a"]
    assert value == 1


def test_a_stored_call_is_read_back_with_numbers_no_double_holds_as_their_text() -> None:
    stored = '[{"input": {"a": Infinity, "b": NaN, "c": 1e999, "d": ' + "7" * 401 + ', "e": 2}}]'
    read = read_stored_json(stored)
    assert read == [{"input": {"a": "Infinity", "b": "NaN", "c": "1e999", "d": "7" * 401, "e": 2}}]
    struct_pb2.Struct().update(read[0]["input"])  # what GetSession does with it


def _portfolio(number: int, currency: str, value: str) -> portfolio_pb2.Portfolio:
    return portfolio_pb2.Portfolio(
        id=f"p{number}", name=f"P{number:02d}", currency=currency, total_value=value
    )


def test_the_portfolio_listing_totals_them_all_and_lists_the_first_fifty() -> None:
    portfolios = [_portfolio(n, "USD", f"{100 + n}.25") for n in range(60)]
    portfolios.append(_portfolio(60, "JPY", "1000000"))
    listing = portfolio_listing(portfolios)
    assert listing["count"] == 61
    assert [p["name"] for p in listing["portfolios"]] == [f"P{n:02d}" for n in range(50)]
    assert len(listing["portfolios"]) == TOOL_LIST_LIMIT
    dollars = sum(100 + n for n in range(60)) + 60 * 0.25
    assert listing["totalValueByCurrency"] == {"JPY": "1000000", "USD": f"{dollars:.2f}"}


def test_the_offline_answer_says_the_total_of_every_portfolio_and_how_many_are_not_listed() -> None:
    listed: list[dict[str, Any]] = [
        {"name": "Core", "currency": "USD", "totalValue": "100", "positions": []},
        {"name": "Side", "currency": "USD", "totalValue": "50", "positions": []},
    ]
    totals = {"USD": "1150.5", "EUR": "20"}
    worth = offline_answer("what am I worth?", listed, count=5, totals=totals)
    assert "Your portfolios are worth 20.00 EUR and 1,150.50 USD in total:" in worth
    assert worth.endswith(
        "- Side: 50.00 USD (cash 0.00, gain/loss 0.00)\n- and 3 more portfolios, not listed here"
    )
    held = offline_answer("what do I hold?", listed, count=3, totals=totals)
    assert held.endswith("- Side: no open positions\n- and 1 more portfolio, not listed here")
    assert "not listed" not in offline_answer("worth?", listed, count=2, totals=totals)
