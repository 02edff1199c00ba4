"""Builds the assistant service's server parts from its config."""

from __future__ import annotations

import contextlib

import grpc
from stockfolio.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from stockfolio.portfolio.v1 import portfolio_pb2

from services.assistant.budget import TokenBudget
from services.assistant.config import AssistantConfig, load_assistant_config
from services.assistant.conversation import Assistant
from services.assistant.erasure import AccountErasure
from services.assistant.offline import OfflineProvider
from services.assistant.orm import idempotency_keys, purge_cursor
from services.assistant.providers import Provider
from services.assistant.repository import Chats
from services.assistant.servicer import AssistantServicer
from services.assistant.tools import PortfolioTools
from services.runtime.account_deletions import DatabaseCursor, follow_account_deletions
from services.runtime.cache import create_cache
from services.runtime.channels import create_channel
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.idempotency import IdempotencyStore
from services.runtime.ratelimit import RateLimiter
from services.runtime.server import ServiceParts
from services.runtime.sessions import remote_sessions

SERVICE = assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"]
PORTFOLIO_SERVICE = portfolio_pb2.DESCRIPTOR.services_by_name["PortfolioService"]


def create_provider(config: AssistantConfig) -> Provider:
    """Claude when CLAUDE_API_KEY is set, else the offline provider."""
    if config.claude_api_key:
        # Imported only when used: the SDK and what it brings (pydantic, httpx2, ...) are
        # ~50 MB of resident memory a keyless (offline) assistant never needs.
        from services.assistant.claude import AnthropicProvider

        return AnthropicProvider(config)
    return OfflineProvider()


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_assistant_config(config)
    db = Database(config.database_url)
    resources.push_async_callback(db.close)
    cache = create_cache(config.redis_url, prefix="sf:assistant:")
    resources.push_async_callback(cache.close)
    portfolio = create_channel(
        config.addresses["portfolio"], [PORTFOLIO_SERVICE], deadline=config.rpc_deadline
    )
    resources.push_async_callback(portfolio.close)
    provider = create_provider(settings)
    resources.push_async_callback(provider.close)
    chats = Chats(db)
    budget = TokenBudget(
        cache, chats, daily=settings.tokens_per_day, reserve=settings.token_reserve
    )
    assistant = Assistant(
        settings,
        chats,
        provider,
        PortfolioTools(portfolio),
        RateLimiter(cache, namespace="rl"),
        budget,
    )
    # Answers still running when the server stops keep what they streamed.
    resources.push_async_callback(assistant.drain)
    # A deleted account's chats are erased here (one replica at a time).
    await follow_account_deletions(
        config,
        resources,
        AccountErasure(db).erase,
        DatabaseCursor(db, purge_cursor),
        interval=settings.purge_interval,
        cache=cache,
    )
    servicer = AssistantServicer(assistant, chats, IdempotencyStore(db, idempotency_keys))

    def register(server: grpc.aio.Server) -> None:
        assistant_pb2_grpc.add_AssistantServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE],
        register=register,
        sessions=await remote_sessions(config, resources),
        checks={"database": db.ping},
        draining=[assistant.drain],
    )
