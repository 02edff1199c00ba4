"""Builds the users service's server parts from its config."""

from __future__ import annotations

import contextlib
import logging

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.cache import create_cache
from services.runtime.config import RuntimeConfig
from services.runtime.db import Database
from services.runtime.ratelimit import RateLimiter
from services.runtime.server import ServiceParts
from services.runtime.tokens import token_codec
from services.users.accounts import Accounts
from services.users.budgets import Budgets
from services.users.config import load_users_config
from services.users.guard import LoginGuard
from services.users.passwords import PasswordHasher
from services.users.servicer import UsersServicer
from services.users.sessions import LocalSessionChecker

SERVICE = users_pb2.DESCRIPTOR.services_by_name["UsersService"]

log = logging.getLogger(__name__)


async def build(config: RuntimeConfig, resources: contextlib.AsyncExitStack) -> ServiceParts:
    settings = load_users_config(config)
    if settings.admin_email and config.production:
        log.warning(
            "STOCKFOLIO_ADMIN_EMAIL is ignored in production: make admins with"
            " `python -m services.users admin create --email ...`"
        )
    db = Database(config.database_url)
    resources.push_async_callback(db.close)
    cache = create_cache(config.redis_url, prefix="sf:users:")
    resources.push_async_callback(cache.close)
    hasher = PasswordHasher(settings.bcrypt_cost)
    resources.callback(hasher.close)
    sessions = LocalSessionChecker(db, cache, ttl=config.session_check_ttl)
    guard = LoginGuard(cache, settings.login)
    budgets = Budgets(RateLimiter(cache, namespace="rl"), settings.allowances)
    accounts = Accounts(settings, db, token_codec(config), hasher, guard, sessions, budgets)
    servicer = UsersServicer(accounts)

    def register(server: grpc.aio.Server) -> None:
        users_pb2_grpc.add_UsersServiceServicer_to_server(servicer, server)

    return ServiceParts(
        services=[SERVICE], register=register, sessions=sessions, checks={"database": db.ping}
    )
