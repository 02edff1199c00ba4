"""The caller's folders listed (ListFolders, GET /api/v1/assistant/folders): by name, paged,
only their own; the web app's folder list comes from here."""

from __future__ import annotations

from stockfolio.assistant.v1 import assistant_pb2

from tests.integration.assistant_harness import StartStack


async def test_folders_are_listed_by_name_paged_and_only_the_callers(
    assistant_stack: StartStack,
) -> None:
    async with assistant_stack() as stack:
        alice, bob = await stack.user(), await stack.user()
        for name in ("Taxes", "Ideas", "Research"):
            await stack.assistant.CreateFolder(
                assistant_pb2.CreateFolderRequest(name=name), metadata=alice
            )
        await stack.assistant.CreateFolder(
            assistant_pb2.CreateFolderRequest(name="Bob's"), metadata=bob
        )
        listed = await stack.assistant.ListFolders(
            assistant_pb2.ListFoldersRequest(), metadata=alice
        )
        assert [f.name for f in listed.folders] == ["Ideas", "Research", "Taxes"]
        assert all(f.id and f.created_at.seconds > 0 for f in listed.folders)
        assert listed.pagination.total == 3
        second = await stack.assistant.ListFolders(
            assistant_pb2.ListFoldersRequest(page=2, limit=2), metadata=alice
        )
        assert [f.name for f in second.folders] == ["Taxes"]
        assert (second.pagination.page, second.pagination.total) == (2, 3)
        theirs = await stack.assistant.ListFolders(assistant_pb2.ListFoldersRequest(), metadata=bob)
        assert [f.name for f in theirs.folders] == ["Bob's"]
