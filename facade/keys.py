"""Typed keys for what the facade application holds."""

from __future__ import annotations

import grpc
from aiohttp import web

from facade.breaker import CircuitBreaker
from facade.config import FacadeConfig
from facade.limits import RateLimits
from facade.placement import Placement
from facade.portfolio_feed import PortfolioFeed, Upstreams
from facade.probes import HealthProbes
from facade.routes import Route
from facade.sockets import Sockets
from facade.transcoding import Endpoint
from facade.ws_chat import ChatRooms
from services.runtime.cache import Cache

CONFIG: web.AppKey[FacadeConfig] = web.AppKey("config")
ROUTES: web.AppKey[tuple[Route, ...]] = web.AppKey("routes")
ENDPOINTS: web.AppKey[tuple[Endpoint, ...]] = web.AppKey("endpoints")
BREAKERS: web.AppKey[dict[str, CircuitBreaker]] = web.AppKey("breakers")
CHANNELS: web.AppKey[dict[str, grpc.aio.Channel]] = web.AppKey("channels")
# Per placed service (terminal): who owns what, and a channel to each owner.
PLACEMENTS: web.AppKey[dict[str, Placement]] = web.AppKey("placements")
PROBES: web.AppKey[HealthProbes] = web.AppKey("probes")
CACHE: web.AppKey[Cache] = web.AppKey("cache")
LIMITS: web.AppKey[RateLimits] = web.AppKey("limits")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi")
DOCS: web.AppKey[bytes] = web.AppKey("docs")
SOCKETS: web.AppKey[Sockets] = web.AppKey("sockets")
PORTFOLIO_FEED: web.AppKey[PortfolioFeed] = web.AppKey("portfolio_feed")
UPSTREAMS: web.AppKey[Upstreams] = web.AppKey("upstreams")
CHAT_ROOMS: web.AppKey[ChatRooms] = web.AppKey("chat_rooms")
