"""The assistant's tools: reads of the caller's portfolios, positions, trades, performance and
quotes, through the portfolio service over gRPC with the caller's own token (never a service
token: a tool can read nothing the caller could not read themselves)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.assistant.domain import ToolCall
from services.runtime.context import Identity
from services.runtime.interceptors import outgoing_metadata
from services.runtime.pagination import MAX_LIMIT

log = logging.getLogger(__name__)

# Rows a list tool returns at most: enough to answer, few enough to keep the prompt small.
TOOL_LIST_LIMIT = 50
# Portfolios list_portfolios reads at most for its totals (pages of MAX_LIMIT).
TOTALS_MAX_PORTFOLIOS = 10_000

_PORTFOLIO_ID = {"type": "string", "description": "The portfolio's id (from list_portfolios)."}

# As the Anthropic Messages API takes them (`tools`: name, description, input_schema).
DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "list_portfolios",
        "description": "The user's portfolios with their total value, cost, cash, gain/loss "
        f"and positions (the first {TOOL_LIST_LIMIT}); `count` is how many the user has and "
        "`totalValueByCurrency` the sum of all their values per currency. Money is in decimal "
        "strings.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "get_portfolio",
        "description": "One of the user's portfolios, valued now, with its positions.",
        "input_schema": {
            "type": "object",
            "properties": {"portfolio_id": _PORTFOLIO_ID},
            "required": ["portfolio_id"],
        },
    },
    {
        "name": "list_positions",
        "description": "The open positions of one portfolio: quantity, cost, price, value, "
        "gains, weight.",
        "input_schema": {
            "type": "object",
            "properties": {"portfolio_id": _PORTFOLIO_ID},
            "required": ["portfolio_id"],
        },
    },
    {
        "name": "list_trades",
        "description": "The user's most recent trades, optionally of one portfolio or symbol.",
        "input_schema": {
            "type": "object",
            "properties": {
                "portfolio_id": _PORTFOLIO_ID,
                "symbol": {"type": "string", "description": "A ticker symbol, e.g. AAPL."},
            },
        },
    },
    {
        "name": "get_performance",
        "description": "A portfolio's performance: time- and money-weighted returns, realized "
        "and unrealized gains, dividends, fees.",
        "input_schema": {
            "type": "object",
            "properties": {
                "portfolio_id": _PORTFOLIO_ID,
                "range": {"type": "string", "enum": ["1m", "3m", "6m", "1y", "ytd", "all"]},
            },
            "required": ["portfolio_id"],
        },
    },
    {
        "name": "get_quote",
        "description": "The latest price of a stock symbol.",
        "input_schema": {
            "type": "object",
            "properties": {"symbol": {"type": "string", "description": "e.g. AAPL"}},
            "required": ["symbol"],
        },
    },
]
NAMES = frozenset(d["name"] for d in DEFINITIONS)


class ToolInputError(Exception):
    """The model passed something a tool cannot use; it is told so in the result."""


def _text(arguments: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = arguments.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ToolInputError(f"{name} must be a non-empty string")
    return value.strip()[:100]


def _json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message)


# A tool: its request, read from the model's input, and the portfolio RPC that answers it.
Request = Callable[[Mapping[str, Any]], Message]
Rpc = Callable[..., Awaitable[Message]]
# What runs a tool: the model's input and the caller's metadata in, the result out.
Runner = Callable[[Mapping[str, Any], Sequence[tuple[str, str]]], Awaitable[dict[str, Any]]]


def _one_call(request: Request, rpc: Rpc) -> Runner:
    async def run(args: Mapping[str, Any], metadata: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return _json(await rpc(request(args), metadata=metadata))

    return run


def _value(text: str) -> Decimal:
    try:
        return Decimal(text or "0")
    except InvalidOperation:
        return Decimal(0)


def portfolio_listing(portfolios: Sequence[portfolio_pb2.Portfolio]) -> dict[str, Any]:
    """list_portfolios' result: the first TOOL_LIST_LIMIT portfolios, how many there are, and
    the value of them all per currency (a sum of the listed ones would answer "what am I
    worth?" wrong for a user with more)."""
    totals: dict[str, Decimal] = {}
    for portfolio in portfolios:
        totals[portfolio.currency] = totals.get(portfolio.currency, Decimal(0)) + _value(
            portfolio.total_value
        )
    return {
        "portfolios": [_json(p) for p in portfolios[:TOOL_LIST_LIMIT]],
        "count": len(portfolios),
        "totalValueByCurrency": {c: format(v, "f") for c, v in sorted(totals.items())},
    }


def _list_portfolios(stub: portfolio_pb2_grpc.PortfolioServiceStub) -> Runner:
    async def run(_args: Mapping[str, Any], metadata: Sequence[tuple[str, str]]) -> dict[str, Any]:
        found: dict[str, portfolio_pb2.Portfolio] = {}
        for page in range(1, TOTALS_MAX_PORTFOLIOS // MAX_LIMIT + 1):
            reply = await stub.ListPortfolios(
                portfolio_pb2.ListPortfoliosRequest(page=page, limit=MAX_LIMIT), metadata=metadata
            )
            # By id: one created or deleted between two pages shifts the next by one.
            found.update((p.id, p) for p in reply.portfolios)
            if page >= reply.pagination.total_pages or not reply.portfolios:
                break
        return portfolio_listing(list(found.values()))

    return run


def _get_portfolio_request(args: Mapping[str, Any]) -> Message:
    return portfolio_pb2.GetPortfolioRequest(id=_text(args, "portfolio_id", required=True))


def _list_positions_request(args: Mapping[str, Any]) -> Message:
    return portfolio_pb2.ListPositionsRequest(
        portfolio_id=_text(args, "portfolio_id", required=True), limit=TOOL_LIST_LIMIT
    )


def _list_trades_request(args: Mapping[str, Any]) -> Message:
    return portfolio_pb2.ListTradesRequest(
        portfolio_id=_text(args, "portfolio_id"),
        symbol=_text(args, "symbol").upper(),
        limit=TOOL_LIST_LIMIT,
    )


def _get_performance_request(args: Mapping[str, Any]) -> Message:
    return portfolio_pb2.GetPerformanceRequest(
        portfolio_id=_text(args, "portfolio_id", required=True), range=_text(args, "range")
    )


def _get_quote_request(args: Mapping[str, Any]) -> Message:
    return portfolio_pb2.GetQuoteRequest(symbol=_text(args, "symbol", required=True))


class PortfolioTools:
    """Runs the tools against the portfolio service as the caller."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        stub = portfolio_pb2_grpc.PortfolioServiceStub(channel)
        self._tools: dict[str, Runner] = {
            "list_portfolios": _list_portfolios(stub),
            "get_portfolio": _one_call(_get_portfolio_request, stub.GetPortfolio),
            "list_positions": _one_call(_list_positions_request, stub.ListPositions),
            "list_trades": _one_call(_list_trades_request, stub.ListTrades),
            "get_performance": _one_call(_get_performance_request, stub.GetPerformance),
            "get_quote": _one_call(_get_quote_request, stub.GetQuote),
        }

    @property
    def definitions(self) -> list[dict[str, Any]]:
        return DEFINITIONS

    async def run(self, call: ToolCall, identity: Identity) -> ToolCall:
        """The call with its result; failures are results too (`is_error`), for the model."""
        tool = self._tools.get(call.name)
        if tool is None:
            return call.refused(f"unknown tool {call.name[:64]}")
        try:
            result = await tool(call.input, outgoing_metadata(identity))
        except ToolInputError as error:
            return call.refused(str(error))
        except grpc.aio.AioRpcError as error:
            code: grpc.StatusCode = error.code()
            log.info("tool failed", extra={"tool": call.name, "code": code.name})
            failure = {"error": error.details() or code.name.lower(), "code": code.name}
            return dataclasses.replace(call, result=failure, is_error=True)
        return dataclasses.replace(call, result=result, is_error=False)
