"""gRPC servicer of PortfolioService: request -> use case -> response. Thin by design.

Creating RPCs (CreatePortfolio, CreateTrade, CreatePosition, ImportTrades) run through the
idempotency store: a retry with the same `Idempotency-Key` gets the first response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from google.api import httpbody_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from stockfolio.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.portfolio.alerts import Alerts
from services.portfolio.allocation_rpcs import AllocationRpcs
from services.portfolio.allocations import Allocations
from services.portfolio.domain import CostMethod, Side
from services.portfolio.events import EventHub
from services.portfolio.exchange import Exchange
from services.portfolio.exports import Exports
from services.portfolio.exposure import Exposures
from services.portfolio.exposure_rpcs import ExposureRpcs
from services.portfolio.fx_rpcs import FxRpcs
from services.portfolio.imports import Imported, Imports
from services.portfolio.income_reports import IncomeReports
from services.portfolio.income_rpcs import IncomeRpcs
from services.portfolio.market_data import MarketData
from services.portfolio.messages import (
    PROTO_TO_KIND,
    PROTO_TO_METHOD,
    PROTO_TO_SIDE,
    performance_message,
    portfolio_message,
    position_message,
    quote_message,
    realized_gains_message,
    split_message,
    stock_history_message,
    stock_message,
    trade_message,
)
from services.portfolio.order_desk import Orders
from services.portfolio.order_rpcs import OrderRpcs
from services.portfolio.overview import Overviews
from services.portfolio.overview_rpcs import OverviewRpcs
from services.portfolio.periods import period_of
from services.portfolio.plan_desk import Plans
from services.portfolio.plan_rpcs import PlanRpcs
from services.portfolio.portfolios import PortfolioChanges, PortfolioDraft, Portfolios, Valued
from services.portfolio.realized import RealizedGains
from services.portfolio.records import RecordedTrade
from services.portfolio.reports import Reports
from services.portfolio.repository import TradeFilter
from services.portfolio.split_rpcs import SplitRpcs
from services.portfolio.splits import Splits
from services.portfolio.stocks import StockHistories, search_stocks, stock_details
from services.portfolio.trade_deletion import TradeDeletion
from services.portfolio.trade_edits import TradeChanges, TradeEdits
from services.portfolio.trades import Opened, TradeDraft, Trades
from services.portfolio.watch_rpcs import WatchRpcs
from services.portfolio.watchlists import Watchlists
from services.runtime.errors import InvalidArgument
from services.runtime.idempotency import IdempotencyStore
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of


@dataclass(frozen=True)
class UseCases:
    portfolios: Portfolios
    trades: Trades
    imports: Imports
    exports: Exports
    reports: Reports
    market: MarketData
    hub: EventHub
    idempotency: IdempotencyStore
    orders: Orders
    histories: StockHistories
    splits: Splits
    deletion: TradeDeletion
    edits: TradeEdits
    realized: RealizedGains
    allocations: Allocations
    income: IncomeReports
    overviews: Overviews
    exposures: Exposures
    plans: Plans
    exchange: Exchange
    watchlists: Watchlists | None = None
    alerts: Alerts | None = None


def _when(stamp: Timestamp, present: bool, field: str) -> datetime | None:
    """The time a request gives, if any; one outside the years 1-9999 (only a gRPC caller can
    send one) is the caller's error, not a ValueError deep in the handler."""
    if not present:
        return None
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument.field(field, "must be a time in the years 1 to 9999") from None


def _side(value: portfolio_pb2.TradeSide.ValueType) -> Side | None:
    return PROTO_TO_SIDE.get(value)


def _valued(valued: Valued) -> portfolio_pb2.Portfolio:
    return portfolio_message(valued.portfolio, valued.totals, valued.positions, valued.listed)


M = TypeVar("M", bound=Message)


class PortfolioServicer(
    OrderRpcs,
    WatchRpcs,
    FxRpcs,
    SplitRpcs,
    AllocationRpcs,
    IncomeRpcs,
    OverviewRpcs,
    ExposureRpcs,
    PlanRpcs,
    portfolio_pb2_grpc.PortfolioServiceServicer,
):
    def __init__(self, cases: UseCases) -> None:
        self._cases = cases

    # --- portfolios ----------------------------------------------------------------------------

    async def ListPortfolios(
        self, request: portfolio_pb2.ListPortfoliosRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListPortfoliosResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._cases.portfolios.page(require_identity().user_id, page)
        return portfolio_pb2.ListPortfoliosResponse(
            portfolios=[_valued(v) for v in found], pagination=page.describe(total)
        )

    async def CreatePortfolio(
        self, request: portfolio_pb2.CreatePortfolioRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreatePortfolioResponse:
        draft = PortfolioDraft(
            name=request.name,
            description=request.description,
            base_currency=request.currency,
            kind=PROTO_TO_KIND.get(request.kind),
            initial_cash=request.initial_cash,
        )
        user_id = require_identity().user_id

        def respond(valued: Valued) -> portfolio_pb2.CreatePortfolioResponse:
            return portfolio_pb2.CreatePortfolioResponse(portfolio=_valued(valued))

        async def create() -> portfolio_pb2.CreatePortfolioResponse:
            settle = self._cases.idempotency.settling(respond)
            return respond(await self._cases.portfolios.create(user_id, draft, settle=settle))

        return await self._cases.idempotency.run(
            request, portfolio_pb2.CreatePortfolioResponse, create
        )

    async def GetPortfolio(
        self, request: portfolio_pb2.GetPortfolioRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetPortfolioResponse:
        valued = await self._cases.portfolios.get(require_identity().user_id, request.id)
        return portfolio_pb2.GetPortfolioResponse(portfolio=_valued(valued))

    async def UpdatePortfolio(
        self, request: portfolio_pb2.UpdatePortfolioRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.UpdatePortfolioResponse:
        changes = PortfolioChanges(
            name=request.name if request.HasField("name") else None,
            description=request.description if request.HasField("description") else None,
            base_currency=request.currency if request.HasField("currency") else None,
        )
        valued = await self._cases.portfolios.update(
            require_identity().user_id, request.id, changes
        )
        return portfolio_pb2.UpdatePortfolioResponse(portfolio=_valued(valued))

    async def DeletePortfolio(
        self, request: portfolio_pb2.DeletePortfolioRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeletePortfolioResponse:
        await self._cases.portfolios.delete(require_identity().user_id, request.id)
        return portfolio_pb2.DeletePortfolioResponse()

    # --- trades and positions ------------------------------------------------------------------

    async def ListTrades(
        self, request: portfolio_pb2.ListTradesRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListTradesResponse:
        page = page_of(request.page, request.limit)
        wanted = TradeFilter(
            user_id=require_identity().user_id,
            portfolio_id=request.portfolio_id.strip(),
            symbol=request.symbol.strip(),
            side=_side(request.side),
            start=_when(getattr(request, "from"), request.HasField("from"), "from"),
            end=_when(request.to, request.HasField("to"), "to"),
        )
        found, total = await self._cases.trades.search(wanted, page)
        return portfolio_pb2.ListTradesResponse(
            trades=[trade_message(t) for t in found], pagination=page.describe(total)
        )

    async def CreateTrade(
        self, request: portfolio_pb2.CreateTradeRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreateTradeResponse:
        draft = TradeDraft(
            side=_side(request.side),
            symbol=request.symbol,
            quantity=request.quantity,
            price=request.price,
            fees=request.fees,
            executed_at=_when(request.executed_at, request.HasField("executed_at"), "executedAt"),
            notes=request.notes,
        )
        user_id = require_identity().user_id

        def respond(recorded: Sequence[RecordedTrade]) -> portfolio_pb2.CreateTradeResponse:
            return portfolio_pb2.CreateTradeResponse(trade=trade_message(recorded[0]))

        async def create() -> portfolio_pb2.CreateTradeResponse:
            recorded = await self._cases.trades.record(
                user_id,
                request.portfolio_id,
                draft,
                settle=self._cases.idempotency.settling(respond),
            )
            return respond([recorded])

        return await self._cases.idempotency.run(request, portfolio_pb2.CreateTradeResponse, create)

    async def DeleteTrade(
        self, request: portfolio_pb2.DeleteTradeRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeleteTradeResponse:
        # Idempotent by nature, with no key: a second delete of the trade is a 404.
        done = await self._cases.deletion.delete(require_identity().user_id, request.id)
        return portfolio_pb2.DeleteTradeResponse(
            portfolio_id=done.trade.portfolio_id,
            adjusted_dividends=[trade_message(t) for t in done.adjusted],
            removed_dividends=[trade_message(t) for t in done.dropped],
        )

    async def UpdateTrade(
        self, request: portfolio_pb2.UpdateTradeRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.UpdateTradeResponse:
        r = request
        changes = TradeChanges(
            quantity=r.quantity if r.HasField("quantity") else None,
            price=r.price if r.HasField("price") else None,
            fees=r.fees if r.HasField("fees") else None,
            executed_at=_when(r.executed_at, r.HasField("executed_at"), "executedAt"),
            notes=r.notes if r.HasField("notes") else None,
            side=_side(r.side),
            side_given=r.HasField("side"),
            symbol=r.symbol if r.HasField("symbol") else None,
            portfolio_id=r.portfolio_id if r.HasField("portfolio_id") else None,
        )
        done = await self._cases.edits.edit(require_identity().user_id, request.id, changes)
        return portfolio_pb2.UpdateTradeResponse(
            trade=trade_message(done.trade),
            adjusted_dividends=[trade_message(t) for t in done.adjusted],
            removed_dividends=[trade_message(t) for t in done.dropped],
        )

    async def ImportTrades(
        self, request: portfolio_pb2.ImportTradesRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ImportTradesResponse:
        user_id = require_identity().user_id

        def respond(done: Imported) -> portfolio_pb2.ImportTradesResponse:
            return portfolio_pb2.ImportTradesResponse(
                imported=done.count,
                trades=[trade_message(t) for t in done.trades],
                splits=[split_message(e) for e in done.splits],
            )

        async def run() -> portfolio_pb2.ImportTradesResponse:
            return respond(
                await self._cases.imports.run(
                    user_id,
                    request.portfolio_id,
                    request.csv,
                    dry_run=request.dry_run,
                    settle=self._cases.idempotency.settling(respond),
                )
            )

        return await self._cases.idempotency.run(request, portfolio_pb2.ImportTradesResponse, run)

    async def ListPositions(
        self, request: portfolio_pb2.ListPositionsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListPositionsResponse:
        page = page_of(request.page, request.limit)
        user_id = require_identity().user_id
        shown, total, fx = await self._cases.trades.positions_page(
            user_id,
            request.portfolio_id,
            page,
            method=PROTO_TO_METHOD.get(request.cost_method, CostMethod.FIFO),
            include_closed=request.include_closed,
        )
        return portfolio_pb2.ListPositionsResponse(
            positions=[
                position_message(request.portfolio_id.strip(), p, fx.get(p.symbol)) for p in shown
            ],
            pagination=page.describe(total),
        )

    async def CreatePosition(
        self, request: portfolio_pb2.CreatePositionRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreatePositionResponse:
        draft = TradeDraft(
            side=Side.BUY,
            symbol=request.symbol,
            quantity=request.quantity,
            price=request.price,
            fees=request.fees,
        )
        user_id = require_identity().user_id

        def respond(opened: Opened) -> portfolio_pb2.CreatePositionResponse:
            return portfolio_pb2.CreatePositionResponse(
                position=position_message(opened.portfolio_id, opened.position, opened.listed)
            )

        async def create() -> portfolio_pb2.CreatePositionResponse:
            return respond(
                await self._cases.trades.open_position(
                    user_id,
                    request.portfolio_id,
                    draft,
                    settle=self._cases.idempotency.settling(respond),
                )
            )

        return await self._cases.idempotency.run(
            request, portfolio_pb2.CreatePositionResponse, create
        )

    async def ListRealizedGains(
        self, request: portfolio_pb2.ListRealizedGainsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListRealizedGainsResponse:
        page = page_of(request.page, request.limit)
        found = await self._cases.realized.page(
            require_identity().user_id,
            request.portfolio_id,
            period_of(getattr(request, "from"), request.to),
            PROTO_TO_METHOD.get(request.cost_method, CostMethod.FIFO),
            page,
        )
        return realized_gains_message(
            request.portfolio_id.strip(), found, page.describe(found.total)
        )

    # --- market data ---------------------------------------------------------------------------

    async def SearchStocks(
        self, request: portfolio_pb2.SearchStocksRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.SearchStocksResponse:
        page = page_of(request.page, request.limit)
        shown, total = await search_stocks(self._cases.market, request.q, page)
        return portfolio_pb2.SearchStocksResponse(
            stocks=[stock_message(s) for s in shown], pagination=page.describe(total)
        )

    async def GetStock(
        self, request: portfolio_pb2.GetStockRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetStockResponse:
        info, profile = await stock_details(self._cases.market, request.symbol)
        return portfolio_pb2.GetStockResponse(stock=stock_message(info, profile))

    async def GetQuote(
        self, request: portfolio_pb2.GetQuoteRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetQuoteResponse:
        quote = await self._cases.market.quote(request.symbol)
        return portfolio_pb2.GetQuoteResponse(quote=quote_message(quote))

    async def GetStockHistory(
        self, request: portfolio_pb2.GetStockHistoryRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetStockHistoryResponse:
        history = await self._cases.histories.history(request.symbol, request.range)
        return stock_history_message(history)

    async def GetPerformance(
        self, request: portfolio_pb2.GetPerformanceRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetPerformanceResponse:
        report = await self._cases.reports.performance(
            require_identity().user_id,
            request.portfolio_id,
            request.range,
            request.benchmark,
            request.risk_free_rate,
        )
        return performance_message(request.portfolio_id.strip(), report)

    async def ExportPortfolio(
        self, request: portfolio_pb2.ExportPortfolioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        chunks = await self._cases.exports.open(
            require_identity().user_id, request.portfolio_id, request.format
        )
        async for chunk in chunks:
            yield chunk

    # --- internal streams (service tokens only; the interceptor enforces it) -------------------

    async def StreamMarket(
        self, request: portfolio_pb2.StreamMarketRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[portfolio_pb2.StreamMarketResponse]:
        ticks = self._cases.market.ticks()
        try:
            # Headers go out once subscribed: a caller that waits for them misses no tick.
            await context.send_initial_metadata(())
            # A step's quotes travel together: the facade writes each socket once per step.
            while (read := await ticks.batch()).quotes:
                yield portfolio_pb2.StreamMarketResponse(
                    quotes=map(quote_message, read.quotes),
                    seq=read.seq,
                    since_seq=read.since,
                    resync=read.resync,
                    term=read.term,
                )
        finally:
            await ticks.aclose()

    async def StreamPortfolioEvents(
        self,
        request: portfolio_pb2.StreamPortfolioEventsRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[portfolio_pb2.StreamPortfolioEventsResponse]:
        subscription = self._cases.hub.subscribe()
        try:
            await context.send_initial_metadata(())
            async for event in subscription:
                yield event
        finally:
            self._cases.hub.unsubscribe(subscription)
