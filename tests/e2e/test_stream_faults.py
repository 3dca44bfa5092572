"""The foundation's fault list, end to end: fake upstream -> gateway -> raw HTTP client.

For each way an upstream can behave, what the client receives, byte for byte, and - where the
gateway had to give up on the upstream - that the upstream saw its connection closed.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from gateway.errors import ErrorCategory, ServerShutdown
from gateway.server.app_state import SERVER_CONTEXT
from tests.conftest import StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import DONE, FakeUpstream

CHUNKS = fake.openai_chunks(["Hel", "lo", "!"], finish_reason="stop")
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def post(
    client: aiohttp.ClientSession,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    stream: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    async with client.post(
        f"{url}/v1/chat/completions", json={**BODY, "stream": stream}, headers=headers or {}
    ) as response:
        return response.status, dict(response.headers), await response.read()


def split_error_event(body: bytes) -> tuple[bytes, dict[str, Any]]:
    """(everything before the one error event, the event's JSON); fails unless exactly one
    error event ends the body."""
    assert body.count(b"event: error\n") == 1, body
    before, _, frame = body.partition(b"event: error\n")
    assert frame.startswith(b"data: "), frame
    assert frame.endswith(b"\n\n"), frame
    line = frame[len(b"data: ") : -2]
    assert b"\n" not in line
    assert b"\r" not in line
    payload = json.loads(line)
    assert payload["type"] == payload["error"]["type"]
    assert payload["message"] == payload["error"]["message"]
    assert payload["type"] in {c.value for c in ErrorCategory}
    return before, payload


async def test_complete_stream_is_relayed_byte_exact(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    crlf = b'data: {"a":1}\r\n\r\n'
    upstream.script("m", fake.sse_stream([CHUNKS[0], crlf, *CHUNKS[1:]]))
    gw = await start_gateway(upstream, ("m",))
    status, headers, body = await post(client, gw.url)
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert body == CHUNKS[0] + crlf + b"".join(CHUNKS[1:]) + DONE


async def test_stream_ending_with_finish_reason_but_no_done_is_completed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.end_clean_without_done(finish=True))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url)
    assert (status, body) == (200, b"".join(CHUNKS) + DONE)


async def test_stream_ending_without_finish_or_done_is_truncated(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.end_clean_without_done(finish=False))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url)
    before, error = split_error_event(body)
    assert status == 200
    assert before == b"".join(fake.openai_chunks(["Hel", "lo", "!"], finish_reason=None))
    assert (error["type"], error["error"]["code"]) == ("stream_interrupted", "upstream_truncated")


async def test_nothing_after_done_is_relayed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.sse_stream([*CHUNKS, DONE, b'data: {"late":true}\n\n'], done=False))
    gw = await start_gateway(upstream, ("m",))
    _, _, body = await post(client, gw.url)
    assert body == b"".join(CHUNKS) + DONE


async def test_invalid_json_event_is_skipped_and_the_rest_relayed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.invalid_json_event())
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url)
    assert (status, body) == (200, b"".join(CHUNKS) + DONE)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
@pytest.mark.parametrize("cut", [fake.cut_fin, fake.cut_rst], ids=["fin", "rst"])
async def test_cut_stream_ends_with_one_error_and_never_forwards_half_an_event(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    cut: Any,
    chunked: bool,
) -> None:
    upstream.script("m", cut(2, chunked=chunked, half=b'data: {"choices":[{"delta":'))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url)
    before, error = split_error_event(body)
    assert status == 200
    assert before == b"".join(CHUNKS[:2])
    assert error["type"] in ("stream_interrupted", "network")
    assert error["error"]["code"] in ("upstream_truncated", "connection_reset")


async def test_stall_before_headers_ends_with_first_byte_timeout_status(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.stall_before_headers())
    gw = await start_gateway(upstream, ("m",), heartbeat=None)
    status, _, body = await post(client, gw.url, headers={"x-gateway-first-byte-timeout": "0.2"})
    assert status == 504
    error = json.loads(body)["error"]
    assert (error["category"], error["code"]) == ("timeout", "first_byte_timeout")
    assert "first_byte" in error["message"]
    assert "0.2s" in error["message"]
    await upstream.requests[0].wait_closed_by_peer()


async def test_stall_before_first_event_ends_with_first_byte_timeout_status(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.stall_before_first_event())
    gw = await start_gateway(upstream, ("m",), heartbeat=None)
    status, _, body = await post(client, gw.url, headers={"x-gateway-first-byte-timeout": "0.2"})
    assert (status, json.loads(body)["error"]["code"]) == (504, "first_byte_timeout")
    await upstream.requests[0].wait_closed_by_peer()


async def test_stall_mid_stream_ends_with_idle_timeout_event(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.stall_after(2))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url, headers={"x-gateway-idle-timeout": "0.2"})
    before, error = split_error_event(body)
    assert status == 200
    assert before == b"".join(CHUNKS[:2])
    assert (error["type"], error["error"]["code"]) == ("timeout", "idle_timeout")
    await upstream.requests[0].wait_closed_by_peer()


async def test_total_deadline_ends_a_slow_stream_with_deadline_exceeded(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    chunks = fake.openai_chunks(["x"] * 200, finish_reason="stop")
    upstream.script("m", fake.sse_stream(chunks, delay=0.01))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url, headers={"x-gateway-total-timeout": "0.3"})
    before, error = split_error_event(body)
    assert status == 200
    assert before
    assert b"".join(chunks).startswith(before)
    assert (error["type"], error["error"]["code"]) == ("timeout", "deadline_exceeded")
    assert "total deadline (0.3s)" in error["message"]
    await upstream.requests[0].wait_closed_by_peer()


async def test_event_over_the_size_cap_ends_with_event_too_large(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.huge_event(200_000))
    gw = await start_gateway(upstream, ("m",), limits={"max_event_bytes": 65_536})
    status, _, body = await post(client, gw.url)
    before, error = split_error_event(body)
    assert status == 200
    assert before == fake.openai_chunks(["Hel"], finish_reason=None)[0]
    assert (error["type"], error["error"]["code"]) == ("stream_interrupted", "event_too_large")
    assert len(body) < 65_536


async def test_upstream_429_keeps_status_and_retry_after(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.status(429, headers={"Retry-After": "7"}))
    gw = await start_gateway(upstream, ("m",))
    status, headers, body = await post(client, gw.url)
    assert (status, headers["Retry-After"]) == (429, "7")
    error = json.loads(body)["error"]
    assert (error["category"], error["code"], error["param"]) == (
        "rate_limit",
        "upstream_rate_limited",
        None,
    )


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        (fake.status(500), 502, "upstream_status_5xx"),
        (fake.status(503), 502, "upstream_status_5xx"),
        (fake.status(401), 502, "upstream_auth_failed"),
        (fake.status(403), 502, "upstream_auth_failed"),
        (fake.html(502), 502, "upstream_status_5xx"),
        (fake.status(404), 502, "upstream_status_4xx"),
    ],
    ids=["500", "503", "401", "403", "html-502", "404"],
)
async def test_upstream_error_status_becomes_gateway_status_without_upstream_text(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    behaviour: Any,
    status: int,
    code: str,
) -> None:
    upstream.script("m", behaviour)
    gw = await start_gateway(upstream, ("m",))
    for stream in (True, False):
        got_status, headers, body = await post(client, gw.url, stream=stream)
        assert got_status == status
        assert headers["Content-Type"].startswith("application/json")
        error = json.loads(body)["error"]
        assert error["code"] == code
        assert b"fake upstream error" not in body
        assert b"<html" not in body.lower()


async def test_upstream_400_passes_its_sanitised_message_and_code(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    message = "too long; see https://internal.example/x?key=sk-abcdefghijklmnop\nthanks"
    upstream.script(
        "m",
        fake.status(
            400,
            body=fake.openai_error(
                message,
                type="invalid_request_error",
                param="messages",
                code="context_length_exceeded",
            ),
        ),
    )
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url)
    error = json.loads(body)["error"]
    assert status == 400
    assert (error["code"], error["param"], error["category"]) == (
        "context_length_exceeded",
        "messages",
        "api_error",
    )
    assert error["message"].startswith("too long; see [url]")
    assert "sk-abcdefghijklmnop" not in error["message"]
    assert "\n" not in error["message"]


async def test_unreachable_upstream_is_502_connect_failed(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        gw = await start_gateway(
            None,
            upstreams={"dead": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}},
            routes=[{"model": "m", "targets": [{"upstream": "dead"}]}],
        )
        status, _, body = await post(client, gw.url)
    error = json.loads(body)["error"]
    assert (status, error["category"], error["code"]) == (502, "network", "connect_failed")


async def test_non_streaming_completion_is_relayed_byte_exact(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.json_completion("Hello there"))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url, stream=False)
    call = upstream.requests[0]
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "Hello there"
    assert call.body["stream"] is False


async def test_non_streaming_cut_body_is_502_truncated(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.json_cut(20))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url, stream=False)
    error = json.loads(body)["error"]
    assert (status, error["category"], error["code"]) == (
        502,
        "stream_interrupted",
        "upstream_truncated",
    )


async def test_non_streaming_stall_is_504_and_upstream_closed(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.stall_before_headers())
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(
        client, gw.url, stream=False, headers={"x-gateway-first-byte-timeout": "0.2"}
    )
    assert (status, json.loads(body)["error"]["code"]) == (504, "first_byte_timeout")
    await upstream.requests[0].wait_closed_by_peer()


async def test_upstream_gets_mapped_model_and_its_own_key_not_the_clients(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(
        upstream,
        routes=[{"model": "m", "targets": [{"upstream": "fake", "model": "real-model"}]}],
    )
    status, _, _ = await post(client, gw.url, headers={"Authorization": "Bearer client-secret"})
    call = upstream.requests[0]
    assert status == 200
    assert call.body["model"] == "real-model"
    assert call.headers["Authorization"] == "Bearer sk-upstream-canary-7f3a9c1e"
    assert b"client-secret" not in call.raw_body


async def test_upstream_that_never_accepts_the_connection_is_504_connect_timeout(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once the backlog is full, SYNs go unanswered
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            gw = await start_gateway(
                None,
                upstreams={"full": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}},
                routes=[{"model": "m", "targets": [{"upstream": "full"}]}],
            )
            status, _, body = await post(
                client, gw.url, headers={"x-gateway-connect-timeout": "0.3"}
            )
        finally:
            for filler in fillers:
                filler.close()
    error = json.loads(body)["error"]
    assert (status, error["category"], error["code"]) == (504, "timeout", "connect_timeout")
    assert "connect deadline (0.3s)" in error["message"]


@pytest.mark.parametrize(
    ("settings", "headers"),
    [
        ({"timeouts": {"idle": 0.2}}, {}),
        ({"route_timeouts": {"idle": 0.2}}, {}),
        ({"route_max_timeouts": {"idle": 0.2}}, {"x-gateway-idle-timeout": "60"}),
        ({"timeouts": {"idle": 60}}, {"x-gateway-idle-timeout": "0.2"}),
    ],
    ids=["global", "route", "route-ceiling-clamps-header", "header-lowers-global"],
)
async def test_idle_limit_comes_from_settings_route_or_request(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    settings: dict[str, Any],
    headers: dict[str, str],
) -> None:
    upstream.script("m", fake.stall_after(2))
    settings = dict(settings)
    route: dict[str, Any] = {"model": "m", "targets": [{"upstream": "fake"}]}
    if "route_timeouts" in settings:
        route["timeouts"] = settings.pop("route_timeouts")
    if "route_max_timeouts" in settings:
        route["max_timeouts"] = settings.pop("route_max_timeouts")
    gw = await start_gateway(upstream, routes=[route], **settings)
    status, _, body = await post(client, gw.url, headers=headers)
    _, error = split_error_event(body)
    assert status == 200
    assert error["error"]["code"] == "idle_timeout"
    assert "(0.2s)" in error["message"]


async def test_json_answer_to_a_streaming_request_is_502_protocol_error(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script("m", fake.json_completion("not a stream"))
    gw = await start_gateway(upstream, ("m",))
    status, _, body = await post(client, gw.url)
    error = json.loads(body)["error"]
    assert (status, error["category"], error["code"]) == (
        502,
        "stream_interrupted",
        "upstream_protocol_error",
    )
    assert "application/json" in error["message"]
    assert b"not a stream" not in body


async def test_ending_the_server_context_ends_streams_with_server_shutdown(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    """The hook graceful drain builds on: every request's context is a child of the app's."""
    upstream.script("m", fake.stall_after(2))
    upstream.script("silent", fake.stall_before_first_event())
    gw = await start_gateway(upstream, ("m", "silent"), heartbeat=None)
    url = f"{gw.url}/v1/chat/completions"
    async with client.post(url, json=BODY) as streaming:
        for _ in range(2):
            await streaming.content.readuntil(b"\n\n")
        waiting = asyncio.ensure_future(client.post(url, json={**BODY, "model": "silent"}))
        await (await upstream.next_call()).started.wait()  # "m"
        silent = await upstream.next_call()
        await silent.started.wait()
        gw.app[SERVER_CONTEXT].cancel(ServerShutdown())
        body = await streaming.read()
    _, error = split_error_event(body)
    assert (error["type"], error["error"]["code"]) == ("stream_interrupted", "server_shutdown")
    async with await waiting as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "server_shutdown"
    await upstream.requests[0].wait_closed_by_peer()
    await silent.wait_closed_by_peer()
