"""A terminal as the API shows it: a shell whose output has ended is "exited" only once its
process is reaped and its exit code known. Listed in between (a loaded machine makes that
moment long enough to see), it read "exited with 0" just before "exited with 3"."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

from stockfolio.terminal.v1 import terminal_pb2

from services.terminal.servicer import terminal_message
from services.terminal.sessions import Session


def session(state: str, returncode: int | None) -> Session:
    now = datetime.now(UTC)
    return cast(
        Session,
        SimpleNamespace(  # noqa: S604 - a field named shell, nothing runs
            id="session_1",
            pid=42,
            cols=80,
            rows=24,
            shell="/bin/sh",
            project_id="",
            state=state,
            created=now,
            last_activity=now,
            owner="user_1",
            watchers=0,
            exit_code=returncode,
        ),
    )


def test_an_ended_output_whose_process_is_not_reaped_yet_is_still_running() -> None:
    shown = terminal_message(session("exited", None))
    assert (shown.state, shown.exit_code, shown.exit_reason) == (
        terminal_pb2.TERMINAL_STATE_RUNNING,
        0,
        "",
    )


def test_a_reaped_shell_is_exited_with_its_code() -> None:
    shown = terminal_message(session("exited", 3))
    assert (shown.state, shown.exit_code, shown.exit_reason) == (
        terminal_pb2.TERMINAL_STATE_EXITED,
        3,
        "exited",
    )


def test_a_closed_shell_is_exited_whatever_its_code() -> None:
    shown = terminal_message(session("closed", None))
    assert (shown.state, shown.exit_reason) == (terminal_pb2.TERMINAL_STATE_EXITED, "closed")
