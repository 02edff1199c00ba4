"""gRPC servicer of UsersService: request -> use case -> response. Thin by design."""

from __future__ import annotations

import grpc
from stockfolio.users.v1 import users_pb2, users_pb2_grpc

from services.runtime.context import client_address
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of
from services.runtime.timestamps import optional_timestamp
from services.users.accounts import Accounts
from services.users.domain import ProfileChanges
from services.users.messages import (
    SESSION_STATES,
    UserMessages,
    deletion_message,
    role_messages,
    roles_of,
    tokens_message,
    user_message,
)


class UsersServicer(users_pb2_grpc.UsersServiceServicer):
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._profiles = UserMessages()

    async def Register(
        self, request: users_pb2.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.RegisterResponse:
        signed_in = await self._accounts.register(
            request.email, request.password, request.name, client_address.get()
        )
        return users_pb2.RegisterResponse(
            user=user_message(signed_in.user), tokens=tokens_message(signed_in.tokens)
        )

    async def Login(
        self, request: users_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.LoginResponse:
        signed_in = await self._accounts.login(
            request.email, request.password, client_address.get()
        )
        return users_pb2.LoginResponse(
            user=user_message(signed_in.user), tokens=tokens_message(signed_in.tokens)
        )

    async def Refresh(
        self, request: users_pb2.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.RefreshResponse:
        tokens = await self._accounts.refresh(request.refresh_token)
        return users_pb2.RefreshResponse(tokens=tokens_message(tokens))

    async def Logout(
        self, request: users_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.LogoutResponse:
        revoked = await self._accounts.logout(require_identity(), all_sessions=request.all_sessions)
        return users_pb2.LogoutResponse(revoked_sessions=revoked)

    async def ValidateToken(
        self, request: users_pb2.ValidateTokenRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.ValidateTokenResponse:
        # The interceptor has verified the token and the session already. The email is the
        # account's (it may have changed since); the roles stay the token's, what every service
        # lets it do (a role change through the API ends the sessions; `admin create`'s
        # promotion takes effect at the next login).
        identity = require_identity()
        holder = await self._accounts.holder(identity)
        return users_pb2.ValidateTokenResponse(
            valid=True,
            user_id=identity.user_id,
            session_id=identity.session_id,
            roles=role_messages(sorted(identity.roles)),
            expires_at=optional_timestamp(identity.expires_at),
            email=holder.email,
        )

    async def CheckSession(
        self, request: users_pb2.CheckSessionRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.CheckSessionResponse:
        # The interceptor checked the token's signature, not its expiry nor its session.
        identity = require_identity()
        state = await self._accounts.session_state(identity)
        return users_pb2.CheckSessionResponse(
            session_id=identity.session_id, state=SESSION_STATES[state]
        )

    async def GetMe(
        self, request: users_pb2.GetMeRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.GetMeResponse:
        identity = require_identity()
        user = await self._accounts.get(identity, identity.user_id)
        return users_pb2.GetMeResponse(user=self._profiles.of(user))

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.ListUsersResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._accounts.list(page, request.q)
        return users_pb2.ListUsersResponse(
            users=[user_message(u) for u in found], pagination=page.describe(total)
        )

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.GetUserResponse:
        user = await self._accounts.get(require_identity(), request.id)
        return users_pb2.GetUserResponse(user=user_message(user))

    async def UpdateUser(
        self, request: users_pb2.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.UpdateUserResponse:
        changes = ProfileChanges(
            name=request.name if request.HasField("name") else None,
            email=request.email if request.HasField("email") else None,
            roles=roles_of(list(request.roles)),
            new_password=request.new_password if request.HasField("new_password") else None,
            current_password=(
                request.current_password if request.HasField("current_password") else None
            ),
        )
        user = await self._accounts.update(
            require_identity(), request.id, changes, client_address.get()
        )
        return users_pb2.UpdateUserResponse(user=user_message(user))

    async def DeleteUser(
        self, request: users_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.DeleteUserResponse:
        current_password = (
            request.current_password if request.HasField("current_password") else None
        )
        await self._accounts.delete(
            require_identity(), request.id, current_password, client_address.get()
        )
        return users_pb2.DeleteUserResponse()

    async def ListAccountDeletions(
        self, request: users_pb2.ListAccountDeletionsRequest, context: grpc.aio.ServicerContext
    ) -> users_pb2.ListAccountDeletionsResponse:
        found, last = await self._accounts.deletions(request.after_sequence, request.limit)
        return users_pb2.ListAccountDeletionsResponse(
            deletions=[deletion_message(d) for d in found], last_sequence=last
        )
