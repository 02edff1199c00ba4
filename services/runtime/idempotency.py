"""Idempotency keys as Stripe keeps them, for any service's creating RPCs.

A key is scoped to the user who sent it. The caller, the method and the key come from the
call's context, as the server interceptor filled it. The first request with a key claims it (status
`in_flight`) together with a hash of the method and the request bytes; when the request
succeeds its response bytes are stored (status `done`) for `ttl` seconds (24 h). Then:

* the same key and the same request again: the stored response, and nothing runs twice;
* the same key with another request: InvalidArgument, reason IDEMPOTENCY_KEY_REUSED (422);
* the same key while the first request still runs: Conflict, reason IDEMPOTENCY_IN_PROGRESS
  (409);
* a first request that fails (any error, or the caller hanging up) releases the key, so a
  retry runs afresh; an expired key is free again.

A claim is a lease: it holds for `in_flight_timeout` seconds (10) and the request renews it
every third of that while it runs, however long it takes. A claim whose process died (kill -9,
a lost node) stops being renewed, so it counts as abandoned within that time and a retry on
another replica claims it and runs afresh, rather than waiting out a long fixed timeout.

A handler whose work is one database transaction settles the key inside it (`settle`): the work
and the stored response commit together, so nothing that committed can run again - not after a
crash between the two, nor when the caller hangs up right after the commit (which would
otherwise release the key). Other handlers are settled after they return, as before.

Each service adds the table to its own metadata (`idempotency_table(metadata)`) and creates it
in its own migration.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import (
    Column,
    ColumnElement,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.runtime.clock import utc_now
from services.runtime.context import current_method, idempotency_key
from services.runtime.db import Database
from services.runtime.errors import Conflict, InvalidArgument
from services.runtime.interceptors import require_identity
from services.runtime.sqltypes import UtcDateTime
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TABLE = "idempotency_keys"
IN_FLIGHT = "in_flight"
DONE = "done"
DEFAULT_TTL = 24 * 3600.0
DEFAULT_IN_FLIGHT_TIMEOUT = 10.0
MAX_KEY_LENGTH = 255
# Expired keys are swept by the requests themselves, at most this often per process.
PURGE_EVERY = 3600.0
# Seconds between tries to free a key whose release failed (its database away).
RELEASE_RETRY = 0.5

M = TypeVar("M", bound=Message)
T = TypeVar("T")


def idempotency_table(metadata: MetaData) -> Table:
    """The keys table, added to a service's metadata."""
    return Table(
        TABLE,
        metadata,
        Column("user_id", String(64), primary_key=True),
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("status", String(16), nullable=False),
        Column("response", LargeBinary, nullable=True),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("locked_until", UtcDateTime(), nullable=True),
        Column("expires_at", UtcDateTime(), nullable=False),
        Index(f"ix_{TABLE}_expires_at", "expires_at"),
    )


class KeyReused(InvalidArgument):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different request;"
            " use a new key for a new request",
            fields=[("idempotencyKey", "was already used with a different request")],
        )


class KeyInProgress(Conflict):
    reason = "IDEMPOTENCY_IN_PROGRESS"

    def __init__(self) -> None:
        super().__init__("a request with this Idempotency-Key is still in progress; retry shortly")


class _Resumed:
    """A claim that took over the same request's abandoned one (its replica died mid-way)."""


RESUMED = _Resumed()


@dataclass
class _Claim:
    """The key this request claimed, in the context its handler runs in."""

    store: IdempotencyStore
    user_id: str
    key: str
    request_hash: str
    claimed_at: datetime  # the claim's identity (its created_at): a takeover writes its own
    resumed: bool = False
    settled: bool = False


_claimed: contextvars.ContextVar[_Claim | None] = contextvars.ContextVar(
    "idempotency_claim", default=None
)


def resuming() -> bool:
    """Whether this request retries the same request whose replica died before answering: some
    of its work (what no transaction covered: a file written) may already be done. A handler
    may then accept its own earlier result instead of refusing it as a conflict."""
    claim = _claimed.get()
    return claim is not None and claim.resumed


def caller_key(key: str, request: Message) -> tuple[str, str]:
    """The caller's user id and the request's fingerprint, once `key` is known to be one."""
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidArgument.field(
            "idempotencyKey", f"must be at most {MAX_KEY_LENGTH} printable characters"
        )
    # The method's bare name, as callers named it before the context carried it: keys stored
    # then still match their retries.
    return require_identity().user_id, fingerprint(current_method.get().rsplit("/", 1)[-1], request)


def fingerprint(method: str, request: Message) -> str:
    """What makes two requests "the same": the method and the request's canonical bytes."""
    digest = hashlib.sha256(method.encode())
    digest.update(b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.hexdigest()


class IdempotencyStore:
    def __init__(
        self,
        db: Database,
        table: Table,
        *,
        ttl: float = DEFAULT_TTL,
        in_flight_timeout: float = DEFAULT_IN_FLIGHT_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._table = table
        self._ttl = timedelta(seconds=ttl)
        self._in_flight_timeout = timedelta(seconds=in_flight_timeout)
        self._clock = clock
        self._purged_at = -PURGE_EVERY
        self._releasing: set[asyncio.Task[None]] = set()  # releases retried in the background

    async def run(
        self, request: Message, response_type: type[M], handler: Callable[[], Awaitable[M]]
    ) -> M:
        """Run `handler` once per key: with the caller's `Idempotency-Key`, a repeat of the
        same method and request gets the first response; without one, `handler` simply runs."""
        key = idempotency_key.get()
        if not key:
            return await handler()
        user_id, request_hash = caller_key(key, request)
        await self._maybe_purge()
        claimed_at = self._clock()
        stored = await self._claim(user_id, key, request_hash, claimed_at)
        if isinstance(stored, bytes):
            return response_type.FromString(stored)
        claim = _Claim(self, user_id, key, request_hash, claimed_at, resumed=stored is RESUMED)
        token = _claimed.set(claim)
        renewing = asyncio.get_running_loop().create_task(self._renew(claim))
        try:
            response = await handler()
        except BaseException:
            # Frees the key only while it is in flight: one settled in a transaction that
            # committed stays done (its work happened), one whose transaction rolled back is
            # free for a retry.
            await asyncio.shield(self._release(claim))
            raise
        finally:
            _claimed.reset(token)
            await cancel_and_wait(renewing)
        if not claim.settled:
            await self._finish(claim, response.SerializeToString(deterministic=True))
        return response

    async def _renew(self, claim: _Claim) -> None:
        """Keep the claim's lease while its request runs (a failed renewal is tried again at
        the next beat: the lease is three beats long)."""
        beat = self._in_flight_timeout.total_seconds() / 3
        while True:
            await asyncio.sleep(beat)
            try:
                async with self._db.transaction() as tx:
                    await tx.execute(
                        update(self._table)
                        .where(self._still_ours(claim))
                        .values(locked_until=self._clock() + self._in_flight_timeout)
                    )
            except Exception:
                log.warning("could not renew an idempotency claim", exc_info=True)

    async def settle(self, tx: AsyncSession, respond: Callable[[], Message]) -> None:
        """Inside the handler's own transaction: store the response for the key this request
        claimed, to commit (or roll back) with the work. Nothing when the request has no key
        (and then the response is not built)."""
        claim = _claimed.get()
        if claim is None or claim.store is not self:
            return
        response = respond().SerializeToString(deterministic=True)
        if not await self._mark_done(tx, claim, response):
            # The claim lapsed (this request stalled past its lease) and a retry took the key
            # over: the retry's work is the one that counts, so this transaction must not
            # commit (the caller's retry gets the stored answer).
            raise KeyInProgress()
        claim.settled = True  # the handler returns only if that transaction committed

    def settling(
        self, respond: Callable[[T], Message]
    ) -> Callable[[AsyncSession, T], Awaitable[None]]:
        """`settle` for work that hands its result to a callback inside its own transaction
        (a use case's `settle=`): `respond(result)` is the answer stored with the work, so a
        retry after a hang-up gets it and never does the work twice."""

        async def settle(tx: AsyncSession, result: T) -> None:
            await self.settle(tx, lambda: respond(result))

        return settle

    async def _claim(
        self, user_id: str, key: str, request_hash: str, now: datetime | None = None
    ) -> bytes | _Resumed | None:
        """Claim the key at `now` (None; RESUMED when it takes over the same request's abandoned
        claim) or return the stored response; raise when neither can be. A claim's time is its
        identity (`created_at`): a takeover writes its own."""
        now = now or self._clock()
        claim = {
            "request_hash": request_hash,
            "status": IN_FLIGHT,
            "response": None,
            "created_at": now,
            "locked_until": now + self._in_flight_timeout,
            "expires_at": now + self._ttl,
        }
        t = self._table
        async with self._db.transaction() as tx:
            # Two tries: a row seen by the insert may be released before the select reads it.
            for _ in range(2):
                if await self._insert(tx, {"user_id": user_id, "key": key, **claim}):
                    return None
                query = select(t).where(t.c.user_id == user_id, t.c.key == key).with_for_update()
                row = (await tx.execute(query)).first()
                if row is None:
                    continue
                abandoned = row.status == IN_FLIGHT and (row.locked_until or now) <= now
                resumed = abandoned and row.request_hash == request_hash
                if row.expires_at <= now or resumed:
                    await tx.execute(
                        update(t).where(t.c.user_id == user_id, t.c.key == key).values(claim)
                    )
                    return RESUMED if resumed and row.expires_at > now else None
                if row.request_hash != request_hash:
                    raise KeyReused()
                if row.status == DONE and row.response is not None:
                    return bytes(row.response)
                raise KeyInProgress()
        raise KeyInProgress()

    async def _insert(self, tx: AsyncSession, values: dict[str, Any]) -> bool:
        module: Any = postgresql if self._db.dialect == "postgresql" else sqlite
        statement = (
            module.insert(self._table)
            .values(values)
            .on_conflict_do_nothing()
            .returning(self._table.c.key)
        )
        return (await tx.execute(statement)).first() is not None

    async def _finish(self, claim: _Claim, response: bytes) -> None:
        async with self._db.transaction() as tx:
            if not await self._mark_done(tx, claim, response):
                # Work outside a transaction of ours ran while a retry took the key over.
                log.warning("an idempotency claim was taken over before its answer was stored")

    async def _mark_done(self, tx: AsyncSession, claim: _Claim, response: bytes) -> bool:
        """Store `response` for the claim, if it is still this request's (in flight, not taken
        over by a retry after its lease lapsed); whether it was."""
        result = await tx.execute(
            update(self._table)
            .where(self._still_ours(claim))
            .values(status=DONE, response=response, locked_until=None)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _release(self, claim: _Claim) -> None:
        """Free the key `claim` holds. When that fails (the database is
        away, likely why the request failed too), it is tried again in the background until
        it works or the claim's lease would lapse anyway: a retry then finds the key free as
        soon as the database is back, not a 409 until the lease runs out."""
        try:
            await self._delete_claim(claim)
        except Exception:
            log.exception("could not release an idempotency key; retrying in the background")
            give_up = self._clock() + self._in_flight_timeout
            task = asyncio.get_running_loop().create_task(self._release_later(claim, give_up))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_later(self, claim: _Claim, give_up: datetime) -> None:
        while self._clock() < give_up:
            await asyncio.sleep(RELEASE_RETRY)
            try:
                await self._delete_claim(claim)
            except Exception as error:
                log.debug("idempotency key still not released", extra={"error": str(error)})
            else:
                log.info("idempotency key released once its database answered again")
                return

    async def _delete_claim(self, claim: _Claim) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(delete(self._table).where(self._still_ours(claim)))

    def _still_ours(self, claim: _Claim) -> ColumnElement[bool]:
        """The row of `claim` while it is still this request's: in flight, and its own claim,
        never a later one that took the key over after its lease lapsed."""
        t = self._table
        return and_(
            t.c.user_id == claim.user_id,
            t.c.key == claim.key,
            t.c.request_hash == claim.request_hash,
            t.c.status == IN_FLIGHT,
            t.c.created_at == claim.claimed_at,
        )

    async def _maybe_purge(self) -> None:
        if time.monotonic() - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = time.monotonic()
        t = self._table
        async with self._db.transaction() as tx:
            await tx.execute(delete(t).where(t.c.expires_at <= self._clock()))
