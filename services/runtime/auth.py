"""Access, refresh and service tokens (PyJWT, EdDSA over Ed25519) and the session checks every
service makes.

A token proves who the caller was when it was issued; the session check proves the session has
not been revoked since. Both happen in every service, through the auth interceptor. Only the
users service holds the key that signs users' tokens; a service token is signed by the calling
service's own key, names its callee as audience, and can never pass for a user's token.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.rpc import error_details_pb2
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.channels import unary_with_second_try
from services.runtime.context import CORRELATION_HEADER, Identity, correlation_id
from services.runtime.errors import Unauthenticated, Unavailable
from services.runtime.keys import SigningKey, TokenKeys
from services.runtime.status import parse_status

T = TypeVar("T")

# Pinned: a token naming any other algorithm (HS256 keyed with our public key, `none`) is refused.
ALGORITHM = "EdDSA"
# Users' tokens are for every Stockfolio service; a service token names its one callee instead.
AUDIENCE = "stockfolio"
ACCESS = "access"
REFRESH = "refresh"
SERVICE = "service"
SERVICE_TOKEN_TTL = 600
VERIFIED_TOKENS = 10_000
# A token this close to its expiry (or past it) is asked about with CheckSession, which takes it
# lapsed: ValidateToken would refuse it once it expired on the way, and that reads as a logout.
LAPSING = timedelta(seconds=30)
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "sid", "typ", "jti"]


@dataclass(frozen=True)
class RefreshClaims:
    user_id: str
    session_id: str
    token_id: str
    expires_at: datetime


def _invalid(kind: str) -> Unauthenticated:
    return Unauthenticated(f"invalid {kind} token", reason="TOKEN_INVALID")


class SessionRevoked(Unauthenticated):
    """A session somebody ended: a logout, a password or role change, a reused refresh token."""

    reason = "SESSION_REVOKED"

    def __init__(self, message: str = "session has ended; log in again") -> None:
        super().__init__(message)


class SessionExpired(Unauthenticated):
    """A session past its own fixed end (REFRESH_TOKEN_TTL from its login): nobody ended it."""

    reason = "SESSION_EXPIRED"

    def __init__(self) -> None:
        super().__init__("session expired; log in again")


class TokenVerifier:
    """Reads tokens with public keys only: what every process but the users service holds.

    `service` is this process's name, the audience a service token must name to reach it.
    """

    def __init__(self, keys: TokenKeys, *, issuer: str, service: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._service = service
        self._verified: dict[str, Identity] = {}

    def _claims(
        self,
        token: str,
        key: Ed25519PublicKey,
        kind: str,
        *,
        audience: str,
        issuer: str,
        verify_exp: bool = True,
    ) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=issuer,
                options={"require": REQUIRED_CLAIMS, "verify_exp": verify_exp},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(f"{kind} token expired", reason="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise _invalid(kind) from None
        return claims

    def _decode(
        self, token: str, kind: str, *, allow_service: bool = False, verify_exp: bool = True
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid(kind) from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise _invalid(kind)
        user_key = self._keys.users.get(kid)
        if user_key is not None:
            claims = self._claims(
                token, user_key, kind, audience=AUDIENCE, issuer=self._issuer, verify_exp=verify_exp
            )
            if claims["typ"] != kind:
                raise Unauthenticated(f"expected a {kind} token", reason="TOKEN_INVALID")
            return claims
        service_key = self._keys.services.get(kid)
        if service_key is None:
            raise _invalid(kind)  # signed by a key nobody told us to trust
        if not allow_service:
            raise Unauthenticated(f"expected a {kind} token", reason="TOKEN_INVALID")
        claims = self._claims(
            token, service_key.public, kind, audience=self._service, issuer=service_key.issuer
        )
        # A service's key speaks for that service only, and only in service tokens.
        if claims["typ"] != SERVICE or claims["sub"] != f"service:{service_key.issuer}":
            raise _invalid(kind)
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

    def read_lapsed_access(self, token: str) -> Identity:
        """A user's access token read past its expiry too (signature, issuer, audience and type
        still checked), never from the cache of tokens that work: whose session it was of."""
        return self._read_access(token, allow_service=False, verify_exp=False)

    def _read_access(self, token: str, *, allow_service: bool, verify_exp: bool = True) -> Identity:
        claims = self._decode(token, ACCESS, allow_service=allow_service, verify_exp=verify_exp)
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

    def read_refresh(self, token: str, *, lapsed: bool = False) -> RefreshClaims:
        """A refresh token's claims. `lapsed` reads one past its exp too (signature, issuer,
        audience and type still checked): which session a token that no longer works was of."""
        claims = self._decode(token, REFRESH, verify_exp=not lapsed)
        return RefreshClaims(
            user_id=str(claims["sub"]),
            session_id=str(claims["sid"]),
            token_id=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


class TokenCodec(TokenVerifier):
    """The users service's: issues users' access and refresh tokens (the `typ` claim keeps them
    apart) with the one private key that can, and reads them back."""

    def __init__(
        self, keys: TokenKeys, *, issuer: str, access_ttl: int, service: str = "users"
    ) -> None:
        if keys.signing is None:
            raise ValueError("only the users service, which holds the signing key, issues tokens")
        super().__init__(keys, issuer=issuer, service=service)
        self._signing: SigningKey = keys.signing
        self._access_ttl = access_ttl

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._signing.private, algorithm=ALGORITHM, headers={"kid": self._signing.kid}
        )

    def issue_access(
        self,
        *,
        user_id: str,
        session_id: str,
        email: str,
        roles: list[str],
        session_ends: datetime | None = None,
    ) -> tuple[str, datetime]:
        """An access token for ACCESS_TOKEN_TTL, ending with its session (`session_ends`) at
        the latest: used past that end it is expired, as its session is."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self._access_ttl)
        if session_ends is not None:
            expires = max(now, min(expires, session_ends))
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "email": email,
            "roles": roles,
            "typ": ACCESS,
            "iat": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        return self._sign(claims), expires

    def issue_refresh(
        self, *, user_id: str, session_id: str, token_id: str, ttl: int
    ) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=ttl)
        claims = {
            "iss": self._issuer,
            "aud": AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "typ": REFRESH,
            "iat": now,
            "exp": expires,
            "jti": token_id,
        }
        return self._sign(claims), expires


class ServiceTokenSigner:
    """A service's own tokens for internal RPCs (no session, no user), one callee each."""

    def __init__(self, key: SigningKey, *, service: str) -> None:
        self._key = key
        self._service = service

    def issue(self, audience: str) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=SERVICE_TOKEN_TTL)
        claims = {
            "iss": self._service,
            "aud": audience,
            "sub": f"service:{self._service}",
            "sid": "",
            "roles": [SERVICE],
            "typ": SERVICE,
            "iat": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, self._key.private, algorithm=ALGORITHM, headers={"kid": self._key.kid}
        )
        return token, expires


def bearer(token: str) -> tuple[str, str]:
    """The `authorization` metadata entry that presents `token` (bearer_token reads it back)."""
    return ("authorization", f"Bearer {token}")


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
    """This service's own token for one callee's internal RPCs, renewed well before it expires."""

    def __init__(self, signer: ServiceTokenSigner, audience: str) -> None:
        self._signer = signer
        self._audience = audience
        self._token = ""
        self._renew_at = 0.0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if time.monotonic() >= self._renew_at:
            self._token, _ = self._signer.issue(self._audience)
            self._renew_at = time.monotonic() + SERVICE_TOKEN_TTL / 2
        return (bearer(self._token),)


class SessionChecker(Protocol):
    async def is_live(self, identity: Identity) -> bool:
        """Whether the identity's session still stands: False once it was revoked (logged
        out, a password or role change, a reused refresh token). One past its own end raises
        SessionExpired instead, so its caller is told to log in again, not that it was ended."""
        ...


class SessionState(Enum):
    """What a session check found, remembered as such (answers are cached)."""

    LIVE = "live"
    REVOKED = "revoked"
    EXPIRED = "expired"

    def is_live(self) -> bool:
        """SessionChecker.is_live's answer for this state."""
        if self is SessionState.EXPIRED:
            raise SessionExpired()
        return self is SessionState.LIVE


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
        self._memo: TtlMemo[SessionState] = TtlMemo(ttl)
        self._deadline = deadline

    async def is_live(self, identity: Identity) -> bool:
        """Asked with the identity's own token, also once it has expired (a shell's owner who
        has not been seen for a while): the session decides, not the token's age."""

        async def lookup() -> SessionState:
            now = datetime.now(UTC)
            if identity.expires_at - LAPSING <= now:
                try:
                    return await self._ask(identity, lapsed=True)
                except grpc.aio.AioRpcError as error:
                    # A users service of an earlier release (a rolling upgrade) has no
                    # CheckSession: a token that still works asks as before.
                    if error.code() != grpc.StatusCode.UNIMPLEMENTED or identity.expires_at <= now:
                        return _state_of(error)
            try:
                return await self._ask(identity, lapsed=False)
            except grpc.aio.AioRpcError as error:
                return _state_of(error)

        return (await self._memo.get(identity.session_id, lookup)).is_live()

    async def _ask(self, identity: Identity, *, lapsed: bool) -> SessionState:
        """CheckSession (`lapsed`: the token may have expired) or ValidateToken; raises the
        call's error."""
        metadata = (
            bearer(identity.token),
            # The check is part of the caller's request: users logs it under its id.
            (CORRELATION_HEADER, correlation_id.get()),
        )
        # NO_SIDE_EFFECTS: a users replica killed under it is no 503.
        if lapsed:
            checked = await unary_with_second_try(
                self._stub.CheckSession,
                users_pb2.CheckSessionRequest(),
                metadata=metadata,
                deadline=self._deadline,
                retry_safe=True,
            )
            if checked.session_id != identity.session_id:
                return SessionState.REVOKED
            return _STATES.get(checked.state, SessionState.REVOKED)
        validated = await unary_with_second_try(
            self._stub.ValidateToken,
            users_pb2.ValidateTokenRequest(),
            metadata=metadata,
            deadline=self._deadline,
            retry_safe=True,
        )
        live = validated.valid and validated.session_id == identity.session_id
        return SessionState.LIVE if live else SessionState.REVOKED


# Refusals of the token presented, not answers about its session (see _state_of).
TOKEN_REFUSALS = frozenset({"TOKEN_EXPIRED", "TOKEN_INVALID", "TOKEN_MISSING"})


def _state_of(error: grpc.aio.AioRpcError) -> SessionState:
    """A refused session check's answer; any other failure is no answer (Unavailable).

    A refusal of the token itself (expired on its way to an earlier users release, signed with
    a key users has withdrawn) says nothing about its session: it is raised to this caller as
    Unauthenticated with its reason, never remembered as the session's state, where it would
    read as a logout for every other token of that session (SESSION_REVOKED, which signs the
    web client out, and the terminal's recheck ending the shells of a user still logged in)."""
    if error.code() != grpc.StatusCode.UNAUTHENTICATED:
        raise Unavailable("cannot verify the session right now; retry shortly") from None
    reason = _reason(error)
    if reason == SessionExpired.reason:
        return SessionState.EXPIRED
    if reason in TOKEN_REFUSALS:
        raise Unauthenticated(f"access token refused ({reason})", reason=reason) from None
    return SessionState.REVOKED


_STATES = {
    users_pb2.SESSION_STATE_LIVE: SessionState.LIVE,
    users_pb2.SESSION_STATE_REVOKED: SessionState.REVOKED,
    users_pb2.SESSION_STATE_EXPIRED: SessionState.EXPIRED,
}


def _reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason another service gave for `error`, if any."""
    status = parse_status(error.trailing_metadata())
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""
