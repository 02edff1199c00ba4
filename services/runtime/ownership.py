"""Which replica owns what: things that live in one process (a terminal's pseudo-terminal) are
recorded with their owner's address, so callers route to the owner, and are reported lost when
the owner is gone.

Records live in the cache: Redis when REDIS_URL is set, else in-process (one replica, where the
facade never finds a record and round robin reaches the only replica). Each replica holds a
lease on its liveness, `alive:<address>` = its incarnation (a token drawn at start), renewed
every beat and lapsing `ttl` seconds after its last one: a record whose owner's lease has lapsed
or names another incarnation (the address was reused by a new process) belongs to a lost
replica, and so does what it owned.

Every key has one writer, so no update races between replicas: a record and its owner's index
are written by the owner (one task at a time); the list of replicas is appended to by each
replica for itself, checked again at every beat, so a write lost to a concurrent one is
repaired within a beat. A replica also keeps what it owns in memory and writes it all again
when a beat finds its index short (Redis restarted empty): losing Redis loses no live record.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.runtime.cache import Cache
from services.runtime.errors import Unavailable
from services.runtime.lease import Lease
from services.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

TTL = 3.0
BEAT = 1.0
PRUNE_EVERY = 60  # beats
# An `exclusive` section's lease: what one holder may take (a terminal create spawns a shell),
# lapsing that long after a holder that died; how long another waits for it, and how often it
# looks again meanwhile.
EXCLUSIVE_TTL = 15.0
EXCLUSIVE_WAIT = 10.0
EXCLUSIVE_POLL = 0.02


def advertised_address(host: str, port: int) -> str:
    """The address other processes dial to reach a server bound to `host:port`: a wildcard
    host (0.0.0.0, ::) names no one, so it is replaced by this machine's own address (in
    Kubernetes, the pod's IP)."""
    bare = host.strip("[]")
    try:
        wildcard = ipaddress.ip_address(bare).is_unspecified if bare else True
    except ValueError:
        wildcard = False  # a host name: it resolves wherever it is dialled from
    if wildcard:
        bare = socket.gethostbyname(socket.gethostname())
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


@dataclass(frozen=True)
class Owned:
    """One thing a replica owns: its key (a session id), whose it is, where it lives, and what
    its owner recorded about it (shown once the owner is gone)."""

    key: str
    user: str
    replica: str
    incarnation: str
    facts: Mapping[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "user": self.user,
                "replica": self.replica,
                "incarnation": self.incarnation,
                "facts": dict(self.facts),
            }
        ).encode()

    @classmethod
    def decode(cls, key: str, raw: bytes) -> Owned | None:
        try:
            data = json.loads(raw)
            return cls(
                key,
                str(data["user"]),
                str(data["replica"]),
                str(data["incarnation"]),
                dict(data.get("facts") or {}),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("an ownership record is unreadable", extra={"key": key})
            return None


class Owners:
    """The read side, for whoever routes (the facade) and every replica: who owns a key, and
    whether its owner still lives."""

    def __init__(self, cache: Cache, service: str) -> None:
        self._cache = cache
        self._prefix = f"owners:{service}:"

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def find(self, key: str) -> Owned | None:
        raw = await self._cache.get(self._key("owned", key))
        return Owned.decode(key, raw) if raw is not None else None

    async def incarnation_at(self, replica: str) -> str | None:
        """The incarnation whose lease holds at `replica`, None when none does."""
        raw = await self._cache.get(self._key("alive", replica))
        return raw.decode() if raw is not None else None

    async def lost(self, owned: Owned) -> bool:
        """Whether `owned`'s owner is gone (its lease lapsed, or another process holds it)."""
        return await self.incarnation_at(owned.replica) != owned.incarnation

    async def wait_lost(self, owned: Owned, within: float) -> bool:
        """Whether `owned`'s owner turns out lost within `within` seconds (a broken connection
        to it is either a replica that died, whose lease then lapses, or a blip)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            if await self.lost(owned):
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))

    async def replicas(self) -> list[str]:
        raw = await self._cache.get(self._key("replicas"))
        return _strings(json.loads(raw)) if raw else []

    async def index(self, replica: str) -> dict[str, str]:
        """What `replica` owns (or owned, if it is gone): key -> user."""
        raw = await self._cache.get(self._key("held", replica))
        if not raw:
            return {}
        found = json.loads(raw)
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    async def held(self, user: str | None = None) -> list[tuple[Owned, bool]]:
        """Every recorded key of `user` (everyone's for None), on every replica, each with
        whether its owner is lost."""
        replicas = await self.replicas()
        indexes = await asyncio.gather(*(self.index(r) for r in replicas))
        keys = [k for idx in indexes for k, who in idx.items() if user is None or who == user]
        records = await asyncio.gather(*(self.find(k) for k in keys))
        found = [r for r in records if r is not None]
        alive = dict(
            zip(
                replicas,
                await asyncio.gather(*(self.incarnation_at(r) for r in replicas)),
                strict=True,
            )
        )
        return [(r, alive.get(r.replica) != r.incarnation) for r in found]


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


class Ownership(Owners):
    """This replica's side: its liveness lease, and the records of what it owns.

    `start(address)` once the server listens (the address is known then); `stop()` at shutdown
    gives the lease up, so what it owned is reported lost at once rather than after `ttl`.
    """

    def __init__(self, cache: Cache, service: str, *, ttl: float = TTL, beat: float = BEAT) -> None:
        super().__init__(cache, service)
        self.ttl = ttl
        self.beat = beat
        self.incarnation = secrets.token_hex(8)
        self.address: str | None = None
        self._beating: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()
        self._mine: dict[str, Owned] = {}  # what this replica owns, as recorded

    async def start(self, address: str) -> None:
        self.address = address
        await self._renew()
        self._beating = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._beating)
        self._beating = None
        if self.address is not None:
            with contextlib.suppress(Exception):  # shutting down: nothing to do about it
                if await self.incarnation_at(self.address) == self.incarnation:
                    await self._cache.delete(self._key("alive", self.address))

    def mine(self, owned: Owned) -> bool:
        return owned.replica == self.address and owned.incarnation == self.incarnation

    async def claim(self, key: str, user: str, facts: Mapping[str, Any]) -> Owned | None:
        """Records `key` as this replica's (None before `start`: not yet reachable, so
        nothing to route to; an unrecorded key is reached by round robin)."""
        if self.address is None:
            return None
        owned = Owned(key, user, self.address, self.incarnation, facts)
        async with self._writing:
            self._mine[key] = owned
            await self._cache.set(self._key("owned", key), owned.encode())
            index = await self.index(self.address)
            index[key] = user
            await self._write_index(self.address, index)
        return owned

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, *, within: float = EXCLUSIVE_WAIT) -> AsyncIterator[None]:
        """One holder at a time among every replica (and task) for `name`: a count taken across
        replicas and the create it allows then hold together, so a limit is reserved rather
        than merely checked. A lease in the cache; Unavailable when another holds it past
        `within`. Where the cache cannot be reached the section runs unguarded (what other
        replicas hold cannot be counted then either)."""
        key = self._key("exclusive", name)
        holder = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (term := await self._cache.lead(key, holder, EXCLUSIVE_TTL, 0)) is not None:
            if term > 0:
                break
            if loop.time() >= deadline:
                raise Unavailable(f"{name} is busy elsewhere; retry", reason="BUSY")
            await asyncio.sleep(EXCLUSIVE_POLL)
        try:
            yield
        finally:
            if term is not None:
                with contextlib.suppress(Exception):  # it lapses after EXCLUSIVE_TTL anyway
                    await self._cache.release(Lease(key, holder, term, EXCLUSIVE_TTL))
                    # The lease's term counter is not needed between holders: not kept per
                    # name forever.
                    await self._cache.delete(key + ":term")

    async def update(self, key: str, user: str, facts: Mapping[str, Any]) -> None:
        """Rewrites what the record of a key of this replica's own says (it is in the index
        already)."""
        if self.address is not None and key in self._mine:
            owned = Owned(key, user, self.address, self.incarnation, facts)
            self._mine[key] = owned
            await self._cache.set(self._key("owned", key), owned.encode())

    async def forget(self, key: str) -> None:
        """Forgets a key of this replica's own (closed)."""
        if self.address is not None:
            await self.release(Owned(key, "", self.address, self.incarnation))

    async def release(self, owned: Owned) -> None:
        """Forgets `owned` (closed): its record and its entry in its owner's index, whoever
        the owner was (a survivor forgets a lost replica's keys as their users close them)."""
        async with self._writing:
            if self.mine(owned):
                self._mine.pop(owned.key, None)
            await self._cache.delete(self._key("owned", owned.key))
            index = await self.index(owned.replica)
            if index.pop(owned.key, None) is not None:
                await self._write_index(owned.replica, index)

    async def _write_index(self, replica: str, index: Mapping[str, str]) -> None:
        await self._cache.set(self._key("held", replica), json.dumps(dict(index)).encode())

    async def _renew(self) -> None:
        assert self.address is not None
        await self._cache.set(self._key("alive", self.address), self.incarnation.encode(), self.ttl)
        known = await self.replicas()
        if self.address not in known:
            await self._cache.set(
                self._key("replicas"), json.dumps([*known, self.address]).encode()
            )
        if self._mine:
            await self._restore()

    async def _restore(self) -> None:
        """Writes every record of this replica's again if its index misses one."""
        assert self.address is not None
        async with self._writing:
            index = await self.index(self.address)
            if self._mine.keys() <= index.keys():
                return
            log.warning("ownership records were lost (the cache restarted?); writing them again")
            for key, owned in self._mine.items():
                await self._cache.set(self._key("owned", key), owned.encode())
                index[key] = owned.user
            await self._write_index(self.address, index)

    async def reachable(self) -> bool:
        """Whether the records' store answers (a miss then means unrecorded)."""
        return await self._cache.ping()

    async def prune(self) -> list[str]:
        """Takes replicas that are gone and owned nothing left (their users closed what was
        lost) off the list, so addresses that come and go (pods) do not pile up; returns them.
        A replica taken off by mistake (it started meanwhile) puts itself back at its beat."""
        known = await self.replicas()
        gone = [
            replica
            for replica in known
            if replica != self.address
            and await self.incarnation_at(replica) is None
            and not await self.index(replica)
        ]
        if gone:
            kept = [r for r in await self.replicas() if r not in gone]
            await self._cache.set(self._key("replicas"), json.dumps(kept).encode())
            for replica in gone:
                await self._cache.delete(self._key("held", replica))
        return gone

    async def _beat_forever(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.beat)
            beats += 1
            try:
                await self._renew()
                if beats % PRUNE_EVERY == 0:
                    await self.prune()
            except Exception:  # a beat that fails is retried at the next one
                log.exception("renewing the replica's lease failed")
