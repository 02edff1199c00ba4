"""Routing to the replica that owns what a call names: a terminal session lives in one replica's
process, which records itself as its owner (services/runtime/ownership.py). A call naming a
session goes to the owner through a channel of that replica alone; creates, lists and anything
unrecorded go round robin, as every other call does.

An owner that is gone (its lease lapsed) is not dialled: round robin then reaches a surviving
replica, which reports the session exited with reason `replica_lost`. A call that finds its
owner unreachable waits, at most one lease, to learn whether the owner is lost, and then asks a
survivor: a killed replica costs its sessions' callers a short wait, not a 503 or a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from facade.transcoding import Endpoint
from services.runtime.cache import Cache
from services.runtime.channels import create_channel
from services.runtime.descriptors import method_path
from services.runtime.ownership import BEAT, TTL, Owned, Owners
from services.runtime.tasks import cancel_and_wait

# Services whose resources live on one replica, and the request field that names one.
PLACED: Mapping[str, str] = {"terminal": "session_id"}
# How long a caller waits to learn whether an unreachable owner is lost: one lease and a beat.
LOSS_WAIT = TTL + BEAT
# A replica's lease, as last read, is believed this long (a loss is seen this much later).
LEASE_READ_FOR = BEAT / 2
# Records never change owner: the latest ones are kept here (a record released since only
# sends a call to its old owner, which answers NOT_FOUND as the record would have).
RECORDS_KEPT = 10_000


class Placement:
    """One placed service: who owns a key, and a channel to each owner (made on first use,
    dropped when its replica is found lost, closed with the app)."""

    def __init__(
        self,
        service: ServiceDescriptor,
        owners: Owners,
        *,
        deadline: float,
        field: str,
        loss_wait: float = LOSS_WAIT,
    ) -> None:
        self._service = service
        self.owners = owners
        self._deadline = deadline
        self.field = field
        self.loss_wait = loss_wait
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._records: OrderedDict[str, Owned] = OrderedDict()
        self._leases: dict[str, tuple[str | None, float]] = {}  # replica -> (incarnation, when)

    @classmethod
    def of(
        cls, name: str, service: ServiceDescriptor, cache: Cache, *, deadline: float
    ) -> Placement:
        return cls(service, Owners(cache, name), deadline=deadline, field=PLACED[name])

    async def owner(self, key: str) -> tuple[Owned, grpc.aio.Channel] | None:
        """The live owner of `key` and a channel to it; None when `key` is unrecorded or its
        owner is lost (round robin then answers)."""
        if not key:
            return None
        owned = await self._record(key)
        if owned is None:
            return None
        current = await self._incarnation_at(owned.replica)
        if current != owned.incarnation:
            if current is None:  # nothing lives there now (else: a new process, still dialled)
                await self.drop(owned.replica)
            return None
        return owned, self.channel(owned.replica)

    async def _record(self, key: str) -> Owned | None:
        owned = self._records.get(key)
        if owned is not None:
            self._records.move_to_end(key)
            return owned
        owned = await self.owners.find(key)
        if owned is not None:  # an unknown key may be recorded any moment: not kept
            self._records[key] = owned
            if len(self._records) > RECORDS_KEPT:
                self._records.popitem(last=False)
        return owned

    async def _incarnation_at(self, replica: str) -> str | None:
        now = time.monotonic()
        known = self._leases.get(replica)
        if known is not None and now - known[1] < LEASE_READ_FOR:
            return known[0]
        incarnation = await self.owners.incarnation_at(replica)
        self._leases[replica] = (incarnation, now)
        return incarnation

    async def lost_by(self, error: grpc.aio.AioRpcError, owned: Owned) -> bool:
        """Whether a call to `owned`'s owner failed because its replica is gone."""
        return error.code() == grpc.StatusCode.UNAVAILABLE and await self.lost_meanwhile(owned)

    async def lost_meanwhile(self, owned: Owned) -> bool:
        """After a failure to reach `owned`'s owner: whether it turns out lost (within one
        lease); its channel is then dropped, unless a new process serves that address."""
        if not await self.owners.wait_lost(owned, self.loss_wait):
            return False
        self._leases.pop(owned.replica, None)
        if await self.owners.incarnation_at(owned.replica) is None:
            await self.drop(owned.replica)
        return True

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = create_channel([address], [self._service], deadline=self._deadline)
            self._channels[address] = channel
        return channel

    async def drop(self, address: str) -> None:
        """Stops using `address`'s channel; it is closed once calls that may have picked it up
        meanwhile have ended (their deadline), not under them."""
        self._leases.pop(address, None)
        channel = self._channels.pop(address, None)
        if channel is not None:
            task = asyncio.get_running_loop().create_task(self._close_later(channel))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_later(self, channel: grpc.aio.Channel) -> None:
        try:
            await asyncio.sleep(self._deadline)
        finally:
            await channel.close()

    async def close(self) -> None:
        for address in list(self._channels):
            await self.drop(address)
        for task in list(self._closing):
            await cancel_and_wait(task)  # closes its channel now


class PlacedCall:
    """An endpoint's unary call that goes to the owner of the key its request names (same
    signature as a bound multicallable: `await call(request, timeout=..., metadata=...)`)."""

    def __init__(self, endpoint: Endpoint, placement: Placement) -> None:
        self._default = endpoint.call
        self._placement = placement
        self._path = method_path(endpoint.route.method)
        self._serialize: Callable[[Message], bytes] = endpoint.codec.request_class.SerializeToString
        # Per owner address: the channel the call was bound on (a dropped channel's address
        # gets a new one) and the call.
        self._calls: dict[str, tuple[grpc.aio.Channel, Any]] = {}

    def _bound(self, address: str, channel: grpc.aio.Channel) -> Any:
        known = self._calls.get(address)
        if known is not None and known[0] is channel:
            return known[1]
        # Raw bytes back, as the endpoint's own call (the codec reads them).
        call = channel.unary_unary(
            self._path,
            request_serializer=self._serialize,
            response_deserializer=None,
            _registered_method=True,
        )
        self._calls[address] = (channel, call)
        return call

    async def __call__(
        self,
        request: Message,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a multicallable's own signature
        metadata: Any = None,
    ) -> Any:
        started = time.monotonic()
        found = await self._placement.owner(str(getattr(request, self._placement.field, "")))
        if found is None:
            return await self._default(request, timeout=timeout, metadata=metadata)
        owned, channel = found
        try:
            call = self._bound(owned.replica, channel)
            return await call(request, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            if not await self._placement.lost_by(error, owned):
                raise
        # The owner is gone and the session with it: a survivor says so, within the deadline.
        left = None if timeout is None else max(0.1, timeout - (time.monotonic() - started))
        return await self._default(request, timeout=left, metadata=metadata)


def place_endpoints(endpoints: tuple[Endpoint, ...], placement: Placement, service: str) -> None:
    """Binds every unary endpoint of `service` whose request names a placed key to its owner."""
    for endpoint in endpoints:
        route = endpoint.route
        if route.service != service or route.streaming or route.streamed_body:
            continue
        if placement.field in endpoint.codec.request_class.DESCRIPTOR.fields_by_name:
            endpoint.call = PlacedCall(endpoint, placement)
