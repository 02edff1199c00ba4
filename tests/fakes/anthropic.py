"""A local Anthropic Messages API: its real HTTP + Server-Sent Events wire format, on 127.0.0.1
port 0, for the official SDK to talk to (base_url).

    async with FakeAnthropic() as fake:
        fake.replies.append(Reply(text="Hello there"))
        config = {"CLAUDE_API_KEY": fake.api_key, "ANTHROPIC_BASE_URL": fake.url, ...}

Each `POST /v1/messages` takes the next queued `Reply` (else `default(body)`) and streams it as
the API does: `message_start`, then per block `content_block_start`, its deltas (`text_delta`,
or `input_json_delta` pieces of a tool's input), `content_block_stop`, then `message_delta`
(stop reason, usage) and `message_stop`. A Reply can instead answer an HTTP error (429 with
`retry-after`, 529 overloaded, 401...), send an `error` event after some text, or hold the
stream after some text until `release()` (a provider that stalls mid-answer). `GET /v1/models`
lists `models`. `requests` keeps every request body and the API key it came with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

API_KEY = "sk-ant-fake-0123456789"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    """One answer of the fake. `text` streams as one delta per word ("token")."""

    text: str = ""
    # Tools the model calls after its text: (name, input).
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Non-200: answer this HTTP status with the API's error body instead of a stream.
    status: int = 200
    retry_after: str | None = None
    # Send an `error` event (of this type) after this many text deltas.
    error_after: int | None = None
    error_type: str = "overloaded_error"
    # Stop after this many text deltas until `release()` (or the fake closes).
    hold_after: int | None = None
    # Wait this long (or until `release()`) before answering at all.
    delay: float = 0.0
    input_tokens: int = 25


@dataclass(frozen=True)
class SeenRequest:
    body: dict[str, Any]
    api_key: str

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def tool_results(self) -> list[dict[str, Any]]:
        """The `tool_result` blocks of the last user turn."""
        last = self.messages[-1]["content"] if self.messages else []
        if isinstance(last, str):
            return []
        return [b for b in last if b.get("type") == "tool_result"]


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


class FakeAnthropic(FakeServer):
    # A deep accept queue: a burst of new streams must not wait out a SYN retry (1 s).
    backlog = 1024

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        tokens_per_second: float = 0.0,
        default: Callable[[dict[str, Any]], Reply] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        # 0: deltas as fast as they can be written; else this many per second.
        self.tokens_per_second = tokens_per_second
        self.replies: deque[Reply] = deque()
        self.default = default or (lambda body: Reply(text="Hello from the fake model."))
        self.models = [("claude-fake-2-20260101", "Claude Fake 2")]
        self.requests: list[SeenRequest] = []

    def release(self) -> None:
        """Let held and delayed replies go on."""
        self._release.set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    # --- handlers ------------------------------------------------------------------------------

    @staticmethod
    def _key(request: web.Request) -> str:
        """The API key as sent: `x-api-key`, or `Authorization: Bearer` (what SDK 2.x sends)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            return token
        return request.headers.get("x-api-key", "")

    def _authorized(self, request: web.Request) -> web.Response | None:
        if self._key(request) == self.api_key:
            return None
        return self._error(401, "invalid x-api-key")

    @staticmethod
    def _error(status: int, message: str, retry_after: str | None = None) -> web.Response:
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        if status in {429, 529}:
            headers["x-should-retry"] = "true"
        body = {
            "type": "error",
            "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
        }
        return web.json_response(body, status=status, headers=headers)

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._authorized(request)
        if refused is not None:
            return refused
        data = [
            {
                "type": "model",
                "id": model_id,
                "display_name": name,
                "created_at": "2026-01-01T00:00:00Z",
            }
            for model_id, name in self.models
        ]
        first = data[0]["id"] if data else None
        last = data[-1]["id"] if data else None
        return web.json_response(
            {"data": data, "has_more": False, "first_id": first, "last_id": last}
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(SeenRequest(body, self._key(request)))
        refused = self._authorized(request)
        if refused is not None:
            return refused
        reply = self.replies.popleft() if self.replies else self.default(body)
        if reply.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), reply.delay)
        if reply.status != 200:
            return self._error(reply.status, f"fake {reply.status}", reply.retry_after)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": f"req_{uuid.uuid4().hex[:24]}",
            }
        )
        await response.prepare(request)
        await self._stream(response, reply, str(body.get("model", "")))
        return response

    async def _pause(self) -> None:
        if self.tokens_per_second > 0:
            await asyncio.sleep(1 / self.tokens_per_second)

    async def _stream(self, response: web.StreamResponse, reply: Reply, model: str) -> None:
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        start = {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
            },
        }
        await response.write(_event("message_start", start))
        await response.write(_event("ping", {"type": "ping"}))
        index = 0
        output_tokens = 0
        pieces = words(reply.text)
        if pieces:
            block: dict[str, Any] = {"type": "text", "text": ""}
            await response.write(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            for sent, piece in enumerate(pieces):
                if reply.error_after is not None and sent == reply.error_after:
                    error = {"type": reply.error_type, "message": "fake failure mid-stream"}
                    await response.write(_event("error", {"type": "error", "error": error}))
                    return
                if reply.hold_after is not None and sent == reply.hold_after:
                    await self._release.wait()
                if sent:
                    await self._pause()
                delta = {"type": "text_delta", "text": piece}
                await response.write(
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
                output_tokens += 1
            await response.write(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
            index += 1
        for name, arguments in reply.tools:
            block = {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": name,
                "input": {},
            }
            await response.write(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            text = json.dumps(arguments)
            # The API sends the input as JSON text in pieces, starting with an empty one.
            for part in ["", text[: len(text) // 2], text[len(text) // 2 :]]:
                delta = {"type": "input_json_delta", "partial_json": part}
                await response.write(
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            await response.write(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
            index += 1
            output_tokens += 10
        stop_reason = "tool_use" if reply.tools else "end_turn"
        await response.write(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        await response.write(_event("message_stop", {"type": "message_stop"}))
        await response.write_eof()
