"""Request framing: `Transfer-Encoding` is `chunked` alone, or the connection ends.

Raw sockets (`tests.support.raw_http`): each request is sent with a second, pipelined request
behind it, which must never be served - where a body of doubtful framing ends is in doubt, so
nothing after it is a request. Codings before `chunked` are 501, `chunked` not final, repeated
fields and `Content-Length` beside `Transfer-Encoding` are 400; each with `Connection: close`,
the connection closed, no upstream call.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import exchange, parse_responses

MODEL = "m"
BODY = json.dumps(
    {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
).encode()
CHUNKED_BODY = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def post(path: str, framing: bytes, body: bytes = CHUNKED_BODY) -> bytes:
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
        ).encode()
        + framing
        + b"\r\n"
        + body
    )


UNSUPPORTED = {
    "identity-then-chunked": b"Transfer-Encoding: identity, chunked\r\n",
    "gzip-then-chunked": b"Transfer-Encoding: gzip, chunked\r\n",
    "unknown-then-chunked": b"Transfer-Encoding: x-custom, chunked\r\n",
}
MALFORMED = {
    "chunked-then-identity": b"Transfer-Encoding: chunked, identity\r\n",
    "chunked-then-gzip": b"Transfer-Encoding: chunked, gzip\r\n",
    "gzip-alone": b"Transfer-Encoding: gzip\r\n",
    "unknown-alone": b"Transfer-Encoding: foo\r\n",
    "chunked-twice": b"Transfer-Encoding: chunked, chunked\r\n",
    "empty-element": b"Transfer-Encoding: , chunked\r\n",
    "two-fields": b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    "two-chunked-fields": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "length-then-chunked": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "chunked-then-length": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
}


@pytest.fixture
async def gw(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    upstream.script(MODEL, fake.json_completion())
    return await start_gateway(upstream, models=(MODEL,))


@pytest.mark.parametrize("framing", [pytest.param(v, id=k) for k, v in UNSUPPORTED.items()])
async def test_codings_before_chunked_are_501_and_close_the_connection(
    gw: RunningGateway, upstream: FakeUpstream, framing: bytes
) -> None:
    raw = await exchange(port_of(gw), post("/v1/chat/completions", framing) + PIPELINED)

    [answer] = parse_responses(raw)  # the pipelined request was never served
    assert answer.status == 501
    assert answer.headers["connection"] == "close"
    error = answer.json()["error"]
    assert error["code"] == "unsupported_transfer_encoding"
    assert "x-request-id" in answer.headers
    assert upstream.requests == []


@pytest.mark.parametrize("framing", [pytest.param(v, id=k) for k, v in MALFORMED.items()])
async def test_ambiguous_framing_is_400_and_closes_the_connection(
    gw: RunningGateway, upstream: FakeUpstream, framing: bytes
) -> None:
    raw = await exchange(port_of(gw), post("/v1/chat/completions", framing) + PIPELINED)

    [answer] = parse_responses(raw)
    assert answer.status == 400
    assert answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "invalid_request"
    assert upstream.requests == []


async def test_unsupported_coding_on_messages_is_answered_in_anthropic_shape(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    framing = UNSUPPORTED["gzip-then-chunked"]

    raw = await exchange(port_of(gw), post("/v1/messages", framing) + PIPELINED)

    [answer] = parse_responses(raw)
    assert answer.status == 501
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


async def test_unsupported_coding_on_a_get_is_refused_too(gw: RunningGateway) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: gateway.test\r\n"
    request += UNSUPPORTED["gzip-then-chunked"] + b"\r\n0\r\n\r\n"

    [answer] = parse_responses(await exchange(port_of(gw), request + PIPELINED))

    assert answer.status == 501


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Transfer-Encoding: chunked\r\n", id="chunked"),
        pytest.param(b"Transfer-Encoding: CHUNKED\r\n", id="case-insensitive"),
        pytest.param(b"Transfer-Encoding:   chunked  \r\n", id="surrounding-spaces"),
    ],
)
async def test_chunked_alone_is_served_and_the_connection_kept(
    gw: RunningGateway, upstream: FakeUpstream, framing: bytes
) -> None:
    closing = PIPELINED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")

    raw = await exchange(port_of(gw), post("/v1/chat/completions", framing) + closing)

    first, second = parse_responses(raw)
    assert first.status == 200
    assert second.status == 200  # the pipelined request, on the same connection
    assert len(upstream.requests) == 1
