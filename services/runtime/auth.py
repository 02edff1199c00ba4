"""Access and refresh tokens (PyJWT, HS256) and the session checks every service makes.

A token proves who the caller was when it was issued; the session check proves the session has
not been revoked since. Both happen in every service, through the auth interceptor.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import grpc
import jwt
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.context import CORRELATION_HEADER, Identity, correlation_id
from services.runtime.errors import Unauthenticated, Unavailable

T = TypeVar("T")

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"
SERVICE = "service"
SERVICE_TOKEN_TTL = 600
VERIFIED_TOKENS = 10_000


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    session_id: str
    token_id: str
    expires_at: datetime


class TokenCodec:
    """Issues and reads the two kinds of token; the `typ` claim keeps them apart."""

    def __init__(self, secret: str, *, issuer: str, access_ttl: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._access_ttl = access_ttl
        self._verified: dict[str, Identity] = {}

    def issue_access(
        self, *, user_id: str, session_id: str, email: str, roles: list[str]
    ) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self._access_ttl)
        claims = {
            "iss": self._issuer,
            "sub": user_id,
            "sid": session_id,
            "email": email,
            "roles": roles,
            "typ": ACCESS,
            "iat": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires

    def issue_refresh(
        self, *, user_id: str, session_id: str, token_id: str, ttl: int
    ) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=ttl)
        claims = {
            "iss": self._issuer,
            "sub": user_id,
            "sid": session_id,
            "typ": REFRESH,
            "iat": now,
            "exp": expires,
            "jti": token_id,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires

    def issue_service(self, service: str) -> tuple[str, datetime]:
        """A token naming one of our own services, for internal RPCs only (no session)."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=SERVICE_TOKEN_TTL)
        claims = {
            "iss": self._issuer,
            "sub": f"service:{service}",
            "sid": "",
            "roles": [SERVICE],
            "typ": SERVICE,
            "iat": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires

    def _decode(self, token: str, kind: str, *, also: str | None = None) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "sid", "typ", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(f"{kind} token expired", reason="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise Unauthenticated(f"invalid {kind} token", reason="TOKEN_INVALID") from None
        if claims.get("typ") not in {kind, also}:
            raise Unauthenticated(f"expected a {kind} token", reason="TOKEN_INVALID")
        return claims

    def read_access(self, token: str, *, allow_service: bool = False) -> Identity:
        # Verifying a signature costs ~100 us; a token already verified is looked up instead.
        # Expiry is still checked on every use, and revocation is the session check's job.
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at.timestamp() <= time.time():
                self._verified.pop(token, None)
                raise Unauthenticated("access token expired", reason="TOKEN_EXPIRED")
            if known.service and not allow_service:
                raise Unauthenticated("expected a access token", reason="TOKEN_INVALID")
            return known
        identity = self._read_access(token, allow_service=allow_service)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = identity
        return identity

    def _read_access(self, token: str, *, allow_service: bool) -> Identity:
        claims = self._decode(token, ACCESS, also=SERVICE if allow_service else None)
        roles = claims.get("roles")
        return Identity(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            email=str(claims.get("email", "")),
            roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
            token=token,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            service=claims["typ"] == SERVICE,
        )

    def read_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, REFRESH)
        return RefreshClaims(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            token_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


def bearer_token(metadata: Any) -> str | None:
    """The token from `authorization: Bearer <token>` metadata, if present."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class ServiceCredentials:
    """This service's own token for internal RPCs, renewed well before it expires."""

    def __init__(self, codec: TokenCodec, service: str) -> None:
        self._codec = codec
        self._service = service
        self._token = ""
        self._renew_at = 0.0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if time.monotonic() >= self._renew_at:
            self._token, _ = self._codec.issue_service(self._service)
            self._renew_at = time.monotonic() + SERVICE_TOKEN_TTL / 2
        return (("authorization", f"Bearer {self._token}"),)


class SessionChecker(Protocol):
    async def is_live(self, identity: Identity) -> bool:
        """Whether the identity's session still stands (not logged out, not revoked)."""
        ...


class TtlMemo(Generic[T]):
    """Answers remembered for a short time, with one lookup in flight per key.

    The lookup runs in its own task that every caller awaits through a shield, so a caller that
    goes away (its client hung up) cancels only its own wait, never the lookup the others share.
    """

    def __init__(self, ttl: float, *, max_entries: int = 50_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._answers: dict[str, tuple[T, float]] = {}
        self._pending: dict[str, asyncio.Task[T]] = {}

    def forget(self, key: str) -> None:
        """Drop the answer, and any lookup in flight: it may have read the state just replaced."""
        self._answers.pop(key, None)
        self._pending.pop(key, None)

    async def get(self, key: str, lookup: Callable[[], Awaitable[T]]) -> T:
        found = self._answers.get(key)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up(key, lookup))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(pending)

    async def _look_up(self, key: str, lookup: Callable[[], Awaitable[T]]) -> T:
        answer = await lookup()
        if self._pending.get(key) is not asyncio.current_task():
            return answer  # forgotten meanwhile: answer the callers waiting, remember nothing
        now = time.monotonic()
        if len(self._answers) >= self._max_entries:
            self._answers = {k: v for k, v in self._answers.items() if v[1] > now}
        self._answers[key] = (answer, now + self._ttl)
        return answer

    def _settle(self, key: str, done: asyncio.Task[T]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved, so a failure nobody waited for does not warn


class RemoteSessionChecker:
    """Asks the users service (the source of truth) whether a session is live.

    Answers are remembered for `ttl` seconds (2 s by default), which bounds how long a logged-out
    session keeps working on this service. When the users service cannot be reached the check
    fails closed.
    """

    def __init__(self, channel: grpc.aio.Channel, *, ttl: float, deadline: float = 3.0) -> None:
        self._stub = users_pb2_grpc.UsersServiceStub(channel)
        self._memo: TtlMemo[bool] = TtlMemo(ttl)
        self._deadline = deadline

    async def is_live(self, identity: Identity) -> bool:
        async def lookup() -> bool:
            try:
                reply = await self._stub.ValidateToken(
                    users_pb2.ValidateTokenRequest(),
                    metadata=(
                        ("authorization", f"Bearer {identity.token}"),
                        # The check is part of the caller's request: users logs it under its id.
                        (CORRELATION_HEADER, correlation_id.get()),
                    ),
                    timeout=self._deadline,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return False
                raise Unavailable("cannot verify the session right now; retry shortly") from None
            return bool(reply.valid) and reply.session_id == identity.session_id

        return await self._memo.get(identity.session_id, lookup)
