"""Who a commit is by: the caller's own profile in the users service, asked with their token."""

from __future__ import annotations

import logging

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.context import Identity
from services.runtime.interceptors import outgoing_metadata
from services.workspace.projects import Author

log = logging.getLogger(__name__)


def _name_from_email(email: str) -> str:
    return email.split("@", 1)[0] or "Stockfolio user"


def author_name(profile_name: str, email: str) -> str:
    """The profile's name as git can write it: `<` and `>` delimit the email in a commit's
    header and git refuses them in a name (a user named "Ada <3" could not commit, nor create
    a project, whose first commit is theirs); control characters and runs of spaces go too."""
    kept = "".join(c for c in profile_name if c not in "<>" and c.isprintable())
    return " ".join(kept.split()) or _name_from_email(email)


class ProfileAuthors:
    def __init__(self, channel: grpc.aio.Channel, *, deadline: float = 5.0) -> None:
        self._stub = users_pb2_grpc.UsersServiceStub(channel)
        self._deadline = deadline

    async def author(self, identity: Identity) -> Author:
        """The profile's name and email; the token's email if the profile cannot be read (a
        commit should not fail because the users service is slow)."""
        try:
            reply = await self._stub.GetMe(
                users_pb2.GetMeRequest(),
                metadata=outgoing_metadata(identity),
                timeout=self._deadline,
            )
        except grpc.aio.AioRpcError as error:
            log.warning(
                "profile unavailable for a commit author", extra={"code": error.code().name}
            )
            return Author(_name_from_email(identity.email), identity.email)
        email = reply.user.email or identity.email
        return Author(author_name(reply.user.name, email), email)
