"""A request presents one gateway key or none: two `Authorization` fields, two `x-api-key`
fields, or both headers with different keys are 400 in the path's dialect, from the head
alone (the body is never read: `Expect: 100-continue` is not granted), with no upstream call.

Raw sockets: HTTP client libraries merge repeated fields before they are sent.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import exchange, parse_responses

MODEL = "m"
KEY = "gw-key-1"
OTHER = "gw-key-2"
BODY = json.dumps(
    {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def post(path: str, credentials: list[tuple[str, str]], *, expect: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway.test", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(BODY)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in credentials]
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


AMBIGUOUS = {
    "two-authorization-fields-same-key": [("Authorization", f"Bearer {KEY}")] * 2,
    "two-authorization-fields": [
        ("Authorization", f"Bearer {KEY}"),
        ("Authorization", f"Bearer {OTHER}"),
    ],
    "two-x-api-key-fields-same-key": [("x-api-key", KEY)] * 2,
    "two-x-api-key-fields": [("x-api-key", KEY), ("X-Api-Key", OTHER)],
    "both-headers-different-keys": [("Authorization", f"Bearer {KEY}"), ("x-api-key", OTHER)],
    "basic-authorization-and-x-api-key": [
        ("Authorization", "Basic Zm9vOmJhcg=="),
        ("x-api-key", KEY),
    ],
}


@pytest.fixture
async def gw(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    upstream.script(MODEL, fake.json_completion())
    return await start_gateway(upstream, models=(MODEL,), auth={"keys": [KEY, OTHER]})


@pytest.mark.parametrize("credentials", [pytest.param(v, id=k) for k, v in AMBIGUOUS.items()])
async def test_ambiguous_credentials_are_400_before_the_body_is_read(
    gw: RunningGateway, upstream: FakeUpstream, credentials: list[tuple[str, str]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(gw))
    try:
        writer.write(post("/v1/chat/completions", credentials, expect=True))
        async with asyncio.timeout(10):  # the body is never sent
            answer_head = await reader.readuntil(b"\r\n\r\n")
            [partial] = parse_responses(answer_head)
            body = await reader.readexactly(int(partial.headers["content-length"]))
    finally:
        writer.close()

    assert not answer_head.startswith(b"HTTP/1.1 100")  # no 100 Continue first
    [answer] = parse_responses(answer_head + body)
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert KEY not in answer.body.decode()
    assert OTHER not in answer.body.decode()
    assert upstream.requests == []


async def test_ambiguous_credentials_on_messages_are_answered_in_anthropic_shape(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    credentials = AMBIGUOUS["two-x-api-key-fields"]

    raw = await exchange(port_of(gw), post("/v1/messages", credentials) + BODY)

    [answer] = parse_responses(raw)
    assert answer.status == 400
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


async def test_the_same_key_in_both_headers_is_one_key(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    credentials = [("Authorization", f"Bearer {KEY}"), ("x-api-key", KEY)]

    raw = await exchange(port_of(gw), post("/v1/chat/completions", credentials) + BODY)

    [answer] = parse_responses(raw)
    assert answer.status == 200
    assert len(upstream.requests) == 1


async def test_ambiguous_credentials_on_metrics_are_400(gw: RunningGateway) -> None:
    request = (
        b"GET /metrics HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n"
        + f"x-api-key: {KEY}\r\nx-api-key: {KEY}\r\n\r\n".encode()
    )

    [answer] = parse_responses(await exchange(port_of(gw), request))

    assert answer.status == 400
