"""The workspace in the browser: a file edited in the textarea and saved with its sha, the 409 of a
stale save offered as reload or overwrite, uploads and downloads, and a commit."""

from __future__ import annotations

import pytest
from playwright.sync_api import FilePayload, Page, expect

from tests.browser.screens import api, sign_in
from tests.system_harness import Account, System

pytestmark = pytest.mark.browser


@pytest.fixture
def project(system: System, account: Account) -> str:
    """A `notes` project of the account's, made through the API; its id."""
    created = api(
        system,
        account,
        "POST",
        "/api/v1/workspace/projects",
        {"name": "notes", "template": "notes"},
    )
    return str(created["id"])


def open_readme(page: Page, account: Account) -> None:
    sign_in(page, account, at="/workspace")
    page.get_by_test_id("file-tree-item").filter(has_text="README.md").click()
    expect(page.get_by_test_id("editor")).to_be_visible()


def change_behind_the_page(system: System, account: Account, project: str, text: str) -> None:
    current = api(system, account, "GET", f"/api/v1/files/README.md?project={project}")
    api(
        system,
        account,
        "PUT",
        "/api/v1/files/README.md",
        {"project": project, "content": text, "sha": current["sha"]},
    )


def save_mine_over_theirs(page: Page, system: System, account: Account, project: str) -> None:
    """Types `# mine` in README.md, has the API write `# theirs` behind the page, then saves."""
    open_readme(page, account)
    page.get_by_test_id("editor").fill("# mine\n")
    change_behind_the_page(system, account, project, "# theirs\n")
    page.get_by_test_id("editor-save").click()


def test_a_stale_save_shows_the_conflict_and_overwriting_keeps_mine(
    page: Page, system: System, account: Account, project: str
) -> None:
    save_mine_over_theirs(page, system, account, project)

    dialog = page.get_by_test_id("conflict-dialog")
    expect(dialog).to_be_visible()
    # The API's own sentence, naming the sha the file has now.
    expect(page.get_by_test_id("conflict-message")).to_contain_text("README.md has changed")
    page.get_by_test_id("conflict-overwrite").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("editor-notice")).to_have_text("Saved README.md.")
    saved = api(system, account, "GET", f"/api/v1/files/README.md?project={project}")
    assert saved["content"] == "# mine\n"


def test_a_stale_save_reloaded_shows_theirs_and_drops_mine(
    page: Page, system: System, account: Account, project: str
) -> None:
    save_mine_over_theirs(page, system, account, project)
    page.get_by_test_id("conflict-reload").click()

    expect(page.get_by_test_id("conflict-dialog")).to_be_hidden()
    expect(page.get_by_test_id("editor")).to_have_value("# theirs\n")
    expect(page.get_by_test_id("editor-dirty")).to_have_count(0)


def test_an_uploaded_file_appears_in_the_tree_and_downloads_byte_for_byte(
    page: Page, account: Account, project: str
) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    sign_in(page, account, at="/workspace")

    page.get_by_label("Upload a file").set_input_files(
        files=[FilePayload(name="blob.bin", mimeType="application/octet-stream", buffer=payload)]
    )

    expect(page.get_by_test_id("workspace-notice")).to_have_text("Uploaded blob.bin (1.0 MB).")
    page.locator("[data-testid=file-tree-item][data-path='blob.bin']").click()
    expect(page.get_by_test_id("editor-binary")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_test_id("file-download").click()
    assert download.value.suggested_filename == "blob.bin"
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == payload


def test_a_commit_of_an_edit_says_what_it_committed_and_cleans_the_status(
    page: Page, account: Account, project: str
) -> None:
    open_readme(page, account)
    page.get_by_test_id("editor").fill("# notes\n\nmore\n")
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("git-changes")).to_contain_text("README.md")

    page.get_by_label("Commit message").fill("More notes")
    page.get_by_test_id("git-commit").click()

    expect(page.get_by_test_id("git-message")).to_contain_text(
        f"as {account.name} <{account.email}>"
    )
    expect(page.get_by_test_id("git-changes")).to_have_text(
        "Nothing to commit: the working tree is clean."
    )
    # No remote yet: the API's sentence, not a status code.
    page.get_by_test_id("git-push").click()
    expect(page.get_by_test_id("git-error")).to_contain_text("origin")


def test_a_file_changed_elsewhere_follows_in_the_editor_and_the_tree(
    page: Page, system: System, account: Account, project: str
) -> None:
    open_readme(page, account)

    change_behind_the_page(system, account, project, "# changed in a terminal\n")
    api(system, account, "POST", "/api/v1/files", {"project": project, "path": "new.md"})

    expect(page.get_by_test_id("editor")).to_have_value("# changed in a terminal\n")
    expect(page.get_by_test_id("workspace-notice")).to_have_text(
        "README.md changed elsewhere and was reloaded."
    )
    expect(page.locator("[data-testid=file-tree-item][data-path='new.md']")).to_be_visible()


def test_a_file_renamed_into_a_new_folder_stays_open_under_its_new_path(
    page: Page, system: System, account: Account, project: str
) -> None:
    open_readme(page, account)
    page.once("dialog", lambda dialog: dialog.accept("docs/README.md"))

    page.get_by_test_id("file-move").click()

    expect(page.get_by_test_id("workspace-notice")).to_have_text(
        "Moved README.md to docs/README.md."
    )
    expect(page.get_by_test_id("editor-path")).to_have_text("docs/README.md")
    expect(page.locator("[data-testid=file-tree-item][data-path='docs']")).to_be_visible()
    moved = api(system, account, "GET", f"/api/v1/files/docs/README.md?project={project}")
    assert moved["content"] == page.get_by_test_id("editor").input_value()


def test_a_new_branch_is_created_and_switched_to(
    page: Page, account: Account, project: str
) -> None:
    sign_in(page, account, at="/workspace")
    page.get_by_text("Branches (1)").click()

    page.get_by_label("New branch (from here)").fill("feature")
    page.get_by_test_id("git-branch-create").click()
    expect(page.get_by_test_id("git-message")).to_contain_text("Created the branch feature")
    page.get_by_label("Switch to").select_option("feature")

    expect(page.get_by_test_id("git-message")).to_have_text("Switched to feature.")
    expect(page.get_by_test_id("git-branch")).to_contain_text("On feature")
