"""Deleting an account, end to end on the started system (every service its own process, the
embedded defaults: a SQLite file each, no Redis): two users each keep a portfolio with a trade,
a chat, a project with a file and a shell; one deletes their own account through the facade;
within a deadline everything of theirs is gone from every service's database and from disk,
and their shell has ended, while the other user's data is all still there."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.system_harness import Account, System, register, request

DEADLINE = 60.0
# Per database file, the tables whose `user_id` column names an account's rows.
OWNED_ROWS = {
    "users.db": {"users": "id", "sessions": "user_id"},
    "portfolio.db": {"portfolios": "user_id"},
    "assistant.db": {"chat_sessions": "user_id", "chat_messages": "user_id"},
    "workspace.db": {"projects": "user_id"},
}


def call(system: System, method: str, path: str, who: Account, body: Any = None) -> Any:
    answer = request(method, system.facade_url + path, body=body, token=who.access_token)
    assert answer.status < 300, (method, path, answer.status, answer.body)
    return answer.body.get("data") if isinstance(answer.body, dict) else None


def keep_everything(system: System, who: Account) -> dict[str, Any]:
    """A portfolio with a trade, a chat, a project with a file and a shell: what was made."""
    portfolio = call(system, "POST", "/api/v1/portfolios", who, {"name": "Main"})
    trade = {"portfolioId": portfolio["id"], "symbol": "AAPL", "side": "buy", "quantity": "2"}
    call(system, "POST", "/api/v1/trades", who, trade)
    call(system, "POST", "/api/v1/chat/message", who, {"message": "How is my portfolio doing?"})
    call(system, "POST", "/api/v1/workspace/projects", who, {"name": "notes"})
    note = {"project": "notes", "path": "plan.md", "content": f"# {who.name}\n"}
    call(system, "POST", "/api/v1/files", who, note)
    shell = call(system, "POST", "/api/v1/terminal/terminals/create", who, {"cols": 80})
    return {"portfolio": portfolio["id"], "pid": shell["pid"]}


def rows_of(var_dir: Path, user_id: str) -> dict[str, int]:
    """How many rows of each service's tables are `user_id`'s, read from the SQLite files."""
    counted = {}
    for file, tables in OWNED_ROWS.items():
        with sqlite3.connect(f"file:{var_dir / file}?mode=ro", uri=True, timeout=10) as db:
            for table, column in tables.items():
                query = f"SELECT count(*) FROM {table} WHERE {column} = ?"  # noqa: S608 - ours
                counted[f"{file}:{table}"] = db.execute(query, (user_id,)).fetchone()[0]
    return counted


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def within(deadline: float, check: Callable[[], bool], what: str) -> None:
    """Poll `check` until it holds; fail naming `what` past `deadline` seconds."""
    ends = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < ends, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_deleting_an_account_erases_its_data_in_every_service(system: System) -> None:
    assert system.var_dir is not None
    var_dir = system.var_dir
    ann, bob = register(system)[1], register(system)[1]
    anns, bobs = keep_everything(system, ann), keep_everything(system, bob)
    ann_folder = var_dir / "workspaces" / ann.user_id
    bob_file = var_dir / "workspaces" / bob.user_id / "notes" / "plan.md"
    assert (ann_folder / "notes" / "plan.md").read_text() == f"# {ann.name}\n"
    assert all(rows_of(var_dir, ann.user_id).values())
    kept = rows_of(var_dir, bob.user_id)
    assert all(kept.values()), kept

    deleted = request(
        "DELETE",
        f"{system.facade_url}/api/v1/users/{ann.user_id}",
        body={"currentPassword": ann.password},
        token=ann.access_token,
    )
    assert deleted.status == 200, deleted.body

    within(
        DEADLINE,
        lambda: not any(rows_of(var_dir, ann.user_id).values()),
        "the deleted account's rows in every service's database",
    )
    within(DEADLINE, lambda: not os.path.lexists(ann_folder), "the deleted account's folder")
    within(DEADLINE, lambda: process_gone(anns["pid"]), "the deleted account's shell")
    staging = var_dir / "workspaces" / ".staging"
    within(
        DEADLINE,
        lambda: not [e for e in staging.iterdir() if e.name.startswith("erased-")],
        "the folder moved aside removed",
    )

    assert rows_of(var_dir, bob.user_id) == kept
    assert bob_file.read_text() == f"# {bob.name}\n"
    assert not process_gone(bobs["pid"])
    mine = call(system, "GET", "/api/v1/portfolios", bob)
    assert [p["id"] for p in mine] == [bobs["portfolio"]]
    files = call(system, "GET", "/api/v1/files/plan.md?project=notes", bob)
    assert files["content"] == f"# {bob.name}\n"
    refused = request("GET", f"{system.facade_url}/api/v1/portfolios", token=ann.access_token)
    assert refused.status == 401
