"""Server and client interceptors: correlation ids, auth, error mapping, metrics, access logs.

Servicers never read the authorization header or log requests themselves: they read the
caller from `current_identity` and raise domain errors.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from services.runtime.addresses import IPNetwork, grpc_peer_host, resolve_client_address
from services.runtime.auth import (
    SessionChecker,
    SessionRevoked,
    TokenVerifier,
    bearer,
    bearer_token,
)
from services.runtime.context import (
    CORRELATION_HEADER,
    Identity,
    accept_correlation_id,
    client_address,
    correlation_id,
    current_identity,
    current_method,
    idempotency_key,
)
from services.runtime.db import database_conflict, database_unreachable
from services.runtime.descriptors import MethodRule
from services.runtime.errors import (
    Conflict,
    DomainError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from services.runtime.file_errors import file_error
from services.runtime.metrics import RPC_HANDLED, RPC_SECONDS
from services.runtime.status import internal_status, to_status
from services.runtime.validation import validate, validated

log = logging.getLogger("stockfolio.rpc")

# Health checks and reflection are public by declaration (DESIGN.md), as is anything not ours.
PUBLIC = MethodRule(public=True, required_role="", idempotent=True)
# How long a refused client stream is read on with nothing arriving before its status goes
# anyway, and how long at most in all (see _drain).
DRAIN_SECONDS = 5.0
DRAIN_MAX_SECONDS = 300.0
# A caller's deadline fires before ours, which starts when its headers arrive: a call its caller
# ends this close to our deadline ran out of time, even if its cancel reached us first.
DEADLINE_SLACK = 0.25


def _metadata_value(metadata: Any, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key and isinstance(v, str):
            return v
    return None


def _metadata_values(metadata: Any, key: str) -> list[str]:
    return [v for k, v in metadata or () if k == key and isinstance(v, str)]


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """One interceptor for every cross-cutting concern, so each call pays for one wrapper."""

    def __init__(
        self,
        service: str,
        rules: Mapping[str, MethodRule],
        codec: TokenVerifier,
        sessions: SessionChecker,
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        self._trusted_proxies = tuple(trusted_proxies)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}
        self._counters: dict[tuple[str, grpc.StatusCode], Any] = {}
        self._timers: dict[str, Any] = {}
        self._service = service
        self._rules = rules
        self._codec = codec
        self._sessions = sessions

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        # The wrapper depends only on the method, so it is built once per method, not per call.
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None:
            return None
        rule = self._rules.get(method, PUBLIC)
        quiet = not method.startswith("/stockfolio.")
        wrapped = _wrap(handler, self, method, rule, quiet)
        self._wrapped[method] = wrapped
        return wrapped

    async def authorize(self, rule: MethodRule, metadata: Any) -> Identity | None:
        token = bearer_token(metadata)
        if rule.public:
            return None
        if token is None:
            raise Unauthenticated("missing bearer token", reason="TOKEN_MISSING")
        if rule.lapsed_token:
            # Its RPC answers only about the token's session, live or not (CheckSession).
            return self._codec.read_lapsed_access(token)
        identity = self._codec.read_access(token, allow_service=rule.internal)
        if identity.service:
            # Services act for no user: they reach internal RPCs and nothing else.
            return identity
        if rule.internal:
            raise PermissionDenied("only Stockfolio services may call this")
        # A session past its own end raises SessionExpired (SESSION_EXPIRED) from the check.
        if not await self._sessions.is_live(identity):
            raise SessionRevoked()
        if rule.required_role and rule.required_role not in identity.roles:
            raise PermissionDenied(f"requires the {rule.required_role} role")
        return identity

    def begin(
        self, method: str, metadata: Any, context: grpc.aio.ServicerContext
    ) -> tuple[Any, ...]:
        cid = accept_correlation_id(_metadata_value(metadata, CORRELATION_HEADER))
        # Only a trusted proxy (the facade) may speak for the client's address; anyone else
        # could dodge per-address limits by inventing one.
        address = resolve_client_address(
            grpc_peer_host(context.peer()),
            _metadata_values(metadata, "x-forwarded-for"),
            self._trusted_proxies,
        )
        return (
            correlation_id.set(cid),
            current_identity.set(None),
            client_address.set(address),
            idempotency_key.set(_metadata_value(metadata, "idempotency-key") or ""),
            current_method.set(method),
        )

    @staticmethod
    def end(tokens: tuple[Any, ...]) -> None:
        try:
            correlation_id.reset(tokens[0])
            current_identity.reset(tokens[1])
            client_address.reset(tokens[2])
            idempotency_key.reset(tokens[3])
            current_method.reset(tokens[4])
        except ValueError:
            # A stream cancelled from outside is finalized in another context, where these
            # tokens mean nothing; the call's own context is gone with it.
            pass

    def finish(self, method: str, code: grpc.StatusCode, started: float, quiet: bool) -> None:
        elapsed = time.perf_counter() - started
        counter = self._counters.get((method, code))
        if counter is None:
            name = method.rsplit("/", 1)[-1]
            counter = RPC_HANDLED.labels(self._service, name, code.name)
            self._counters[(method, code)] = counter
            self._timers.setdefault(method, RPC_SECONDS.labels(self._service, name))
        counter.inc()
        self._timers[method].observe(elapsed)
        if not quiet:
            level = logging.INFO if code != grpc.StatusCode.INTERNAL else logging.ERROR
            log.log(
                level,
                "rpc",
                extra={"method": method, "code": code.name, "ms": round(elapsed * 1000, 2)},
            )


def _cancelled_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """Why a handler was cancelled: its deadline passed, or the client went away.

    Both reach the handler the same way, as its task's cancellation, so the deadline tells them
    apart: within DEADLINE_SLACK of it, the caller's own deadline fired (its cancel can arrive
    while ours has a few milliseconds left)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= DEADLINE_SLACK:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _deadline_passed(context: grpc.aio.ServicerContext) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


def _status_for(error: BaseException) -> tuple[grpc.StatusCode, str, tuple[Any, ...]]:
    if isinstance(error, DomainError):
        return to_status(error)
    if isinstance(error, NotImplementedError):
        # The generated base servicer raises it for RPCs a later issue fills in.
        return grpc.StatusCode.UNIMPLEMENTED, "not implemented yet", ()
    known = file_error(error)
    if known is not None:
        # A file changed under the request, a name the filesystem refuses: the caller's.
        # With its traceback: the same errno can be our own fault (a program not installed).
        number = getattr(error, "errno", 0)
        log.warning("file error", extra={"reason": known.reason, "errno": number}, exc_info=error)
        return to_status(known)
    if database_conflict(error):
        # Lost to another transaction (a deadlock, a serialization failure), rolled back whole
        # after its runs (Database.run_in_transaction): ABORTED (409), worth a retry; the
        # database is there, so not UNAVAILABLE.
        log.warning("database conflict", extra={"error": str(error).splitlines()[0]})
        return to_status(
            Conflict(
                "the change met another one made at the same moment and was not made; retry it",
                reason="TRANSACTION_CONFLICT",
            )
        )
    if database_unreachable(error):
        # The database is down or restarting: UNAVAILABLE (503, retried), not a 500.
        log.warning("database unreachable", extra={"error": str(error).splitlines()[0]})
        return to_status(Unavailable("the database is unavailable; retry shortly"))
    log.error("unhandled error", exc_info=error)
    return internal_status()


class _Call:
    """What every wrapped call does around its handler, whatever its shape: context in,
    authorize, map any failure to its status once, count and log, context out."""

    __slots__ = (
        "code",
        "context",
        "finished",
        "method",
        "owner",
        "quiet",
        "requests",
        "rule",
        "started",
        "tokens",
    )

    def __init__(
        self,
        owner: ServerInterceptor,
        method: str,
        rule: MethodRule,
        quiet: bool,
        context: grpc.aio.ServicerContext,
        requests: AsyncIterator[Any] | None = None,
    ) -> None:
        """`requests`: a client stream answered once (an upload), read to its end before a
        refusal is sent (_drain)."""
        self.owner, self.method, self.rule, self.quiet = owner, method, rule, quiet
        self.context = context
        self.requests = requests
        self.code = grpc.StatusCode.OK
        self.finished = False

    async def __aenter__(self) -> None:
        metadata = self.context.invocation_metadata()
        self.tokens = self.owner.begin(self.method, metadata, self.context)
        self.started = time.perf_counter()
        # Entered: a failure to authorize is mapped by __aexit__ like any other.
        try:
            current_identity.set(await self.owner.authorize(self.rule, metadata))
        except BaseException as error:
            if not await self.__aexit__(type(error), error, None):
                raise

    async def __aexit__(self, kind: Any, error: BaseException | None, _trace: Any) -> bool:
        try:
            if error is None:
                return False
            if isinstance(error, grpc.aio.AbortError):
                self.code = self.context.code() or grpc.StatusCode.UNKNOWN
                return False
            if isinstance(error, asyncio.CancelledError):
                self.code = _cancelled_code(self.context)
                return False
            if not isinstance(error, Exception):
                return False
            self.code, message, trailers = _status_for(error)
            if self.requests is not None:
                try:
                    await _drain(self.requests, self.context)
                except asyncio.CancelledError:
                    # Its caller left or its deadline passed while it was read: counted and
                    # logged as what the caller saw. (context.cancelled() never says so: it
                    # reads the status this side set.)
                    self.code = _cancelled_code(self.context)
                    raise
                if _deadline_passed(self.context):
                    # Read on past it (the stream broke, the drain timed out): no one hears.
                    self.code = grpc.StatusCode.DEADLINE_EXCEEDED
            # Counted and logged before the status leaves: a caller who has its answer finds
            # the line and the count already there.
            self._finish()
            await self.context.abort(self.code, message, trailing_metadata=trailers)
            return False  # unreachable: abort raises
        finally:
            self._finish()
            self.owner.end(self.tokens)

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.owner.finish(self.method, self.code, self.started, self.quiet)


async def _drain(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
    """Read what the client still sends before its stream is refused. A status that reaches
    grpc's asyncio client while it is writing is replaced there by INTERNAL "Internal error from
    Core" (grpc/grpc#36066): a refused upload (a token, a project, a quota) would reach the user
    as a 500. Bounded: a client that sends nothing for DRAIN_SECONDS, or still sends after
    DRAIN_MAX_SECONDS, is refused anyway. (A bound of DRAIN_SECONDS in all refused a slow
    uploader midway: its facade, still writing, answered 500 now and then, 1 in 36 uploads
    of 15 MB over 6 s, 12 at once.)

    Raises CancelledError if the caller left or its deadline passed meanwhile."""
    loop = asyncio.get_running_loop()
    last = loop.time() + DRAIN_MAX_SECONDS
    try:
        async with asyncio.timeout(DRAIN_SECONDS) as bound:
            async for _ in requests:
                bound.reschedule(min(loop.time() + DRAIN_SECONDS, last))
            # grpc ends the stream alike when the client has sent everything and when the call
            # was cancelled under the read (its caller left, its deadline passed). The cancel
            # comes to this task apart, from a completion grpc queued with the failed read's,
            # and may not have come yet: one more read, answered after it, waits for it. On a
            # live call that read ends at once.
            await context.read()
    except Exception:  # the stream broke, or timed out: refused as it is
        return


def _checked(request: Any, streaming: bool, quiet: bool) -> Any:
    """The request after its protos' rules: checked now, or each message as it arrives.

    Runs after authorization, so an anonymous caller learns nothing about the rules' details.
    Health and reflection (quiet) are not ours and carry no rules.
    """
    if quiet:
        return request
    if streaming:
        return validated(request)
    validate(request)
    return request


def _wrap(
    handler: grpc.RpcMethodHandler,
    owner: ServerInterceptor,
    method: str,
    rule: MethodRule,
    quiet: bool,
) -> grpc.RpcMethodHandler:
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary_response(request: Any, context: grpc.aio.ServicerContext) -> Any:
            requests = request if handler.request_streaming else None
            async with _Call(owner, method, rule, quiet, context, requests):
                request = _checked(request, handler.request_streaming, quiet)
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(unary_response, handler.request_deserializer, handler.response_serializer)

    inner_stream = handler.unary_stream or handler.stream_stream

    async def stream_response(
        request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        async with _Call(owner, method, rule, quiet, context):
            request = _checked(request, handler.request_streaming, quiet)
            result = inner_stream(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result
            else:
                for item in result:
                    yield item

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(stream_response, handler.request_deserializer, handler.response_serializer)


def require_identity() -> Identity:
    """The authenticated caller; servicers of protected RPCs call this."""
    identity = current_identity.get()
    if identity is None:
        raise Unauthenticated("authentication required", reason="TOKEN_MISSING")
    return identity


def outgoing_metadata(identity: Identity | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata for a call to another service: the correlation id and, if given, the caller's
    own token (a service acts for its caller, never with more rights)."""
    found: list[tuple[str, str]] = [(CORRELATION_HEADER, correlation_id.get())]
    if identity is not None:
        found.append(bearer(identity.token))
    return tuple(found)
