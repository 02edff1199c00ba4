"""Idempotency keys on the assistant's creating calls, on SQLite and PostgreSQL: a folder
(CreateFolder, POST /api/v1/assistant/folders) and a new chat session (SendMessage with no
session, POST /api/v1/chat/message) retried with their `Idempotency-Key` are made once and
answered as the first time; the same key with another body is refused; keys are per user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from stockfolio.assistant.v1 import assistant_pb2 as pb

from services.assistant.orm import metadata
from services.runtime.db import Database
from services.runtime.migrations import downgrade, upgrade
from tests.conftest import service_database
from tests.fakes.anthropic import FakeAnthropic, Reply
from tests.integration.assistant_harness import AssistantStack, Metadata, StartStack, token_of
from tests.integration.conftest import Client, FacadeInFront
from tests.rpc_errors import expect_error, reason, violations

SEARCH_INDEX = "ix_chat_messages_search"


def keyed(who: Metadata, key: str) -> Metadata:
    return (*who, ("idempotency-key", key))


async def folder_ids(stack: AssistantStack, who: Metadata) -> list[str]:
    listed = await stack.assistant.ListFolders(pb.ListFoldersRequest(), metadata=who)
    return [f.id for f in listed.folders]


async def session_ids(stack: AssistantStack, who: Metadata) -> list[str]:
    listed = await stack.assistant.ListSessions(pb.ListSessionsRequest(), metadata=who)
    return [s.id for s in listed.sessions]


# --- folders -----------------------------------------------------------------------------------


async def test_a_folder_retried_with_its_key_is_made_once(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        request = pb.CreateFolderRequest(name="Taxes")
        first = await stack.assistant.CreateFolder(request, metadata=keyed(who, "f-1"))
        again = await stack.assistant.CreateFolder(request, metadata=keyed(who, "f-1"))
        assert again == first
        assert first.folder.name == "Taxes"
        assert await folder_ids(stack, who) == [first.folder.id]


async def test_a_folder_key_with_another_body_is_refused(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        first = await stack.assistant.CreateFolder(
            pb.CreateFolderRequest(name="Taxes"), metadata=keyed(who, "f-1")
        )
        error = await expect_error(
            stack.assistant.CreateFolder(
                pb.CreateFolderRequest(name="Ideas"), metadata=keyed(who, "f-1")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert reason(error) == "IDEMPOTENCY_KEY_REUSED"
        assert [f for f, _ in violations(error)] == ["idempotencyKey"]
        assert await folder_ids(stack, who) == [first.folder.id]


async def test_folders_without_a_key_are_made_each_time(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        request = pb.CreateFolderRequest(name="Taxes")
        first = await stack.assistant.CreateFolder(request, metadata=who)
        second = await stack.assistant.CreateFolder(request, metadata=who)
        assert first.folder.id != second.folder.id
        assert sorted(await folder_ids(stack, who)) == sorted([first.folder.id, second.folder.id])


async def test_a_refused_folder_frees_its_key(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        await expect_error(
            stack.assistant.CreateFolder(
                pb.CreateFolderRequest(name=" "), metadata=keyed(who, "k")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        made = await stack.assistant.CreateFolder(
            pb.CreateFolderRequest(name="Taxes"), metadata=keyed(who, "k")
        )
        assert await folder_ids(stack, who) == [made.folder.id]


async def test_folder_keys_belong_to_their_user(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        ann, bob = await stack.user(), await stack.user()
        request = pb.CreateFolderRequest(name="Same body")
        hers = await stack.assistant.CreateFolder(request, metadata=keyed(ann, "shared"))
        his = await stack.assistant.CreateFolder(request, metadata=keyed(bob, "shared"))
        assert hers.folder.id != his.folder.id
        assert await folder_ids(stack, ann) == [hers.folder.id]
        assert await folder_ids(stack, bob) == [his.folder.id]


# --- sessions (a message with no session starts one) -------------------------------------------


async def test_a_new_session_retried_with_its_key_is_started_and_answered_once(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        fake_anthropic.replies.append(Reply(text="Hold fewer stocks."))
        request = pb.SendMessageRequest(message="Am I too diversified?")
        first = await stack.assistant.SendMessage(request, metadata=keyed(who, "s-1"))
        again = await stack.assistant.SendMessage(request, metadata=keyed(who, "s-1"))
        assert again == first
        assert first.message.content == "Hold fewer stocks."
        assert await session_ids(stack, who) == [first.session_id]
        # The provider was asked once: the retry spent no tokens.
        assert len(fake_anthropic.requests) == 1
        transcript = await stack.assistant.GetSession(
            pb.GetSessionRequest(id=first.session_id), metadata=who
        )
        assert [m.content for m in transcript.messages] == [
            "Am I too diversified?",
            "Hold fewer stocks.",
        ]


async def test_a_session_key_with_another_body_is_refused(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        made = await stack.assistant.SendMessage(
            pb.SendMessageRequest(message="First question"), metadata=keyed(who, "s-1")
        )
        error = await expect_error(
            stack.assistant.SendMessage(
                pb.SendMessageRequest(message="Another question"), metadata=keyed(who, "s-1")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert reason(error) == "IDEMPOTENCY_KEY_REUSED"
        assert await session_ids(stack, who) == [made.session_id]


async def test_sessions_without_a_key_are_started_each_time(
    assistant_stack: StartStack, fake_anthropic: FakeAnthropic
) -> None:
    async with assistant_stack() as stack:
        who = await stack.user()
        first = await stack.send(who, "Same question")
        second = await stack.send(who, "Same question")
        assert first.session_id != second.session_id
        assert sorted(await session_ids(stack, who)) == sorted(
            [first.session_id, second.session_id]
        )
        assert len(fake_anthropic.requests) == 2


async def test_session_keys_belong_to_their_user(assistant_stack: StartStack) -> None:
    async with assistant_stack() as stack:
        ann, bob = await stack.user(), await stack.user()
        request = pb.SendMessageRequest(message="Same question")
        hers = await stack.assistant.SendMessage(request, metadata=keyed(ann, "shared"))
        his = await stack.assistant.SendMessage(request, metadata=keyed(bob, "shared"))
        assert hers.session_id != his.session_id
        assert await session_ids(stack, ann) == [hers.session_id]
        assert await session_ids(stack, bob) == [his.session_id]


# --- through the facade -------------------------------------------------------------------------


async def post(
    client: Client, path: str, token: str, body: dict[str, Any], key: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    async with client.post(path, headers=headers, json=body) as response:
        return response.status, await response.json()


async def test_rest_retries_with_a_key_answer_the_first_creation(
    assistant_stack: StartStack, facade_in_front: FacadeInFront
) -> None:
    async with assistant_stack() as stack, facade_in_front(stack.addresses) as client:
        who = await stack.user()
        token = token_of(who)
        answers = [
            await post(client, "/api/v1/assistant/folders", token, {"name": "Plans"}, "rf-1")
            for _ in range(2)
        ]
        assert [status for status, _ in answers] == [201, 201]
        assert answers[0][1]["data"] == answers[1][1]["data"]
        assert answers[0][1]["data"]["name"] == "Plans"
        assert await folder_ids(stack, who) == [answers[0][1]["data"]["id"]]

        status, body = await post(
            client, "/api/v1/assistant/folders", token, {"name": "Other"}, "rf-1"
        )
        assert status == 422
        assert body["error"] == "IDEMPOTENCY_KEY_REUSED", body

        chats = [
            await post(client, "/api/v1/chat/message", token, {"message": "Hi"}, "rs-1")
            for _ in range(2)
        ]
        assert [status for status, _ in chats] == [200, 200]
        assert chats[0][1]["data"] == chats[1][1]["data"]
        assert await session_ids(stack, who) == [chats[0][1]["data"]["sessionId"]]


# --- the migration -------------------------------------------------------------------------------


@pytest.fixture
def assistant_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The assistant's database, migrated (migrations run sync: not on a loop)."""
    with service_database("assistant", database_url, tmp_path) as url:
        yield url


async def test_the_migration_builds_exactly_the_declared_tables(assistant_database: str) -> None:
    db = Database(assistant_database)
    try:
        async with db.engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await db.close()
    # Only PostgreSQL's full-text index, which the first migration adds and the tables leave out.
    assert [d for d in differences if d[0] != "remove_index" or d[1].name != SEARCH_INDEX] == []


def test_the_keys_migration_goes_down_and_up_again(assistant_database: str) -> None:
    downgrade("assistant", assistant_database, "0002")
    upgrade("assistant", assistant_database)
