"""The facade's generic client-streaming handler (built for workspace uploads), against a real
gRPC server of a test-only API compiled here: which RPCs get a route, the message convention
(first message: path and query fields, the content type and the first chunk; then one message
per chunk), the upload limit, and a service that refuses midway."""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.descriptor import ServiceDescriptor

from facade.openapi import build_openapi
from facade.routes import routes_for_method
from facade.transcoding import Endpoint
from facade.uploads import CHUNK_BYTES, transcode_upload
from services.runtime.config import RuntimeConfig
from tests.compiled_protos import add_to_default_pool
from tests.integration.transcoder_harness import Handler, message_class, serving, transcoder_app

UPLOADS_PROTO = """
syntax = "proto3";
package uploadtest.v1;
import "google/api/annotations.proto";
import "google/api/httpbody.proto";

message PutRequest {
  string bucket = 1;
  string name = 2;
  int32 fail_after_bytes = 3;
  google.api.HttpBody body = 4;
}
message PutResponse {
  int64 size = 1;
  int32 messages = 2;
  string content_type = 3;
}
message Note { string text = 1; }
message NotesResponse { int32 count = 1; }
service UploadTestService {
  rpc Put(stream PutRequest) returns (PutResponse) {
    option (google.api.http) = {post: "/v1/buckets/{bucket}/objects" body: "body"};
  }
  // Not an HttpBody body: no REST form.
  rpc Notes(stream Note) returns (NotesResponse) {
    option (google.api.http) = {post: "/v1/notes" body: "*"};
  }
  rpc Echo(stream PutRequest) returns (stream PutResponse) {
    option (google.api.http) = {post: "/v1/echo" body: "body"};
  }
}
"""

Client = TestClient[web.Request, web.Application]
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> ServiceDescriptor:
    file = add_to_default_pool("uploads.proto", UPLOADS_PROTO, tmp_path_factory.mktemp("protos"))
    return file.services_by_name["UploadTestService"]


class Recorder:
    """Records every message of every Put; fails when asked, after that many bytes."""

    def __init__(self, api: ServiceDescriptor) -> None:
        self.response = message_class(api, "PutResponse")
        self.received: list[Any] = []
        self.ended = asyncio.Event()
        self.cancelled = False

    async def put(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        context.add_done_callback(lambda call: self.ended.set())
        size = 0
        content_type = ""
        fail_after = 0
        try:
            async for message in requests:
                if not self.received:
                    content_type = message.body.content_type
                    fail_after = message.fail_after_bytes
                self.received.append(message)
                size += len(message.body.data)
                if fail_after and size >= fail_after:
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no such bucket")
            # A cancelled call also ends the request stream; its cancellation lands here.
            await context.send_initial_metadata(())
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return self.response(size=size, messages=len(self.received), content_type=content_type)


@pytest.fixture
async def upstream(api: ServiceDescriptor) -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder(api)
    request = message_class(api, "PutRequest")
    methods = {
        "Put": grpc.stream_unary_rpc_method_handler(
            recorder.put,
            request_deserializer=request.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )
    }
    async with serving(api, methods) as address:
        yield recorder, address


def uploads_app(
    api: ServiceDescriptor,
    config_for: Callable[..., RuntimeConfig],
    address: str,
    deadline: float = 5,
) -> web.Application:
    """The facade's edge and upload handler over the test API's routes (as create_app does)."""

    def handler_for(endpoint: Endpoint) -> Handler:
        return functools.partial(transcode_upload, endpoint)

    return transcoder_app(
        api, config_for, address, handler_for, deadline=deadline, upload_limit=LIMIT
    )


@pytest.fixture
async def client(
    api: ServiceDescriptor,
    make_config: Callable[..., RuntimeConfig],
    upstream: tuple[Recorder, str],
) -> AsyncIterator[Client]:
    async with TestClient(TestServer(uploads_app(api, make_config, upstream[1]))) as opened:
        yield opened


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_only_client_streams_of_an_http_body_get_a_route(api: ServiceDescriptor) -> None:
    routes = {m.name: routes_for_method("uploadtest", m) for m in api.methods}
    assert routes["Notes"] == [] and routes["Echo"] == []
    (put,) = routes["Put"]
    assert (put.verb, put.aiohttp_path, put.body) == (
        "POST",
        "/v1/buckets/{bucket}/objects",
        "body",
    )
    assert put.streamed_body and not put.streaming
    assert set(put.query) == {"name", "fail_after_bytes", "failAfterBytes"}


def test_openapi_describes_the_body_as_raw_bytes(api: ServiceDescriptor) -> None:
    routes = [r for m in api.methods for r in routes_for_method("uploadtest", m)]
    document = build_openapi(routes)
    body = document["paths"]["/v1/buckets/{bucket}/objects"]["post"]["requestBody"]
    assert body["content"] == {"*/*": {"schema": {"type": "string", "format": "binary"}}}


async def test_the_first_message_carries_the_fields_and_each_chunk_follows_alone(
    client: Client, upstream: tuple[Recorder, str]
) -> None:
    recorder = upstream[0]
    data = bytes(range(256)) * 2048  # 512 KiB
    response = await client.post(
        "/v1/buckets/photos/objects?name=cat.png",
        data=pieces(data, 100_000),
        headers={"Content-Type": "image/png"},
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["data"]["size"] == str(len(data))
    assert body["data"]["contentType"] == "image/png"
    first, *rest = recorder.received
    assert (first.bucket, first.name, first.body.content_type) == ("photos", "cat.png", "image/png")
    assert all((m.bucket, m.name, m.body.content_type) == ("", "", "") for m in rest)
    assert b"".join(m.body.data for m in recorder.received) == data
    assert all(0 < len(m.body.data) <= CHUNK_BYTES for m in recorder.received)
    assert len(recorder.received) > 1


async def test_an_empty_body_still_sends_the_first_message(
    client: Client, upstream: tuple[Recorder, str]
) -> None:
    response = await client.post("/v1/buckets/b/objects?name=empty", data=b"")
    assert response.status == 200
    assert [(m.name, m.body.data) for m in upstream[0].received] == [("empty", b"")]


async def test_a_body_over_the_limit_is_413_and_cancels_the_call(
    client: Client, upstream: tuple[Recorder, str]
) -> None:
    recorder = upstream[0]
    response = await client.post(
        "/v1/buckets/b/objects?name=big", data=pieces(b"z" * (LIMIT + 1), 64 * 1024)
    )
    body = await response.json()
    assert response.status == 413
    assert body["error"] == "PAYLOAD_TOO_LARGE"
    await asyncio.wait_for(recorder.ended.wait(), 10)
    assert recorder.cancelled
    assert sum(len(m.body.data) for m in recorder.received) <= LIMIT


async def test_a_declared_length_over_the_limit_is_refused_before_any_call(
    client: Client, upstream: tuple[Recorder, str]
) -> None:
    response = await client.post(
        "/v1/buckets/b/objects?name=big",
        data=io.BytesIO(b"z" * (LIMIT + 1)),  # sent with its Content-Length
    )
    assert response.status == 413
    assert upstream[0].received == []


async def test_a_service_that_refuses_midway_is_answered_with_its_status(
    client: Client, upstream: tuple[Recorder, str]
) -> None:
    response = await client.post(
        "/v1/buckets/b/objects?name=x&failAfterBytes=1000",
        data=pieces(b"q" * (512 * 1024), 32 * 1024),
    )
    body = await response.json()
    assert response.status == 404
    assert body["message"] == "no such bucket"
    assert body["service"] == "uploadtest"


async def test_bad_query_parameters_are_refused_before_any_call(
    client: Client, upstream: tuple[Recorder, str]
) -> None:
    response = await client.post("/v1/buckets/b/objects?colour=red", data=b"abc")
    body = await response.json()
    assert response.status == 422
    assert [f["field"] for f in body["details"]["fields"]] == ["colour"]
    assert upstream[0].received == []


async def test_a_body_that_stops_arriving_is_408_and_cancels_the_call(
    api: ServiceDescriptor,
    make_config: Callable[..., RuntimeConfig],
    upstream: tuple[Recorder, str],
) -> None:
    recorder, address = upstream
    app = uploads_app(api, make_config, address, deadline=0.2)
    async with TestClient(TestServer(app)) as client:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"POST /v1/buckets/b/objects?name=slow HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"s" * 10
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status_line.startswith(b"HTTP/1.1 408")
        await asyncio.wait_for(recorder.ended.wait(), 10)
        assert recorder.cancelled
        assert [m.body.data for m in recorder.received] == [b"s" * 10]
