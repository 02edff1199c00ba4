"""What a client written from the seed's types sends and reads, against the started system."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.system_harness import Account, System, request

pytestmark = pytest.mark.e2e


def test_a_portfolio_is_created_and_read_with_the_seeds_field_names(
    system: System, account: Account
) -> None:
    created = request(
        "POST",
        f"{system.facade_url}/api/v1/portfolios",
        body={"name": "Seed client", "currency": "eur"},
        token=account.access_token,
    )
    assert created.status == 201, created.body
    portfolio = created.body["data"]
    assert (portfolio["currency"], portfolio["userId"]) == ("EUR", account.user_id)
    assert "baseCurrency" not in portfolio
    old_name = request(
        "POST",
        f"{system.facade_url}/api/v1/portfolios",
        body={"name": "Old client", "baseCurrency": "USD"},
        token=account.access_token,
    )
    assert old_name.status == 422
    assert old_name.body["error"] == "VALIDATION_ERROR"
    assert [f["field"] for f in old_name.body["details"]["fields"]] == ["baseCurrency"]


def test_files_and_git_without_a_project_act_on_the_users_home_project(
    system: System, account: Account
) -> None:
    """The seed's /files and /git routes name no project: they reach the user's `home`."""
    base, token = system.facade_url, account.access_token

    first = request("GET", f"{base}/api/v1/files", token=token)
    assert first.status == 200, first.body
    assert (first.body["data"], first.body["pagination"]["total"]) == ([], 0)

    created = request(
        "POST", f"{base}/api/v1/files", body={"path": "hello.md", "content": "hi\n"}, token=token
    )
    assert created.status == 201, created.body
    assert (created.body["data"]["path"], created.body["data"]["size"]) == ("hello.md", "3")
    listed = request("GET", f"{base}/api/v1/files", token=token)
    assert [(e["name"], e["type"]) for e in listed.body["data"]] == [("hello.md", "file")]
    read = request("GET", f"{base}/api/v1/files/hello.md", token=token)
    assert read.status == 200, read.body
    assert (read.body["data"]["content"], read.body["data"]["sha"]) == (
        "hi\n",
        created.body["data"]["sha"],
    )

    updated = request(
        "PUT",
        f"{base}/api/v1/files/hello.md",
        body={"content": "hello\n", "sha": read.body["data"]["sha"]},
        token=token,
    )
    assert updated.status == 200, updated.body
    reread = request("GET", f"{base}/api/v1/files/hello.md", token=token)
    assert (reread.body["data"]["content"], reread.body["data"]["sha"]) == (
        "hello\n",
        updated.body["data"]["sha"],
    )
    scratch = request(
        "POST", f"{base}/api/v1/files", body={"path": "scratch.txt", "content": "x"}, token=token
    )
    assert scratch.status == 201, scratch.body
    deleted = request("DELETE", f"{base}/api/v1/files/scratch.txt", token=token)
    assert deleted.status == 200, deleted.body
    gone = request("GET", f"{base}/api/v1/files/scratch.txt", token=token)
    assert (gone.status, gone.body["error"]) == (404, "FILE_NOT_FOUND")

    status = request("GET", f"{base}/api/v1/git/status", token=token)
    assert status.status == 200, status.body
    assert (status.body["data"]["branch"], status.body["data"]["untracked"]) == (
        "main",
        ["hello.md"],
    )
    committed = request(
        "POST", f"{base}/api/v1/git/commit", body={"message": "Say hello"}, token=token
    )
    assert committed.status == 200, committed.body
    log = request("GET", f"{base}/api/v1/git/log", token=token)
    assert [(c["sha"], c["subject"]) for c in log.body["data"]] == [
        (committed.body["data"]["commit"], "Say hello"),
        (log.body["data"][1]["sha"], "Start the home project"),
    ]
    clean = request("GET", f"{base}/api/v1/git/status", token=token)
    assert clean.body["data"].get("untracked", []) == []

    projects = request("GET", f"{base}/api/v1/workspace/projects", token=token)
    assert [p["name"] for p in projects.body["data"]] == ["home"]
    assert read.body["data"]["project"] == projects.body["data"][0]["id"]


def test_two_first_file_calls_at_once_both_succeed_and_make_one_home(
    system: System, account: Account
) -> None:
    base, token = system.facade_url, account.access_token
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(
                lambda name: request(
                    "POST",
                    f"{base}/api/v1/files",
                    body={"path": name, "content": name},
                    token=token,
                ),
                ["a.txt", "b.txt"],
            )
        )
    assert [a.status for a in answers] == [201, 201], [a.body for a in answers]
    projects = request("GET", f"{base}/api/v1/workspace/projects", token=token)
    assert [p["name"] for p in projects.body["data"]] == ["home"]
    assert {a.body["data"]["project"] for a in answers} == {projects.body["data"][0]["id"]}
    listed = request("GET", f"{base}/api/v1/files", token=token)
    assert [e["name"] for e in listed.body["data"]] == ["a.txt", "b.txt"]
