"""A browser terminal in a project, across the processes `make run` starts: the facade, the
terminal service asking the workspace service for the project's directory, a real shell."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest

from tests.system_harness import Account, System, request

pytestmark = pytest.mark.e2e

WAIT = 15.0


async def converse(url: str, session_id: str, keystrokes: str, pattern: str) -> tuple[Any, str]:
    """Join over /ws/terminal, type, and read output until `pattern`: (joined, output)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert await ws.receive_json(timeout=WAIT) == {"type": "auth_ok"}
        await ws.send_json({"type": "join", "sessionId": session_id})
        joined = await ws.receive_json(timeout=WAIT)
        await ws.send_json({"type": "data", "data": keystrokes})
        seen = ""
        deadline = time.monotonic() + WAIT
        while not re.search(pattern, seen):
            message = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            if message["type"] == "data":
                seen += message["data"]
        return joined, seen


def test_a_shell_in_a_project_over_the_socket(system: System, account: Account) -> None:
    project = request(
        "POST",
        f"{system.facade_url}/api/v1/workspace/projects",
        body={"name": "e2e-notes", "template": "notes"},
        token=account.access_token,
    )
    assert project.status == 201, project.body
    project_id = project.body["data"]["id"]
    created = request(
        "POST",
        f"{system.facade_url}/api/v1/terminal/terminals/create",
        body={"projectId": project_id, "cols": 100, "rows": 30},
        token=account.access_token,
    )
    assert created.status == 201, created.body
    terminal = created.body["data"]
    assert terminal["projectId"] == project_id and terminal["state"] == "running"
    url = system.facade_url.replace("http", "ws", 1)
    joined, output = asyncio.run(
        converse(
            f"{url}/ws/terminal?token={account.access_token}",
            terminal["sessionId"],
            "pwd; ls; stty size\r",
            r"30 100",
        )
    )
    assert joined["type"] == "joined" and joined["sessionId"] == terminal["sessionId"]
    assert re.search(r"/workspace/\S*e2e-notes\r\n", output), output
    assert "README.md" in output
    closed = request(
        "DELETE",
        f"{system.facade_url}/api/v1/terminal/terminals/{terminal['sessionId']}",
        token=account.access_token,
    )
    assert closed.status == 200, closed.body
