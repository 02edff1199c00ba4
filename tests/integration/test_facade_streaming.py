"""Server-streaming routes through the facade's one generic stream handler, against a real gRPC
server of a test-only streaming API (compiled here): NDJSON and SSE, raw bodies, the envelope
for a stream that fails before it starts, the error record for one that fails midway, heartbeats,
and a client that goes away cancelling the call."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.api import httpbody_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from facade.openapi import build_openapi
from facade.routes import routes_for_method
from facade.streaming import transcode_stream
from facade.transcoding import Endpoint
from services.runtime.config import RuntimeConfig
from tests.compiled_protos import add_to_default_pool
from tests.integration.transcoder_harness import Handler, message_class, serving, transcoder_app

STREAMS_PROTO = """
syntax = "proto3";
package streamtest.v1;
import "google/api/annotations.proto";
import "google/api/httpbody.proto";

enum Mood {
  MOOD_UNSPECIFIED = 0;
  MOOD_CALM = 1;
  MOOD_EXCITED = 2;
}
message Tick {
  int32 n = 1;
  Mood mood = 2;
  string note_text = 3;
}
message CountRequest {
  int32 count = 1;
  // Fail with fail_code once this many messages are out.
  optional int32 fail_after = 2;
  string fail_code = 3;
  // Wait this long before the first message (and before failing).
  int32 quiet_ms = 4;
  // Send the response headers before waiting.
  bool headers_first = 5;
  // Stay open after the messages, until cancelled.
  bool hold = 6;
}
message DownloadRequest {
  string name = 1;
  int32 chunks = 2;
  optional int32 fail_after = 3;
  string format = 4;
}
service StreamTestService {
  rpc Count(CountRequest) returns (stream Tick) {
    option (google.api.http) = {get: "/v1/count"};
  }
  rpc Download(DownloadRequest) returns (stream google.api.HttpBody) {
    option (google.api.http) = {get: "/v1/reports/{name}/download"};
  }
}
"""

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> ServiceDescriptor:
    file = add_to_default_pool("streams.proto", STREAMS_PROTO, tmp_path_factory.mktemp("protos"))
    return file.services_by_name["StreamTestService"]


class StreamServicer:
    """Streams as each request asks; records when a call ends (completed or cancelled)."""

    def __init__(self, api: ServiceDescriptor) -> None:
        self.tick = message_class(api, "Tick")
        self.ended = asyncio.Event()

    async def _fail(self, context: grpc.aio.ServicerContext, code: str) -> None:
        await context.abort(grpc.StatusCode[code or "NOT_FOUND"], f"failed with {code}")

    async def count(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        context.add_done_callback(lambda _: self.ended.set())
        if request.headers_first:
            await context.send_initial_metadata(())
        await asyncio.sleep(request.quiet_ms / 1000)
        for n in range(request.count + 1):
            if request.HasField("fail_after") and n == request.fail_after:
                await self._fail(context, request.fail_code)
            if n == request.count:
                break
            yield self.tick(n=n, mood=2, note_text=f"tick {n}")
        if request.hold:
            await asyncio.Event().wait()

    async def download(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        for n in range(request.chunks):
            if request.HasField("fail_after") and n == request.fail_after:
                await self._fail(context, "FAILED_PRECONDITION")
            yield httpbody_pb2.HttpBody(
                content_type="text/csv; charset=utf-8", data=f"{request.name},{n}\r\n".encode()
            )


@pytest.fixture
async def upstream(api: ServiceDescriptor) -> AsyncIterator[tuple[StreamServicer, str]]:
    """The test API's real gRPC server on port 0."""
    servicer = StreamServicer(api)
    count_request = message_class(api, "CountRequest")
    download_request = message_class(api, "DownloadRequest")
    methods = {
        "Count": grpc.unary_stream_rpc_method_handler(
            servicer.count,
            request_deserializer=count_request.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        ),
        "Download": grpc.unary_stream_rpc_method_handler(
            servicer.download,
            request_deserializer=download_request.FromString,
            response_serializer=httpbody_pb2.HttpBody.SerializeToString,
        ),
    }
    async with serving(api, methods) as address:
        yield servicer, address


def streaming_app(
    api: ServiceDescriptor, config_for: Callable[..., RuntimeConfig], address: str
) -> web.Application:
    """The facade's edge and stream handler over the test API's routes (as create_app does)."""

    def handler_for(endpoint: Endpoint) -> Handler:
        return functools.partial(transcode_stream, endpoint, heartbeat=0.05)

    return transcoder_app(api, config_for, address, handler_for, deadline=5)


@pytest.fixture
async def client(
    api: ServiceDescriptor,
    make_config: Callable[..., RuntimeConfig],
    upstream: tuple[StreamServicer, str],
) -> AsyncIterator[Client]:
    async with TestClient(TestServer(streaming_app(api, make_config, upstream[1]))) as opened:
        yield opened


def lines(body: bytes) -> list[Any]:
    return [json.loads(line) for line in body.decode().splitlines()]


def events(body: bytes) -> list[tuple[str, Any]]:
    """(event, parsed data) per SSE event; comment lines are skipped."""
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


TICKS = [{"n": n, "mood": "excited", "noteText": f"tick {n}"} for n in range(3)]


# --- messages: NDJSON and SSE -------------------------------------------------------------


async def test_messages_stream_as_ndjson_each_message_itself_on_its_own_line(
    client: Client,
) -> None:
    response = await client.get("/v1/count", params={"count": "3"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert response.headers["X-Correlation-ID"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert lines(await response.read()) == TICKS


async def test_event_stream_clients_get_one_message_event_per_message(client: Client) -> None:
    response = await client.get(
        "/v1/count", params={"count": "3"}, headers={"Accept": "text/event-stream"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert events(await response.read()) == [("message", tick) for tick in TICKS]


async def test_a_quiet_event_stream_gets_heartbeat_comments(client: Client) -> None:
    response = await client.get(
        "/v1/count",
        params={"count": "1", "quietMs": "300", "headersFirst": "true"},
        headers={"Accept": "text/event-stream"},
    )
    body = (await response.read()).decode()
    assert response.status == 200
    before_first = body.split("event: message", 1)[0]
    assert before_first.count(": keep-alive\n\n") >= 2
    assert events(body.encode()) == [("message", TICKS[0])]


async def test_an_empty_stream_is_an_empty_200(client: Client) -> None:
    response = await client.get("/v1/count", params={"count": "0"})
    assert response.status == 200
    assert await response.read() == b""


# --- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("quiet_ms", ["0", "150"])
async def test_a_stream_that_fails_before_its_first_message_is_the_error_envelope(
    client: Client, quiet_ms: str
) -> None:
    response = await client.get(
        "/v1/count",
        params={"count": "3", "failAfter": "0", "failCode": "NOT_FOUND", "quietMs": quiet_ms},
    )
    body = await response.json()
    assert response.status == 404
    assert body["success"] is False
    assert (body["error"], body["message"]) == ("NOT_FOUND", "failed with NOT_FOUND")
    assert body["service"] == "streamtest"


async def test_a_stream_whose_service_sent_headers_and_then_failed_ends_with_the_error_record(
    client: Client,
) -> None:
    # The service accepted the call (its headers), so the stream had begun: the error record.
    response = await client.get(
        "/v1/count",
        params={
            "count": "3",
            "failAfter": "0",
            "failCode": "NOT_FOUND",
            "headersFirst": "true",
            "quietMs": "100",
        },
    )
    assert response.status == 200
    assert lines(await response.read()) == [
        {"error": "NOT_FOUND", "message": "failed with NOT_FOUND"}
    ]


async def test_a_stream_that_fails_midway_ends_with_an_ndjson_error_line(client: Client) -> None:
    response = await client.get(
        "/v1/count", params={"count": "3", "failAfter": "2", "failCode": "RESOURCE_EXHAUSTED"}
    )
    assert response.status == 200
    assert lines(await response.read()) == [
        *TICKS[:2],
        {"error": "RESOURCE_EXHAUSTED", "message": "failed with RESOURCE_EXHAUSTED"},
    ]


async def test_an_event_stream_that_fails_midway_ends_with_an_error_event(client: Client) -> None:
    response = await client.get(
        "/v1/count",
        params={"count": "3", "failAfter": "1", "failCode": "ABORTED"},
        headers={"Accept": "text/event-stream"},
    )
    assert response.status == 200
    assert events(await response.read()) == [
        ("message", TICKS[0]),
        ("error", {"error": "ABORTED", "message": "failed with ABORTED"}),
    ]


async def test_an_internal_failure_midway_leaks_nothing(client: Client) -> None:
    response = await client.get(
        "/v1/count", params={"count": "3", "failAfter": "1", "failCode": "DATA_LOSS"}
    )
    assert lines(await response.read())[-1] == {
        "error": "INTERNAL",
        "message": "internal error",
    }


async def test_bad_query_parameters_are_refused_before_any_call(
    client: Client, upstream: tuple[StreamServicer, str]
) -> None:
    response = await client.get("/v1/count", params={"count": "many"})
    body = await response.json()
    assert response.status == 422
    assert body["details"]["fields"] == [{"field": "count", "description": "must be an integer"}]
    assert not upstream[0].ended.is_set()


# --- raw bodies ----------------------------------------------------------------------------


async def test_a_raw_body_streams_its_chunks_as_a_download_typed_by_the_first_chunk(
    client: Client,
) -> None:
    response = await client.get("/v1/reports/q3/download", params={"chunks": "3", "format": "csv"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="download.csv"'
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert await response.read() == b"q3,0\r\nq3,1\r\nq3,2\r\n"


async def test_a_raw_body_that_fails_before_its_first_chunk_is_the_error_envelope(
    client: Client,
) -> None:
    response = await client.get("/v1/reports/q3/download", params={"chunks": "3", "failAfter": "0"})
    assert response.status == 422
    assert (await response.json())["error"] == "FAILED_PRECONDITION"


async def test_a_raw_body_that_fails_midway_is_cut_off_never_complete(client: Client) -> None:
    response = await client.get("/v1/reports/q3/download", params={"chunks": "3", "failAfter": "2"})
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


# --- clients that go away ------------------------------------------------------------------


async def test_a_client_that_goes_away_cancels_the_call(
    client: Client, upstream: tuple[StreamServicer, str]
) -> None:
    response = await client.get("/v1/count", params={"count": "1", "hold": "true"})
    assert json.loads(await response.content.readline()) == TICKS[0]
    assert not upstream[0].ended.is_set()
    response.close()
    await asyncio.wait_for(upstream[0].ended.wait(), 5)


async def test_without_handler_cancellation_the_heartbeat_notices_a_client_gone(
    api: ServiceDescriptor,
    make_config: Callable[..., RuntimeConfig],
    upstream: tuple[StreamServicer, str],
) -> None:
    # As `python -m facade` runs it: aiohttp does not cancel handlers when clients leave.
    runner = web.AppRunner(streaming_app(api, make_config, upstream[1]))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/v1/count"
            response = await http.get(url, params={"count": "1", "hold": "true"})
            assert json.loads(await response.content.readline()) == TICKS[0]
            response.close()
        await asyncio.wait_for(upstream[0].ended.wait(), 5)
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def test_openapi_lists_a_message_stream_with_both_content_types(api: ServiceDescriptor) -> None:
    count = routes_for_method("streamtest", api.methods_by_name["Count"])[0]
    ok = build_openapi([count])["paths"]["/v1/count"]["get"]["responses"]["200"]
    assert list(ok["content"]) == ["application/x-ndjson", "text/event-stream"]
    tick = {"$ref": "#/components/schemas/streamtest.v1.Tick"}
    assert ok["content"]["application/x-ndjson"]["schema"] == tick
    assert ok["content"]["text/event-stream"]["x-message-schema"] == tick
    assert "error record" in ok["description"]


def test_the_test_api_routes_are_streams(api: ServiceDescriptor) -> None:
    count = routes_for_method("streamtest", api.methods_by_name["Count"])[0]
    download = routes_for_method("streamtest", api.methods_by_name["Download"])[0]
    assert count.streaming and not count.raw_body and not count.download_name
    assert download.raw_body and download.download_name == "download"
    assert isinstance(message_class(api, "Tick")(), Message)
