"""A deleted account's chats in the assistant service: erased by the service's follower of the
users service's deletions soon after, on SQLite and PostgreSQL (sessions, messages, folders,
the token ledger, kept Idempotency-Key responses), while another user's stay whole; erasing
twice is harmless."""

from __future__ import annotations

from sqlalchemy import func, select
from stockfolio.assistant.v1 import assistant_pb2 as pb
from stockfolio.users.v1 import users_pb2

from services.assistant.erasure import AccountErasure
from services.assistant.orm import folders, idempotency_keys, messages, sessions, token_usage
from services.runtime.db import Database
from tests.integration.assistant_harness import PASSWORD, AssistantStack, Metadata, StartStack
from tests.waiting import until_async

TABLES = (sessions, messages, folders, token_usage, idempotency_keys)


async def chats(stack: AssistantStack, who: Metadata) -> None:
    """A folder, and a chat (a session, its messages, tokens spent) started with a key."""
    await stack.assistant.CreateFolder(pb.CreateFolderRequest(name="Research"), metadata=who)
    await stack.assistant.SendMessage(
        pb.SendMessageRequest(message="How is my portfolio doing?"),
        metadata=(*who, ("idempotency-key", "first-chat")),
    )


async def rows_of(db: Database, user_id: str) -> dict[str, int]:
    counted: dict[str, int] = {}
    async with db.reading() as session:
        for table in TABLES:
            query = select(func.count()).select_from(table).where(table.c.user_id == user_id)
            counted[table.name] = int((await session.execute(query)).scalar_one())
    return counted


async def test_a_deleted_accounts_chats_are_erased_and_another_users_kept(
    assistant_stack: StartStack,
) -> None:
    async with assistant_stack(ACCOUNT_PURGE_INTERVAL="0.1") as stack:
        await stack.account()  # the first account: the admin, who stays
        ann, ann_id = await stack.account()
        bob, bob_id = await stack.account()
        await chats(stack, ann)
        await chats(stack, bob)
        db = Database(stack.database_url)
        try:
            before = await rows_of(db, ann_id)
            assert all(before.values()), before
            kept = await rows_of(db, bob_id)
            assert all(kept.values()), kept
            await stack.users.DeleteUser(
                users_pb2.DeleteUserRequest(id=ann_id, current_password=PASSWORD), metadata=ann
            )

            async def erased() -> bool:
                return not any((await rows_of(db, ann_id)).values())

            await until_async(erased, "the deleted account's chats erased", within=20)
            assert await rows_of(db, bob_id) == kept
            listed = await stack.assistant.ListSessions(pb.ListSessionsRequest(), metadata=bob)
            assert len(listed.sessions) == 1
            await AccountErasure(db).erase(ann_id)  # again: nothing left, no error
            assert await rows_of(db, bob_id) == kept
        finally:
            await db.close()
