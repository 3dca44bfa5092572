"""The gateway's HTTP surface seen with a plain HTTP client: what it refuses, and how it answers.

A request the gateway refuses is refused at the edge - a 4xx with the OpenAI error shape and no
upstream call at all. Every answer carries an `x-request-id`. Streams have the SSE headers of
contract section 2 and are never compressed. Heartbeats commit the headers, after which a
timeout can only be an `event: error` frame; without heartbeats the same timeout is a real 504.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support.fake_upstream import (
    DONE,
    FakeUpstream,
    json_completion,
    openai_chunks,
    sse_stream,
    stall_before_first_event,
)

MODEL = "fake-model"
MESSAGES = [{"role": "user", "content": "hi"}]
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
DEEP = 100_000


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(upstream, models=(MODEL, "other-model"))


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client bound to the gateway's URL (closed before the gateway stops)."""
    async with aiohttp.ClientSession(base_url=gateway.url) as session:
        yield session


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "stream": True, **fields}


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The OpenAI-shaped error object of a JSON error answer (its shape checked)."""
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "code", "param", "category"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# --- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "fake-model", "messages": [', id="malformed-json"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b'[{"model": "fake-model"}]', id="json-array"),
        pytest.param(b'"fake-model"', id="json-string"),
        pytest.param(json.dumps({"messages": MESSAGES}).encode(), id="missing-model"),
        pytest.param(json.dumps(chat(model="")).encode(), id="empty-model"),
        pytest.param(json.dumps(chat(model=7)).encode(), id="model-not-a-string"),
        pytest.param(json.dumps(chat(model="m" * 300)).encode(), id="model-too-long"),
        pytest.param(json.dumps({"model": MODEL}).encode(), id="missing-messages"),
        pytest.param(json.dumps(chat(messages=[])).encode(), id="empty-messages"),
        pytest.param(json.dumps(chat(messages="hi")).encode(), id="messages-not-a-list"),
        pytest.param(json.dumps(chat(stream="yes")).encode(), id="stream-not-a-bool"),
        pytest.param(json.dumps(chat(stream=1)).encode(), id="stream-is-an-int"),
        pytest.param(
            b'{"model": "fake-model", "messages": ' + b"[" * DEEP + b"]" * DEEP + b"}",
            id="nested-json-bomb",
        ),
        pytest.param(b"\xff\xfe not utf-8", id="not-utf8"),
    ],
)
async def test_malformed_request_is_400_and_never_reaches_upstream(
    upstream: FakeUpstream, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        error = await error_of(response)

    assert error["code"] == "invalid_request"
    assert (error["type"], error["category"]) == ("invalid_request_error", "api_error")
    assert upstream.requests == []


async def test_invalid_field_is_named_in_the_message(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/chat/completions", json=chat(stream="yes")) as response:
        error = await error_of(response)

    assert "stream" in error["message"]


def body_of_size(size: int) -> bytes:
    """A valid non-streaming chat request of exactly `size` bytes."""
    bare = json.dumps(chat(stream=False, pad="")).encode()
    body = json.dumps(chat(stream=False, pad="x" * (size - len(bare)))).encode()
    assert len(body) == size
    return body


def send_as(body: bytes, chunked: bool) -> bytes | AsyncIterator[bytes]:
    """`body` as is (with Content-Length), or as a chunked upload of 256-byte pieces."""

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    return pieces() if chunked else body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_over_max_request_bytes_is_413(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    chunked: bool,
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"max_request_bytes": 1024})

    async with client.post(
        f"{gw.url}/v1/chat/completions",
        data=send_as(body_of_size(1025), chunked),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
        error = await error_of(response)

    assert error["code"] == "request_too_large"
    assert "1024" in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_of_exactly_max_request_bytes_is_accepted(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    chunked: bool,
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"max_request_bytes": 1024})
    upstream.script(MODEL, json_completion())

    async with client.post(
        f"{gw.url}/v1/chat/completions",
        data=send_as(body_of_size(1024), chunked),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 200
        await response.read()

    assert len(upstream.requests) == 1


async def test_unknown_model_is_404_model_not_found(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    async with http.post("/v1/chat/completions", json=chat(model="gpt-nope")) as response:
        assert response.status == 404
        error = await error_of(response)

    assert error["code"] == "model_not_found"
    assert "gpt-nope" in error["message"]
    assert upstream.requests == []


async def test_unknown_path_is_404_json(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/nope") as response:
        assert response.status == 404
        error = await error_of(response)

    assert error["code"] == "unsupported_endpoint"


async def test_get_on_chat_endpoint_is_405_json_with_allow(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/chat/completions") as response:
        assert response.status == 405
        assert response.headers.get("Allow") == "POST"
        error = await error_of(response)

    assert error["code"] == "method_not_allowed"


# --- per-request deadline headers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-gateway-idle-timeout", "abc"),
        ("x-gateway-idle-timeout", "-1"),
        ("x-gateway-idle-timeout", "0"),
        ("x-gateway-first-byte-timeout", "nan"),
        ("x-gateway-total-timeout", "inf"),
        ("x-gateway-connect-timeout", ""),
    ],
)
async def test_bad_timeout_header_is_400_naming_the_header(
    upstream: FakeUpstream, http: aiohttp.ClientSession, header: str, value: str
) -> None:
    async with http.post("/v1/chat/completions", json=chat(), headers={header: value}) as response:
        assert response.status == 400
        error = await error_of(response)

    assert header in error["message"]
    assert error["code"] == "invalid_request"
    assert upstream.requests == []


async def test_timeout_header_above_the_ceiling_is_clamped(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        upstream, models=(MODEL,), max_timeouts={"first_byte": 0.2}, heartbeat=None
    )
    upstream.script(MODEL, stall_before_first_event())

    async with client.post(
        f"{gw.url}/v1/chat/completions",
        json=chat(),
        headers={"x-gateway-first-byte-timeout": "100"},
    ) as response:
        assert response.status == 504
        error = await error_of(response)

    assert error["code"] == "first_byte_timeout"
    assert (error["type"], error["category"]) == ("timeout_error", "timeout")
    assert "0.2s" in error["message"]
    call = await upstream.next_call()
    await call.wait_closed_by_peer()


# --- request ids -------------------------------------------------------------------------------


async def test_sane_request_id_is_echoed_on_stream_and_sent_upstream(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        "/v1/chat/completions", json=chat(), headers={"x-request-id": "req-42.a:b_c"}
    ) as response:
        assert response.status == 200
        assert response.headers["x-request-id"] == "req-42.a:b_c"
        await response.read()

    call = await upstream.next_call()
    assert call.headers["X-Request-Id"] == "req-42.a:b_c"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/chat/completions", chat(), 200),
        ("POST", "/v1/chat/completions", chat(stream=False), 200),
        ("POST", "/v1/chat/completions", chat(messages=[]), 400),
        ("POST", "/v1/chat/completions", chat(model="nope"), 404),
        ("GET", "/v1/chat/completions", None, 405),
        ("GET", "/v1/nope", None, 404),
        ("GET", "/v1/models", None, 200),
        ("GET", "/healthz", None, 200),
    ],
)
async def test_every_response_carries_the_request_id(
    upstream: FakeUpstream,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    upstream.script(MODEL, sse_stream() if body is None or body["stream"] else json_completion())
    given = "client-id-1"

    async with http.request(method, path, json=body, headers={"x-request-id": given}) as sane:
        assert sane.status == status
        await sane.read()
    async with http.request(method, path, json=body) as missing:
        assert missing.status == status
        await missing.read()

    assert sane.headers["x-request-id"] == given
    assert GENERATED_ID.match(missing.headers["x-request-id"])


@pytest.mark.parametrize(
    "insane",
    [
        pytest.param("has spaces in it", id="spaces"),
        pytest.param("a" * 300, id="too-long"),
        pytest.param("id;drop", id="punctuation"),
        pytest.param("", id="empty"),
    ],
)
async def test_insane_request_id_is_replaced_by_a_generated_one(
    upstream: FakeUpstream, http: aiohttp.ClientSession, insane: str
) -> None:
    async with http.post(
        "/v1/chat/completions", json=chat(), headers={"x-request-id": insane}
    ) as response:
        assert response.status == 200
        await response.read()

    replaced = response.headers["x-request-id"]
    assert GENERATED_ID.match(replaced)
    call = await upstream.next_call()
    assert call.headers["X-Request-Id"] == replaced


async def test_generated_request_ids_differ_per_request(http: aiohttp.ClientSession) -> None:
    ids = set()
    for _ in range(3):
        async with http.get("/healthz") as response:
            ids.add(response.headers["x-request-id"])

    assert len(ids) == 3


# --- health and models -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints_answer_200(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as response:
        assert response.status == 200
        assert response.content_type == "application/json"


async def test_models_lists_exactly_the_configured_models_in_openai_shape(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/v1/models") as response:
        assert response.status == 200
        body = await response.json()

    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == [MODEL, "other-model"]
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert isinstance(model["owned_by"], str)


# --- the stream's headers ----------------------------------------------------------------------


async def test_stream_has_sse_headers_no_compression_and_exact_bytes(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    chunks = openai_chunks(["Hel", "lo"])
    upstream.script(MODEL, sse_stream(chunks))

    async with http.post(
        "/v1/chat/completions",
        json=chat(),
        headers={"Accept-Encoding": "gzip, deflate, br"},
        auto_decompress=False,
    ) as response:
        assert response.status == 200
        body = await response.read()

    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    assert body == b"".join(chunks) + DONE
    call = await upstream.next_call()
    assert call.headers["Accept-Encoding"] == "identity"


# --- heartbeats and the error channel ----------------------------------------------------------


async def test_heartbeats_commit_headers_so_first_byte_timeout_is_an_error_event(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), heartbeat=0.05)
    upstream.script(MODEL, stall_before_first_event())

    async with client.post(
        f"{gw.url}/v1/chat/completions",
        json=chat(),
        headers={"x-gateway-first-byte-timeout": "0.5"},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = await response.content.readuntil(b"\n\n")
        assert first == b": ping\n\n"
        body = first + await response.content.read()  # to EOF

    frames = body.split(b"\n\n")
    assert frames.pop() == b""  # the body ends at a frame boundary
    *pings, last = frames
    assert pings
    assert set(pings) == {b": ping"}
    event, data = last.split(b"\n")
    assert event == b"event: error"
    assert data.startswith(b"data: ")
    payload = json.loads(data.removeprefix(b"data: "))
    assert payload["type"] == "timeout"
    assert payload["error"]["code"] == "first_byte_timeout"
    assert payload["error"]["type"] == "timeout"
    call = await upstream.next_call()
    await call.wait_closed_by_peer()


async def test_without_heartbeats_first_byte_timeout_is_a_504(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), heartbeat=None)
    upstream.script(MODEL, stall_before_first_event())

    async with client.post(
        f"{gw.url}/v1/chat/completions",
        json=chat(),
        headers={"x-gateway-first-byte-timeout": "0.2", "x-request-id": "slow-1"},
    ) as response:
        assert response.status == 504
        assert response.headers["x-request-id"] == "slow-1"
        error = await error_of(response)

    assert error["code"] == "first_byte_timeout"
    assert (error["type"], error["category"]) == ("timeout_error", "timeout")
    call = await upstream.next_call()
    await call.wait_closed_by_peer()
