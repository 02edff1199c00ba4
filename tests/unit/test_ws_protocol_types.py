"""The web app's hand-written WebSocket types (web/src/ws/protocol.ts) say what the README's
protocol tables say: for each socket, the message types a client sends and a server sends are
the same sets in both. A message added to a table without its type (or a type the README does
not name) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
PROTOCOL = (REPO / "web" / "src" / "ws" / "protocol.ts").read_text()
SOCKETS = ("/ws/portfolio", "/ws/terminal", "/ws/chat")
# The README introduces each socket with a bold path; its tables follow until the next one.
_HEADING = re.compile(r"^\*\*`(/ws/\w+)`\*\*", re.MULTILINE)
_JSON_TYPE = re.compile(r'"type":\s*"(\w+)"')
# A message named in a table cell by its type: first in the cell, given a payload
# (`chunk` `{sessionId, text}`), or paired with another (`joined` / `left`). A value inside
# prose, such as "(`exited`: the shell ended", is none of these.
_WORD = r"`([a-z]+(?:_[a-z]+)*)`"
_NAMED = (
    re.compile(rf"^{_WORD}"),
    re.compile(rf"{_WORD}\s*`\{{"),
    re.compile(rf"{_WORD}\s*/\s*{_WORD}"),
)


def readme_section(socket: str) -> str:
    starts = {m[1]: m.start() for m in _HEADING.finditer(README)}
    begin = starts[socket]
    after = [at for at in starts.values() if at > begin]
    end = min(after) if after else README.index("\n## ", begin)
    # Sections end at the next heading too (## Workspace follows /ws/terminal's).
    heading = README.find("\n## ", begin)
    return README[begin : min(end, heading) if heading != -1 else end]


def readme_types(socket: str) -> dict[str, set[str]]:
    """Each direction's message types, from the section's tables (the column headed "client
    sends" or "server sends")."""
    found: dict[str, set[str]] = {"client": set(), "server": set()}
    headers: list[str] = []
    for line in readme_section(socket).splitlines():
        if not line.startswith("|"):
            headers = []
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not headers:
            headers = cells
            continue
        if set(line) <= set("|-: "):
            continue
        for header, cell in zip(headers, cells, strict=False):
            side = (
                "client"
                if header == "client sends"
                else "server"
                if header == "server sends"
                else ""
            )
            if not side:
                continue
            found[side] |= set(_JSON_TYPE.findall(cell))
            for named in _NAMED:
                for match in named.finditer(cell):
                    found[side] |= set(match.groups())
    # Every socket's common messages, described once in "Streams and WebSockets".
    found["client"] |= {"auth", "ping"}
    found["server"] |= {"auth_ok", "pong", "error"}
    return found


def _declared(union: str) -> set[str]:
    """The `type` literals of the message types a union (`X = | A | B`) lists, recursively."""
    body = re.search(rf"export type {union} =([^;]+);", PROTOCOL, re.DOTALL)
    assert body is not None, f"no union {union} in protocol.ts"
    types: set[str] = set()
    for member in (name.strip() for name in body[1].split("|") if name.strip()):
        declared = re.search(rf"export type {member} = (\{{.*?\}});", PROTOCOL, re.DOTALL)
        if declared is None:
            types |= _declared(member)
            continue
        literal = re.search(r'type:\s*"(\w+)"', declared[1])
        assert literal is not None, f"{member} has no type literal"
        types.add(literal[1])
    return types


def protocol_types(socket: str) -> dict[str, set[str]]:
    entry = re.search(
        rf'"{re.escape(socket)}":\s*\{{\s*client:\s*(\w+);\s*server:\s*(\w+)\s*\}}', PROTOCOL
    )
    assert entry is not None, f"{socket} missing from Protocols"
    return {"client": _declared(entry[1]), "server": _declared(entry[2])}


@pytest.mark.parametrize("socket", SOCKETS)
def test_the_types_name_exactly_the_readme_s_messages(socket: str) -> None:
    assert protocol_types(socket) == readme_types(socket)


def test_the_readme_tables_are_read_whole() -> None:
    """The parser finds what a reader sees (so an empty parse cannot pass as agreement)."""
    assert readme_types("/ws/portfolio")["server"] >= {
        "price",
        "portfolio_value",
        "trade",
        "trade_deleted",
        "trade_updated",
    }
    assert readme_types("/ws/terminal")["client"] >= {"join", "data", "resize", "disconnect"}
    assert readme_types("/ws/terminal")["server"] >= {"joined", "data", "exit"}
    chat = readme_types("/ws/chat")
    assert chat["client"] >= {"stream_chat", "stop", "join_session", "typing_stop"}
    assert chat["server"] >= {"session", "chunk", "tool_result", "done", "user_left", "typing"}
    assert "exited" not in readme_types("/ws/terminal")["server"]
