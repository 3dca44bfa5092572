"""Too many header fields: 431 in the path's dialect up to the parser's own bound (twice
`limits.max_headers`), 400 past it (an unparsable head); either way closed, nothing upstream.

Raw sockets: the counts include `Host`, as `limits.max_headers` does.
"""

from __future__ import annotations

import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import exchange, head, parse_responses

MAX_HEADERS = 10


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def request(path: str, fields: int) -> bytes:
    """A POST head with `fields` header fields in all (Host and Content-Length included)."""
    extra = {f"X-H{i}": "v" for i in range(fields - 2)}
    return head("POST", path, {"Content-Length": "2", **extra}) + b"{}"


@pytest.fixture
async def gw(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(upstream, models=("m",), limits={"max_headers": MAX_HEADERS})


@pytest.mark.parametrize("fields", [MAX_HEADERS + 1, 2 * MAX_HEADERS])
async def test_more_fields_than_the_limit_is_431_in_openai_shape(
    gw: RunningGateway, upstream: FakeUpstream, fields: int
) -> None:
    [answer] = parse_responses(await exchange(port_of(gw), request("/v1/chat/completions", fields)))

    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    error = answer.json()["error"]
    assert error["code"] == "request_head_too_large"
    assert str(MAX_HEADERS) in error["message"]
    assert upstream.requests == []


async def test_more_fields_than_the_limit_on_messages_is_431_in_anthropic_shape(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    [answer] = parse_responses(await exchange(port_of(gw), request("/v1/messages", 15)))

    assert answer.status == 431
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


async def test_past_the_parsers_bound_the_head_is_400(
    gw: RunningGateway, upstream: FakeUpstream
) -> None:
    raw = await exchange(port_of(gw), request("/v1/chat/completions", 2 * MAX_HEADERS + 1))

    [answer] = parse_responses(raw)
    assert answer.status == 400
    assert answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "invalid_request"
    assert upstream.requests == []


async def test_exactly_the_limit_is_served(gw: RunningGateway) -> None:
    fields = {f"X-H{i}": "v" for i in range(MAX_HEADERS - 2)}
    raw = await exchange(port_of(gw), head("GET", "/healthz", {**fields, "Connection": "close"}))

    [answer] = parse_responses(raw)
    assert answer.status == 200
