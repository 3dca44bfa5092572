"""The `Server` header: `sse-gateway` by default (no versions), `server.header` when set,
absent when that is empty - on every kind of response the gateway writes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from gateway.settings import GatewaySettings
from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import exchange, head, parse_responses

MODEL = "m"


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def chat(stream: bool, model: str = MODEL) -> bytes:
    body = json.dumps(
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    return head("POST", "/v1/chat/completions", {**fields, "Connection": "close"}) + body


def get(path: str, method: str = "GET") -> bytes:
    return head(method, path, {"Connection": "close"})


def response_head(raw: bytes) -> list[str]:
    """The header lines of the first response in `raw` (whatever its framing)."""
    top = raw.partition(b"\r\n\r\n")[0].decode("latin-1")
    return top.split("\r\n")[1:]


REQUESTS = {
    "api-answer": chat(stream=False),
    "sse-stream": chat(stream=True),
    "gateway-error": chat(stream=False, model="unknown"),
    "aiohttp-404": get("/nowhere"),
    "aiohttp-405": get("/v1/chat/completions"),
    "unparsable-head": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "framing-501": get("/healthz").replace(
        b"\r\n\r\n", b"\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    ),
    "healthz": get("/healthz"),
    "metrics": get("/metrics"),
}

Start = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
def start(upstream: FakeUpstream, start_gateway: StartGateway) -> Start:
    async def started(**overrides: object) -> RunningGateway:
        upstream.script(MODEL, fake.json_completion())
        return await start_gateway(upstream, models=(MODEL,), heartbeat=None, **overrides)

    return started


@pytest.mark.parametrize("request_bytes", [pytest.param(v, id=k) for k, v in REQUESTS.items()])
async def test_every_response_says_sse_gateway_by_default_without_versions(
    start: Start, upstream: FakeUpstream, request_bytes: bytes
) -> None:
    if b'stream": true' in request_bytes:
        upstream.script(MODEL, fake.sse_stream())
    gw = await start()

    lines = response_head(await exchange(port_of(gw), request_bytes))

    assert [line for line in lines if line.lower().startswith("server:")] == ["Server: sse-gateway"]
    assert not any("aiohttp" in line or "Python" in line for line in lines)


@pytest.mark.parametrize("request_bytes", [pytest.param(v, id=k) for k, v in REQUESTS.items()])
async def test_an_empty_server_header_setting_sends_none(
    start: Start, upstream: FakeUpstream, request_bytes: bytes
) -> None:
    if b'stream": true' in request_bytes:
        upstream.script(MODEL, fake.sse_stream())
    gw = await start(server={"header": ""})

    lines = response_head(await exchange(port_of(gw), request_bytes))

    assert lines  # a response came
    assert not any(line.lower().startswith("server:") for line in lines)


async def test_a_configured_server_header_is_sent(start: Start) -> None:
    gw = await start(server={"header": "edge-proxy"})

    [answer] = parse_responses(await exchange(port_of(gw), get("/healthz")))

    assert answer.headers["server"] == "edge-proxy"


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "tab\there", " leading"])
def test_a_server_header_that_could_break_the_head_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"server\.header"):
        GatewaySettings(server={"header": value})
