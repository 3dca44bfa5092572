"""Limits on what a client sends: how long its request head and body may take, how large its
head and body may be - each answered with a clear error, nothing else harmed.

Slow and hostile clients are raw sockets (`tests.support.raw_http`): a slowloris sends its head
a byte at a time, another client its body. Each is cut off after its deadline while a normal
stream on another connection runs to its end. Oversized and malformed heads get a JSON error
(431 or 400) that echoes nothing the client sent, and the log says so in one line, without a
traceback. A body that is too large is refused from its `Content-Length` before it is sent
(`Expect: 100-continue` is answered only when the gateway wants the body).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import structlog

from gateway.observability import configure_logging
from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import total
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import DONE, FakeUpstream
from tests.support.raw_http import exchange, head, parse_responses, trickle

MODEL = "m"
CHAT = json.dumps(
    {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
).encode()
HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
TRICKLE = 0.05  # seconds between two bytes of a slow client
CANARY = "gw-canary-5b0e77d2c1a4"


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def chat_head(length: int, **headers: str) -> bytes:
    fields = {"Content-Type": "application/json", "Content-Length": str(length), **headers}
    return head("POST", "/v1/chat/completions", fields)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured at debug level, as JSON, into a buffer; restored afterwards."""
    buffer = io.StringIO()
    configure_logging("debug", "json", buffer)
    yield buffer
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


async def normal_stream(gw: RunningGateway) -> bytes:
    """A whole streamed answer, read as a client would."""
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200
        return await response.read()


# --- deadlines ---------------------------------------------------------------------------------


async def test_slowloris_head_is_cut_at_the_head_deadline_while_a_stream_runs_on(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"head_timeout": HEAD_TIMEOUT})
    chunks = fake.openai_chunks([f"w{i} " for i in range(30)])
    # A stream that lasts longer than the head deadline, on a connection of its own.
    upstream.script(MODEL, fake.sse_stream(chunks, delay=HEAD_TIMEOUT * 2 / len(chunks)))
    slow_head = head("GET", "/healthz", {"X-Pad": "a" * 200})

    stream, slow = await asyncio.gather(
        normal_stream(gw), trickle(port_of(gw), slow_head, interval=TRICKLE)
    )

    print(f"slowloris head: closed after {slow.closed_after:.3f}s, {slow.sent}/{slow.total} B")
    assert slow.cut_short  # it never got to finish its head
    assert slow.closed_after >= HEAD_TIMEOUT
    assert slow.received == b""  # closed, nothing answered: there was no request to answer
    assert stream == b"".join(chunks) + DONE


async def test_head_deadline_counts_from_the_end_of_the_previous_response(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"head_timeout": HEAD_TIMEOUT})
    first = head("GET", "/healthz")
    second = head("GET", "/healthz", {"X-Pad": "a" * 200})

    slow = await trickle(port_of(gw), first + second, interval=TRICKLE, start=len(first))

    [answer] = parse_responses(slow.received)
    assert answer.status == 200  # the first request, sent at once, was served
    assert slow.cut_short
    assert slow.closed_after >= HEAD_TIMEOUT


async def test_slow_body_gets_408_at_the_body_deadline_and_the_connection_closes(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"body_timeout": BODY_TIMEOUT})
    upstream.script(MODEL, fake.sse_stream(delay=0.2))
    request = chat_head(len(CHAT)) + CHAT

    stream, slow = await asyncio.gather(
        normal_stream(gw),
        trickle(port_of(gw), request, interval=TRICKLE, start=len(request) - len(CHAT)),
    )

    print(f"slow body: 408 and closed after {slow.closed_after:.3f}s, {slow.sent}/{slow.total} B")
    [answer] = parse_responses(slow.received)
    assert answer.status == 408
    error = answer.json()["error"]
    assert error["code"] == "request_timeout"
    assert f"{BODY_TIMEOUT:g}s" in error["message"]
    assert slow.cut_short  # closed at once, not drained while the client kept sending
    assert slow.closed_after >= BODY_TIMEOUT
    assert stream.endswith(DONE)
    assert [call.body["stream"] for call in upstream.requests] == [True]  # the normal one only


async def test_slow_body_on_messages_gets_408_in_anthropic_shape(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"body_timeout": 0.3})
    body = json.dumps({"model": MODEL, "max_tokens": 5, "messages": []}).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    request = head("POST", "/v1/messages", fields) + body

    slow = await trickle(port_of(gw), request, interval=TRICKLE, start=len(request) - len(body))

    [answer] = parse_responses(slow.received)
    assert answer.status == 408
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "api_error"
    assert upstream.requests == []


# --- sizes -------------------------------------------------------------------------------------


async def test_content_length_over_the_limit_is_413_before_the_body_is_sent(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,), limits={"max_request_bytes": 1024})
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    try:
        writer.write(chat_head(10**9))  # the head only: the body is never sent
        async with asyncio.timeout(10):
            answer_head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert answer_head.startswith(b"HTTP/1.1 413 ")
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("path", "length", "headers", "status"),
    [
        pytest.param("/v1/chat/completions", 10**9, {}, 413, id="too-large"),
        pytest.param("/v1/messages", 10**9, {}, 413, id="too-large-messages"),
        pytest.param(
            "/v1/chat/completions", 100, {"Authorization": "Bearer nope"}, 401, id="bad-key"
        ),
    ],
)
async def test_expect_continue_is_not_granted_to_a_request_refused_from_its_head(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    path: str,
    length: int,
    headers: dict[str, str],
    status: int,
) -> None:
    gw = await start_gateway(
        upstream, models=(MODEL,), limits={"max_request_bytes": 1024}, auth={"keys": [CANARY]}
    )
    auth = {"Authorization": f"Bearer {CANARY}", **headers}
    fields = {"Content-Type": "application/json", "Content-Length": str(length),
              "Expect": "100-continue", **auth}  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    try:
        writer.write(head("POST", path, fields))
        async with asyncio.timeout(10):
            answer_head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert answer_head.startswith(f"HTTP/1.1 {status} ".encode())  # no 100 Continue first
    assert upstream.requests == []


async def test_expect_continue_is_granted_once_the_request_passed_its_checks(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,))
    upstream.script(MODEL, fake.json_completion())
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    try:
        writer.write(chat_head(len(CHAT), Expect="100-continue"))
        async with asyncio.timeout(10):
            interim = await reader.readuntil(b"\r\n\r\n")
            writer.write(CHAT)
            final = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 ")
    assert len(upstream.requests) == 1


async def test_unknown_expectation_is_ignored(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(upstream, models=(MODEL,))
    upstream.script(MODEL, fake.json_completion())
    request = chat_head(len(CHAT), Expect="teapot", Connection="close") + CHAT

    [answer] = parse_responses(await exchange(port_of(gw), request))

    assert answer.status == 200
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("request_head", "status", "code"),
    [
        pytest.param(
            head("GET", "/healthz", {"X-Long": "a" * 2000}),
            431,
            "request_head_too_large",
            id="long-field",
        ),
        pytest.param(
            head("GET", "/healthz", {"Authorization": f"Bearer {CANARY}" + "x" * 2000}),
            431,
            "request_head_too_large",
            id="long-key",
        ),
        pytest.param(
            head("GET", "/healthz?" + "q" * 2000), 431, "request_head_too_large", id="long-line"
        ),
        pytest.param(
            head("GET", "/healthz", {f"X-H{i}": "v" for i in range(30)}),
            431,
            "request_head_too_large",
            id="too-many-headers",
        ),
        pytest.param(  # past the parser's own bound (twice max_headers): unparsable
            head("GET", "/healthz", {f"X-H{i}": "v" for i in range(40)}),
            400,
            "invalid_request",
            id="past-the-parser-bound",
        ),
        pytest.param(b"\x16\x03\x01\x02\x00 hello\r\n\r\n", 400, "invalid_request", id="tls"),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            400,
            "invalid_request",
            id="no-colon",
        ),
        pytest.param(
            chat_head(5, **{"Content-Length": "abc"}), 400, "invalid_request", id="bad-length"
        ),
    ],
)
async def test_bad_request_head_is_answered_in_json_echoing_nothing(
    upstream: FakeUpstream,
    start_gateway: StartGateway,
    log_stream: io.StringIO,
    request_head: bytes,
    status: int,
    code: str,
) -> None:
    gw = await start_gateway(
        upstream,
        models=(MODEL,),
        limits={"max_header_line_bytes": 1024, "max_headers": 20},
        auth={"keys": [CANARY]},
    )

    raw = await exchange(port_of(gw), request_head)  # the gateway closes the connection

    [answer] = parse_responses(raw)
    assert answer.status == status
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == code
    assert error["category"] == "api_error"
    for echoed in (b"aaaa", b"qqqq", CANARY.encode()):
        assert echoed not in raw
    logged = log_stream.getvalue()
    for leaked in ("Traceback", CANARY, "aaaa", "qqqq"):
        assert leaked not in logged
    [line] = [line for line in log_lines(log_stream) if line["event"] == "request_head_rejected"]
    assert line["status"] == status
    assert total(gw, "gateway_errors_total", category="api_error", code=code) == 1
    assert upstream.requests == []


async def test_head_just_under_the_limits_is_served(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        upstream, models=(MODEL,), limits={"max_header_line_bytes": 1024, "max_headers": 20}
    )
    fields = {"X-Long": "a" * 900, **{f"X-H{i}": "v" for i in range(17)}}  # + Host: 19 fields

    raw = await exchange(port_of(gw), head("GET", "/healthz", {**fields, "Connection": "close"}))

    [answer] = parse_responses(raw)
    assert answer.status == 200
