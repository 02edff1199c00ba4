"""The facade's app factory: routes from the protos, each wrapped by the edge, the WebSockets,
and one cleanup context per resource (the cache, the chat rooms, each domain service's channel,
the health probes, the upstream streams of the portfolio feed)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from itertools import groupby

import grpc
from aiohttp import web
from aiohttp.typedefs import Handler

from facade import health, openapi
from facade.breaker import CircuitBreaker
from facade.codec import RouteCodec
from facade.config import FacadeConfig
from facade.keys import (
    BREAKERS,
    CACHE,
    CHANNELS,
    CHAT_ROOMS,
    CONFIG,
    DOCS,
    ENDPOINTS,
    LIMITS,
    OPENAPI,
    PLACEMENTS,
    PORTFOLIO_FEED,
    PROBES,
    ROUTES,
    SOCKETS,
    STARTED_AT,
    UPSTREAMS,
)
from facade.limits import Budget, RateLimits
from facade.middleware import Edge
from facade.openapi_static import OPENAPI_PATH
from facade.placement import PLACED, Placement, place_endpoints
from facade.plans import Plans
from facade.portfolio_feed import PortfolioFeed, Upstreams
from facade.probes import HealthProbes
from facade.protocol_errors import envelope_protocol_errors
from facade.routes import DOMAIN_APIS, build_routes
from facade.sockets import Sockets, StartConversation
from facade.streaming import StreamGuard, transcode_stream
from facade.transcoding import Endpoint, transcode
from facade.uploads import transcode_upload
from facade.ws_chat import PATH as CHAT_SOCKET
from facade.ws_chat import ChatConversation, ChatRooms, chat_bridge
from facade.ws_portfolio import PATH as PORTFOLIO_SOCKET
from facade.ws_portfolio import PortfolioConversation
from facade.ws_terminal import PATHS as TERMINAL_SOCKETS
from facade.ws_terminal import TerminalConversation, terminal_bridge
from services.runtime.auth import ServiceCredentials, ServiceTokenSigner
from services.runtime.cache import create_cache
from services.runtime.channels import create_channel
from services.runtime.tasks import cancel_and_wait
from services.runtime.tokens import service_token_signer, token_verifier

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


async def cache_context(app: web.Application) -> AsyncIterator[None]:
    cache = create_cache(app[CONFIG].redis_url, prefix="sf:")
    app[CACHE] = cache
    app[LIMITS].bind(cache)
    yield
    app[LIMITS].bind(None)
    await cache.close()


def channel_context(service: str) -> CleanupContext:
    """One domain service's channel (every replica, round robin), bound to its endpoints; for
    a service whose resources live on one replica (terminal sessions), calls naming one go to
    its owner instead (facade/placement.py)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        channel = create_channel(
            config.addresses[service], [DOMAIN_APIS[service]], deadline=config.rpc_deadline
        )
        channel.get_state(try_to_connect=True)
        app[CHANNELS][service] = channel
        for endpoint in app[ENDPOINTS]:
            if endpoint.route.service == service:
                endpoint.bind(channel)
        placement = None
        if service in PLACED:
            placement = Placement.of(
                service, DOMAIN_APIS[service], app[CACHE], deadline=config.rpc_deadline
            )
            app[PLACEMENTS][service] = placement
            place_endpoints(app[ENDPOINTS], placement, service)
        watch = asyncio.create_task(
            half_open_when_ready(channel, app[BREAKERS][service]), name=f"{service}-ready"
        )
        yield
        await cancel_and_wait(watch)
        if placement is not None:
            await placement.close()
        await channel.close()

    return context


async def half_open_when_ready(channel: grpc.aio.Channel, breaker: CircuitBreaker) -> None:
    """Each time the channel becomes READY again, an open circuit may try at once: a service
    back from an outage (its database restarted) is served again without waiting out the
    breaker's cooldown. A service that is slow but connected stays READY: this never fires."""
    state = channel.get_state()
    while True:
        await channel.wait_for_state_change(state)
        state = channel.get_state()
        if state == grpc.ChannelConnectivity.READY:
            breaker.reachable_again()


async def probes_context(app: web.Application) -> AsyncIterator[None]:
    probes = app[PROBES]
    probes.open()
    yield
    await probes.close()


def upstreams_context(signer: ServiceTokenSigner) -> CleanupContext:
    """The portfolio feed's upstream streams (one per replica), open while the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        upstreams = Upstreams(
            app[CONFIG].addresses["portfolio"],
            ServiceCredentials(signer, "portfolio"),
            app[PORTFOLIO_FEED],
        )
        upstreams.start()
        app[UPSTREAMS] = upstreams
        yield
        await upstreams.close()

    return context


async def chat_rooms_context(app: web.Application) -> AsyncIterator[None]:
    """Chat rooms relay through the cache: closed before it."""
    yield
    await app[CHAT_ROOMS].close()


async def close_sockets(app: web.Application) -> None:
    """At shutdown, before the cleanup contexts: every socket is told the server goes away."""
    await app[SOCKETS].shutdown()


def _add_transcoded_routes(app: web.Application, edge: Edge, guard: StreamGuard) -> None:
    limits = app[LIMITS]

    def path_of(endpoint: Endpoint) -> str:
        return endpoint.route.aiohttp_path

    def before_its_prefixes(endpoint: Endpoint) -> str:
        # A path that extends another comes first: `/orders/{id}:cancel` must be tried before
        # `/orders/{id}`, whose variable would take "x:cancel" and answer 405 to the POST.
        return path_of(endpoint) + "\uffff"

    # One aiohttp resource per path, holding every verb bound to it, then a route for any
    # other method (a CORS preflight or a 405).
    every: tuple[Endpoint, ...] = app[ENDPOINTS]
    for path, group in groupby(sorted(every, key=before_its_prefixes), key=path_of):
        resource = app.router.add_resource(path)
        endpoints = list(group)
        template = endpoints[0].route.template
        for endpoint in endpoints:
            route = endpoint.route
            handler: Handler
            if route.streamed_body:
                handler = functools.partial(transcode_upload, endpoint)
            elif route.streaming:
                heartbeat = app[CONFIG].stream_heartbeat
                handler = functools.partial(
                    transcode_stream, endpoint, heartbeat=heartbeat, guard=guard
                )
            else:
                handler = functools.partial(transcode, endpoint)
            budget = limits.budget(public=route.public)
            resource.add_route(route.verb, edge.wrap(handler, route.template, budget))
        resource.add_route("*", edge.refuse([e.route.verb for e in endpoints], template))


def _add_facade_routes(app: web.Application, edge: Edge) -> None:
    api_budget = app[LIMITS].budget(public=False)
    own: list[tuple[str, Handler, Budget | None]] = [
        ("/health", health.health, None),
        ("/health/all", health.health_all, None),
        ("/health/{service}", health.health_one, None),
        ("/services", health.registry, None),
        ("/metrics", health.metrics, None),
        (OPENAPI_PATH, openapi.openapi_json, api_budget),
        ("/docs", openapi.docs, None),
    ]
    for path, handler, budget in own:
        resource = app.router.add_resource(path)
        resource.add_route("GET", edge.wrap(handler, path, budget))
        resource.add_route("*", edge.refuse(["GET"], path))


def _add_socket_routes(app: web.Application, edge: Edge, plans: Plans) -> None:
    """Each path's conversation, started for each socket that authenticates there."""
    api_budget = app[LIMITS].budget(public=False)
    sockets, config = app[SOCKETS], app[CONFIG]
    chat = functools.partial(
        ChatConversation,
        app[CHAT_ROOMS],
        lambda: app[CHANNELS]["assistant"],
        chat_bridge(plans),
        caps=sockets.caps,
        joins_per_socket=config.chat_joins_per_socket,
    )
    terminal = functools.partial(
        TerminalConversation,
        lambda: app[CHANNELS]["terminal"],
        terminal_bridge(plans),
        backlog=sockets.send_budget // 2,
        placement=lambda: app[PLACEMENTS].get("terminal"),
    )
    starts: dict[str, StartConversation] = {
        PORTFOLIO_SOCKET: functools.partial(
            PortfolioConversation,
            app[PORTFOLIO_FEED],
            portfolio=lambda: app[CHANNELS]["portfolio"],
        ),
        CHAT_SOCKET: chat,
        **dict.fromkeys(TERMINAL_SOCKETS, terminal),
    }
    for path, start in starts.items():
        resource = app.router.add_resource(path)
        handler = functools.partial(sockets.serve, start=start)
        resource.add_route("GET", edge.wrap(handler, path, api_budget))
        resource.add_route("*", edge.refuse(["GET"], path))


def create_app(config: FacadeConfig) -> web.Application:
    routes = build_routes(DOMAIN_APIS)
    limits = RateLimits(config, token_verifier(config.runtime))
    edge = Edge(config, limits)
    app = web.Application(client_max_size=config.max_body_bytes)
    envelope_protocol_errors(app)  # what aiohttp's parser refuses, before any route
    breakers = {name: CircuitBreaker(name) for name in DOMAIN_APIS}
    plans = Plans()
    endpoints = tuple(
        Endpoint(
            route,
            RouteCodec(route, plans),
            breakers[route.service],
            deadline=config.rpc_deadline,
            upload_limit=config.max_upload_bytes,
        )
        for route in routes
    )
    app[CONFIG] = config
    app[ROUTES] = routes
    app[ENDPOINTS] = endpoints
    app[BREAKERS] = breakers
    app[CHANNELS] = {}
    app[PLACEMENTS] = {}
    app[LIMITS] = limits
    app[PROBES] = HealthProbes(
        config.addresses, {name: api.full_name for name, api in DOMAIN_APIS.items()}
    )
    app[STARTED_AT] = time.monotonic()
    app[OPENAPI], app[DOCS] = openapi.render(routes)
    app[SOCKETS] = Sockets(config, lambda: app[CHANNELS]["users"])
    app[PORTFOLIO_FEED] = PortfolioFeed(plans, flush=app[SOCKETS].flush)
    app[CHAT_ROOMS] = ChatRooms(lambda: app[CACHE])
    _add_facade_routes(app, edge)
    # Streams end with their session (as sockets do) and count against their user's caps.
    guard = StreamGuard(app[SOCKETS].sessions, app[SOCKETS].caps, token_verifier(config.runtime))
    _add_transcoded_routes(app, edge, guard)
    _add_socket_routes(app, edge, plans)
    # Last: whatever no route takes (an unknown path) still gets the edge and the envelope.
    # Any path at all, newlines included (`.` would stop at one and leave aiohttp's own 404).
    app.router.add_route("*", r"/{tail:[\s\S]*}", edge.no_route())
    app.cleanup_ctx.append(cache_context)
    app.cleanup_ctx.append(chat_rooms_context)
    app.cleanup_ctx.extend(channel_context(name) for name in DOMAIN_APIS)
    app.cleanup_ctx.append(probes_context)
    app.cleanup_ctx.append(upstreams_context(service_token_signer(config.runtime)))
    app.on_shutdown.append(close_sockets)
    return app
