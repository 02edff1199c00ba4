"""The watchlist and price-alert RPCs of PortfolioServicer (a mixin): request -> use case ->
response, as thin as the rest of the servicer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.portfolio.alert_index import AlertRule
from services.portfolio.alerts import AlertDraft, Alerts
from services.portfolio.watch_messages import (
    PROTO_TO_CONDITION,
    alert_message,
    fired_message,
    watchlist_message,
)
from services.portfolio.watchlists import QuotedWatchlist, Watchlists
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of

if TYPE_CHECKING:
    from services.portfolio.servicer import UseCases


class WatchRpcs:
    _cases: UseCases

    @property
    def _watchlists(self) -> Watchlists:
        found = self._cases.watchlists
        assert found is not None, "server.py wires the watchlists"
        return found

    @property
    def _alerts(self) -> Alerts:
        found = self._cases.alerts
        assert found is not None, "server.py wires the alerts"
        return found

    # --- watchlists ----------------------------------------------------------------------------

    async def ListWatchlists(
        self, request: portfolio_pb2.ListWatchlistsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListWatchlistsResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._watchlists.page(require_identity().user_id, page)
        return portfolio_pb2.ListWatchlistsResponse(
            watchlists=[watchlist_message(w) for w in found], pagination=page.describe(total)
        )

    async def CreateWatchlist(
        self, request: portfolio_pb2.CreateWatchlistRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreateWatchlistResponse:
        user_id = require_identity().user_id

        def respond(created: QuotedWatchlist) -> portfolio_pb2.CreateWatchlistResponse:
            return portfolio_pb2.CreateWatchlistResponse(watchlist=watchlist_message(created))

        async def create() -> portfolio_pb2.CreateWatchlistResponse:
            settle = self._cases.idempotency.settling(respond)
            return respond(
                await self._watchlists.create(user_id, request.name, request.symbols, settle=settle)
            )

        return await self._cases.idempotency.run(
            request, portfolio_pb2.CreateWatchlistResponse, create
        )

    async def GetWatchlist(
        self, request: portfolio_pb2.GetWatchlistRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.GetWatchlistResponse:
        found = await self._watchlists.get(require_identity().user_id, request.id)
        return portfolio_pb2.GetWatchlistResponse(watchlist=watchlist_message(found))

    async def UpdateWatchlist(
        self, request: portfolio_pb2.UpdateWatchlistRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.UpdateWatchlistResponse:
        updated = await self._watchlists.update(
            require_identity().user_id, request.id, request.name, request.symbols
        )
        return portfolio_pb2.UpdateWatchlistResponse(watchlist=watchlist_message(updated))

    async def DeleteWatchlist(
        self, request: portfolio_pb2.DeleteWatchlistRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeleteWatchlistResponse:
        await self._watchlists.delete(require_identity().user_id, request.id)
        return portfolio_pb2.DeleteWatchlistResponse()

    # --- price alerts --------------------------------------------------------------------------

    async def ListAlerts(
        self, request: portfolio_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListAlertsResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._alerts.page(require_identity().user_id, request.symbol, page)
        return portfolio_pb2.ListAlertsResponse(
            alerts=[alert_message(a) for a in found], pagination=page.describe(total)
        )

    async def CreateAlert(
        self, request: portfolio_pb2.CreateAlertRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.CreateAlertResponse:
        draft = AlertDraft(
            symbol=request.symbol,
            condition=PROTO_TO_CONDITION.get(request.condition),
            price=request.price,
            percent=request.percent,
            window_seconds=request.window_seconds,
            repeat=request.repeat,
            cooldown_seconds=request.cooldown_seconds,
            note=request.note,
        )
        user_id = require_identity().user_id

        def respond(created: AlertRule) -> portfolio_pb2.CreateAlertResponse:
            return portfolio_pb2.CreateAlertResponse(alert=alert_message(created))

        async def create() -> portfolio_pb2.CreateAlertResponse:
            settle = self._cases.idempotency.settling(respond)
            return respond(await self._alerts.create(user_id, draft, settle=settle))

        return await self._cases.idempotency.run(request, portfolio_pb2.CreateAlertResponse, create)

    async def UpdateAlert(
        self, request: portfolio_pb2.UpdateAlertRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.UpdateAlertResponse:
        updated = await self._alerts.set_active(
            require_identity().user_id, request.id, request.active
        )
        return portfolio_pb2.UpdateAlertResponse(alert=alert_message(updated))

    async def DeleteAlert(
        self, request: portfolio_pb2.DeleteAlertRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.DeleteAlertResponse:
        await self._alerts.delete(require_identity().user_id, request.id)
        return portfolio_pb2.DeleteAlertResponse()

    async def ListFiredAlerts(
        self, request: portfolio_pb2.ListFiredAlertsRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.ListFiredAlertsResponse:
        page = page_of(request.page, request.limit)
        found = await self._alerts.fired(require_identity().user_id, page, unread=request.unread)
        return portfolio_pb2.ListFiredAlertsResponse(
            fired=[fired_message(f) for f in found.fired],
            pagination=page.describe(found.total),
            unread=found.unread,
        )

    async def MarkFiredAlertsRead(
        self, request: portfolio_pb2.MarkFiredAlertsReadRequest, context: grpc.aio.ServicerContext
    ) -> portfolio_pb2.MarkFiredAlertsReadResponse:
        marked = await self._alerts.mark_read(require_identity().user_id, request.ids)
        return portfolio_pb2.MarkFiredAlertsReadResponse(marked=marked)
