"""A client that goes away, in every phase: the upstream connection is closed at once, the
outcome is recorded once as `client_disconnected` with its phase, and nothing is logged as an
error (no traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
import structlog

from tests.conftest import StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` (a hang guard, not a timing assertion).

    The gateway's log line is written by its handler task after the upstream was closed; no
    event marks that moment from outside, so this polls, bounded.
    """
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the log list
            await asyncio.sleep(0.005)
    assert condition(), what


def finished_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] in ("request_finished", "stream_finished")]


async def assert_recorded_once(logs: list[dict[str, Any]], phase: str) -> None:
    await eventually(lambda: bool(finished_lines(logs)), "a finished line")
    [line] = finished_lines(logs)
    assert (line["outcome"], line["code"], line["phase"]) == (
        "client_disconnected",
        "client_disconnected",
        phase,
    )
    assert not [line for line in logs if line["log_level"] in ("error", "critical")]
    assert not [line for line in logs if "exc_info" in line or "exception" in line]


@pytest.mark.parametrize(
    ("behaviour", "stream"),
    [
        (fake.stall_before_headers(), True),
        (fake.stall_before_headers(), False),
        (fake.stall_before_first_event(), True),
    ],
    ids=["before-headers-stream", "before-headers-json", "before-first-event"],
)
async def test_disconnect_before_the_first_upstream_event_closes_upstream(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    behaviour: Any,
    stream: bool,
) -> None:
    upstream.script("m", behaviour)
    gw = await start_gateway(upstream, ("m",), heartbeat=None)
    request = asyncio.ensure_future(
        client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": stream})
    )
    call = await upstream.next_call()
    await call.started.wait()
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, "waiting_first_byte")


async def test_disconnect_after_heartbeat_committed_headers_closes_upstream(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
) -> None:
    upstream.script("m", fake.stall_before_first_event())
    gw = await start_gateway(upstream, ("m",), heartbeat=0.02)
    async with client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": True}) as r:
        assert r.status == 200
        assert await r.content.readuntil(b"\n\n") == b": ping\n\n"
        call = upstream.requests[0]
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, "waiting_first_byte")


@pytest.mark.parametrize(
    "behaviour",
    [
        fake.stall_after(2),
        fake.sse_stream(fake.openai_chunks(["x"] * 500), delay=0.005),
    ],
    ids=["stalled", "flowing"],
)
async def test_disconnect_mid_stream_closes_upstream(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    behaviour: Any,
) -> None:
    upstream.script("m", behaviour)
    gw = await start_gateway(upstream, ("m",))
    async with client.post(f"{gw.url}/v1/chat/completions", json={**BODY, "stream": True}) as r:
        assert r.status == 200
        for _ in range(2):
            assert (await r.content.readuntil(b"\n\n")).startswith(b"data: {")
        call = upstream.requests[0]
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, "streaming")


async def test_disconnect_mid_stream_from_the_mock_provider_is_recorded(
    start_gateway: StartGateway, client: aiohttp.ClientSession, logs: list[dict[str, Any]]
) -> None:
    gw = await start_gateway(None, upstreams={"mock": {"kind": "mock"}})
    body = {**BODY, "model": "mock-slow", "stream": True}
    async with client.post(f"{gw.url}/v1/chat/completions", json=body) as r:
        assert (await r.content.readuntil(b"\n\n")).startswith(b"data: {")
    await assert_recorded_once(logs, "streaming")


async def test_disconnect_while_the_gateway_is_blocked_writing_closes_upstream(
    start_gateway: StartGateway, upstream: FakeUpstream, logs: list[dict[str, Any]]
) -> None:
    """A client that stops reading, then resets: the gateway is stuck in a write (its buffers
    and the client's are full), and the disconnect must still reach the upstream."""
    chunk = fake.openai_chunks(["y" * 4096], finish_reason=None)[0]
    upstream.script("m", fake.sse_stream([chunk] * 5000))  # ~21 MB: more than all buffers
    gw = await start_gateway(upstream, ("m",))
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port)))
    payload = json.dumps({**BODY, "stream": True}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    await loop.sock_sendall(sock, head + payload)
    assert (await loop.sock_recv(sock, 1024)).startswith(b"HTTP/1.1 200")
    call = upstream.requests[0]
    # Stop reading and let every buffer on the way fill up (not a timing assertion: the
    # outcome below must hold whenever the client goes away).
    await asyncio.sleep(0.3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, "streaming")
