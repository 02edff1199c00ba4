"""Session checks for services other than users: ask users over gRPC, remember briefly."""

from __future__ import annotations

import contextlib

from stockfolio.users.v1 import users_pb2

from services.runtime.auth import RemoteSessionChecker
from services.runtime.channels import create_channel
from services.runtime.config import RuntimeConfig

USERS_SERVICE = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
# A user whose every session ended (a logout everywhere, a role change, the account deleted) is
# announced by the users service on its cache's channel `REVOKED_CHANNEL` (a user id a message);
# its cache's prefix is "sf:users:", so a service on "sf:" hears it on `REVOKED_ELSEWHERE`. On
# Redis only: each service's own recheck of what it holds stands without it.
REVOKED_CHANNEL = "revoked"
REVOKED_ELSEWHERE = f"users:{REVOKED_CHANNEL}"


async def remote_sessions(
    config: RuntimeConfig, resources: contextlib.AsyncExitStack
) -> RemoteSessionChecker:
    """A checker backed by a channel to every users replica, closed with `resources`."""
    channel = create_channel(
        config.addresses["users"], [USERS_SERVICE], deadline=config.rpc_deadline
    )
    resources.push_async_callback(channel.close)
    return RemoteSessionChecker(channel, ttl=config.session_check_ttl)
