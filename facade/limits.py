"""Rate limits at the edge: which routes spend which budget, and whose budget it is.

Public auth RPCs (register, login, refresh) spend a budget per client IP; every other /api/
route spends one per user (the verified token's subject), or per IP when anonymous.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from facade.config import FacadeConfig
from facade.envelope import ApiError
from services.runtime.addresses import IPNetwork, address_block, resolve_client_address
from services.runtime.auth import TokenVerifier
from services.runtime.cache import Cache
from services.runtime.context import client_address
from services.runtime.errors import Unauthenticated
from services.runtime.ratelimit import Decision, Rate, RateLimiter

AUTH = "auth"
API = "api"
_MEMO_LIMIT = 10_000
_INVALID_FOR = 60.0


@dataclass(frozen=True, slots=True)
class Budget:
    kind: str  # AUTH or API
    rate: Rate


def client_ip(request: web.BaseRequest, trusted: Sequence[IPNetwork]) -> str:
    """The caller's IP: the socket's peer or, when that peer is a trusted proxy, the right-most
    untrusted X-Forwarded-For hop (services/runtime/addresses.py)."""
    forwarded = request.headers.getall("X-Forwarded-For", ())
    return resolve_client_address(request.remote or "", forwarded, trusted) or "unknown"


def limit_headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(max(0, math.ceil(decision.reset_after))),
    }


class RateLimits:
    def __init__(self, config: FacadeConfig, codec: TokenVerifier) -> None:
        self._auth = Budget(AUTH, config.rate_limit_auth)
        self._api = Budget(API, config.rate_limit_api)
        self._codec = codec
        self._limiter: RateLimiter | None = None
        # token -> (user id or "" when invalid, until when the answer holds): one JWT check per
        # token rather than per request.
        self._subjects: dict[str, tuple[str, float]] = {}

    def bind(self, cache: Cache | None) -> None:
        self._limiter = RateLimiter(cache, namespace="rl:facade") if cache is not None else None

    def budget(self, *, public: bool) -> Budget | None:
        budget = self._auth if public else self._api
        return None if budget.rate.unlimited else budget

    async def spend(self, request: web.BaseRequest, budget: Budget) -> Decision | None:
        """Count one request; over the limit raises 429 with the RateLimit-* headers."""
        if self._limiter is None:
            return None
        key = f"{budget.kind}:{self._subject(request, budget)}"
        decision = await self._limiter.hit(key, budget.rate)
        if not decision.allowed:
            raise ApiError(
                429,
                "RATE_LIMITED",
                "too many requests; slow down and retry later",
                retry_after=decision.reset_after,
                headers=limit_headers(decision),
            )
        return decision

    def _subject(self, request: web.BaseRequest, budget: Budget) -> str:
        if budget.kind == API:
            user = self._user(request.headers.get("Authorization"))
            if user:
                return f"user:{user}"
        return f"ip:{address_block(client_address.get())}"

    def _user(self, header: str | None) -> str:
        if not header:
            return ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return ""
        now = time.time()
        found = self._subjects.get(token)
        if found is not None and found[1] > now:
            return found[0]
        try:
            identity = self._codec.read_access(token)
        except (Unauthenticated, UnicodeError):  # a header that is no token at all
            user, until = "", now + _INVALID_FOR
        else:
            user, until = identity.user_id, identity.expires_at.timestamp()
        if len(self._subjects) >= _MEMO_LIMIT:
            self._subjects = {k: v for k, v in self._subjects.items() if v[1] > now}
            if len(self._subjects) >= _MEMO_LIMIT:
                self._subjects.clear()
        self._subjects[token] = (user, until)
        return user
