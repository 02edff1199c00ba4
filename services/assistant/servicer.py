"""gRPC servicer of AssistantService: request -> conversation or repository -> response. The
creating RPCs (CreateFolder, and SendMessage, which starts a session when it names none) run
through the idempotency store: an `Idempotency-Key` retried gets the first response."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from stockfolio.assistant.v1 import assistant_pb2, assistant_pb2_grpc

from services.assistant.conversation import Assistant
from services.assistant.domain import (
    TRANSCRIPT_MESSAGES,
    Folder,
    check_folder_name,
    check_query,
    check_title,
)
from services.assistant.messages import (
    chat_message,
    folder_message,
    session_message,
    stream_event,
    usage_message,
)
from services.assistant.repository import Chats
from services.runtime.errors import InvalidArgument
from services.runtime.idempotency import IdempotencyStore
from services.runtime.interceptors import require_identity
from services.runtime.pagination import page_of


def _id(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument.field(field, "must not be empty")
    return value


class AssistantServicer(assistant_pb2_grpc.AssistantServiceServicer):
    def __init__(self, assistant: Assistant, chats: Chats, idempotency: IdempotencyStore) -> None:
        self._assistant = assistant
        self._chats = chats
        self._idempotency = idempotency

    # --- answers -------------------------------------------------------------------------------

    async def SendMessage(
        self, request: assistant_pb2.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.SendMessageResponse:
        identity = require_identity()

        async def send() -> assistant_pb2.SendMessageResponse:
            done = await self._assistant.reply(
                identity, request.session_id.strip(), request.message, request.model
            )
            return assistant_pb2.SendMessageResponse(
                session_id=done.session_id,
                message=chat_message(done.message),
                usage=usage_message(done.usage),
                messages=[chat_message(m) for m in done.messages],
            )

        # Settled after it returns: the answer is several transactions and a provider's call.
        return await self._idempotency.run(request, assistant_pb2.SendMessageResponse, send)

    async def ChatStream(
        self, request: assistant_pb2.ChatStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[assistant_pb2.ChatStreamResponse]:
        answer, _ = await self._assistant.start(
            require_identity(), request.session_id.strip(), request.message, request.model
        )
        async for event in answer:
            yield stream_event(event)

    async def ListModels(
        self, request: assistant_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.ListModelsResponse:
        models = await self._assistant.models()
        return assistant_pb2.ListModelsResponse(
            models=[assistant_pb2.Model(id=m, name=name) for m, name in models]
        )

    # --- sessions ------------------------------------------------------------------------------

    async def ListSessions(
        self, request: assistant_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.ListSessionsResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._chats.page_sessions(
            require_identity().user_id, page, request.folder_id.strip()
        )
        return assistant_pb2.ListSessionsResponse(
            sessions=[session_message(s) for s in found], pagination=page.describe(total)
        )

    async def ListFolders(
        self, request: assistant_pb2.ListFoldersRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.ListFoldersResponse:
        page = page_of(request.page, request.limit)
        found, total = await self._chats.page_folders(require_identity().user_id, page)
        return assistant_pb2.ListFoldersResponse(
            folders=[folder_message(f) for f in found], pagination=page.describe(total)
        )

    async def GetSession(
        self, request: assistant_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.GetSessionResponse:
        found = await self._chats.transcript(
            require_identity().user_id,
            _id(request.id, "id"),
            limit=request.limit or TRANSCRIPT_MESSAGES,
            before=request.before.strip(),
        )
        return assistant_pb2.GetSessionResponse(
            session=session_message(found.session),
            messages=[chat_message(m) for m in found.messages],
            has_earlier=found.has_earlier,
        )

    async def UpdateSession(
        self, request: assistant_pb2.UpdateSessionRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.UpdateSessionResponse:
        title = check_title(request.title) if request.HasField("title") else None
        folder_id = request.folder_id.strip() if request.HasField("folder_id") else None
        session = await self._chats.update_session(
            require_identity().user_id, _id(request.id, "id"), title=title, folder_id=folder_id
        )
        return assistant_pb2.UpdateSessionResponse(session=session_message(session))

    async def DeleteSession(
        self, request: assistant_pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.DeleteSessionResponse:
        await self._chats.delete_session(require_identity().user_id, _id(request.id, "id"))
        return assistant_pb2.DeleteSessionResponse()

    async def SearchMessages(
        self, request: assistant_pb2.SearchMessagesRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.SearchMessagesResponse:
        words = check_query(request.q)
        page = page_of(request.page, request.limit)
        found, total = await self._chats.search(
            require_identity().user_id, request.q.strip(), words, page
        )
        return assistant_pb2.SearchMessagesResponse(
            messages=[chat_message(m) for m in found], pagination=page.describe(total)
        )

    # --- folders -------------------------------------------------------------------------------

    async def CreateFolder(
        self, request: assistant_pb2.CreateFolderRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.CreateFolderResponse:
        user_id = require_identity().user_id

        def respond(folder: Folder) -> assistant_pb2.CreateFolderResponse:
            return assistant_pb2.CreateFolderResponse(folder=folder_message(folder))

        async def create() -> assistant_pb2.CreateFolderResponse:
            name = check_folder_name(request.name)
            settle = self._idempotency.settling(respond)
            return respond(await self._chats.create_folder(user_id, name, settle=settle))

        return await self._idempotency.run(request, assistant_pb2.CreateFolderResponse, create)

    async def UpdateFolder(
        self, request: assistant_pb2.UpdateFolderRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.UpdateFolderResponse:
        folder = await self._chats.rename_folder(
            require_identity().user_id, _id(request.id, "id"), check_folder_name(request.name)
        )
        return assistant_pb2.UpdateFolderResponse(folder=folder_message(folder))

    async def DeleteFolder(
        self, request: assistant_pb2.DeleteFolderRequest, context: grpc.aio.ServicerContext
    ) -> assistant_pb2.DeleteFolderResponse:
        await self._chats.delete_folder(require_identity().user_id, _id(request.id, "id"))
        return assistant_pb2.DeleteFolderResponse()
