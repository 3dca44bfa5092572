"""A client that goes away, in every phase: the upstream connection is closed at once (in the
loop turn the gateway reads the client's close, for streams and whole answers alike), the
outcome is recorded once as `client_disconnected` with its phase, nothing follows it (no retry,
no other target, no verdict on the target's circuit), and nothing is logged as an error (no
traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from tests.conftest import StartGateway
from tests.observability.scrape import total, value
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import chain, route, target
from tests.support.fake_upstream import Behaviour, FakeUpstream, UpstreamCall
from tests.support.openai_wire import completion

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


def stall_mid_body(sent: asyncio.Event) -> Behaviour:
    """A 200 JSON answer whose head promises a whole completion, half of it, then nothing
    (`sent` is set once that half was handed to the connection)."""
    answer = completion("Hello!", "fake-model")

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(answer)
        await response.prepare(request)
        await response.write(answer[: len(answer) // 2])
        sent.set()
        await asyncio.get_running_loop().create_future()  # never resolved
        raise AssertionError("a never-resolved future resolved")

    return behave


@pytest.mark.parametrize(
    ("mid_body", "phase", "attempt"),
    [(False, "waiting_first_byte", "client_disconnected"), (True, "reading_body", "ok")],
    ids=["before-head", "mid-body"],
)
async def test_a_client_leaving_a_whole_answer_is_its_outcome_and_nothing_follows_it(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    logs: list[dict[str, Any]],
    mid_body: bool,
    phase: str,
    attempt: str,
) -> None:
    """A `stream: false` call left before its head or while its body is read, on a route of
    two targets with retries and a circuit that opens on the first failure: recorded once as
    the client's leaving (in its phase); the primary is not asked again, the backup not at
    all, and the primary's circuit stays closed (its call was abandoned, not failed)."""
    sent = asyncio.Event()
    upstream.script("primary", stall_mid_body(sent) if mid_body else fake.stall_before_headers())
    upstream.script("backup", fake.json_completion(model="backup"))
    gw = await start_gateway(
        None,
        heartbeat=None,
        circuit={"failures": 1, "cooldown": 60},
        **chain(upstream, route("m", target("primary"), target("backup"))),
    )
    url = f"{gw.url}/v1/chat/completions"
    request = asyncio.ensure_future(client.post(url, json={**BODY, "stream": False}))
    call = await upstream.next_call()
    async with asyncio.timeout(10):
        await (sent.wait() if mid_body else call.started.wait())
    await asyncio.sleep(0.1)  # the gateway reads the upstream's head and half, if any
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await call.wait_closed_by_peer()
    await assert_recorded_once(logs, phase)
    await asyncio.sleep(0.1)  # time for a retry or a failover, were there one
    assert len(upstream.calls_for("primary")) == 1
    assert upstream.calls_for("backup") == []
    assert value(gw, "gateway_client_disconnects_total", phase=phase) == 1
    assert total(gw, "gateway_upstream_attempts_total") == 1
    assert value(gw, "gateway_upstream_attempts_total", upstream="fake", result=attempt) == 1
    assert total(gw, "gateway_upstream_retries_total") == 0
    assert total(gw, "gateway_upstream_failovers_total") == 0
    assert value(gw, "gateway_circuit_state", target="fake/primary") == 0


#: What `_Upstream` answers a stream with: an SSE head and two chunks (then silence).
_TWO_EVENTS = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n' * 2
_STREAM_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(_TWO_EVENTS) + _TWO_EVENTS + b"\r\n"
)
_ANSWER = b'{"id":"x","object":"chat.completion","choices":[]}'
#: A whole answer's head that promises `_ANSWER`, and half of it (then silence).
_HALF_AN_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_ANSWER) + _ANSWER[: len(_ANSWER) // 2]
)


class _Upstream(asyncio.Protocol):
    """An upstream that answers any request with `reply` (b"": nothing at all), then stays
    silent; it notes the loop turn (`turns[0]`) at which it reads the gateway's close."""

    def __init__(self, turns: list[int], closed: asyncio.Future[int], reply: bytes) -> None:
        self._turns = turns
        self._closed = closed
        self._reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if b"\r\n\r\n" in data and self._reply:
            self._transport.write(self._reply)

    def eof_received(self) -> None:
        if not self._closed.done():
            self._closed.set_result(self._turns[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof_received()


async def turns_to_the_upstreams_close(
    start_gateway: StartGateway,
    reply: bytes,
    stream: bool,
    relaying: Callable[[asyncio.StreamReader], Awaitable[object]],
) -> int:
    """How many loop turns after its client's close an upstream answering `reply` reads the
    gateway's close, the client leaving once `relaying` returned (the relay waits on the
    silent upstream then)."""
    loop = asyncio.get_running_loop()
    turns = [0]

    def tick() -> None:
        turns[0] += 1
        ticking[0] = loop.call_soon(tick)

    ticking = [loop.call_soon(tick)]
    closed: asyncio.Future[int] = loop.create_future()
    server = await loop.create_server(lambda: _Upstream(turns, closed, reply), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await start_gateway(
            None,
            upstreams={"silent": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1"}},
            routes=[{"model": "m", "targets": [{"upstream": "silent"}]}],
            heartbeat=None,
        )
        host, gw_port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(gw_port))
        body = json.dumps({**BODY, "stream": stream}).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        await relaying(reader)
        left_at = turns[0]
        writer.transport.abort()  # the client's socket is closed at once, in this turn
        return await asyncio.wait_for(closed, 10) - left_at
    finally:
        ticking[0].cancel()
        server.close()
        await server.wait_closed()


async def test_the_upstream_is_closed_in_the_loop_turn_the_client_left(
    start_gateway: StartGateway,
) -> None:
    """The gateway closes the upstream when it reads the client's FIN, not a turn or two
    later when aiohttp has cancelled the handler and it has unwound (on a busy loop each turn
    takes milliseconds). Counted in loop turns, not in time: the client's close at turn t,
    the gateway reads it at t + 1 and shuts the upstream's socket down there, and the
    upstream reads that FIN at the next turn. Through the handler's cancellation it would be
    six turns on (connection lost, the handler's step, its unwinding, the transport's close, the
    upstream's read).
    """

    async def two_events_read(reader: asyncio.StreamReader) -> None:
        received = b""
        while received.count(b"data: {") < 2:
            received += await reader.read(65536)
        await asyncio.sleep(0.05)  # the relay waits on the silent upstream now

    turns = await turns_to_the_upstreams_close(start_gateway, _STREAM_REPLY, True, two_events_read)
    assert turns <= 3, f"the upstream saw the close {turns} turns on"


@pytest.mark.parametrize(
    ("reply", "stream"),
    [(b"", False), (_HALF_AN_ANSWER, False), (b"", True)],
    ids=["json-before-head", "json-mid-body", "stream-before-head"],
)
async def test_a_call_with_nothing_relayed_yet_is_closed_in_the_loop_turn_the_client_left(
    start_gateway: StartGateway, reply: bytes, stream: bool
) -> None:
    """As above, for a whole answer (`stream: false`: its client is sent nothing until all of
    it came), waiting for its head or reading its body, and for a stream still waiting for its
    head: the same bound. An answer being read is aborted in the turn the gateway reads the
    client's close; a call still waiting for its head has its request's context ended there,
    and the transport closes its connection at once. Through aiohttp's cancellation of the
    handler it is two turns more (measured: 5).
    """
    turns = await turns_to_the_upstreams_close(
        start_gateway, reply, stream, lambda _: asyncio.sleep(0.1)
    )
    assert turns <= 3, f"the upstream saw the close {turns} turns on"
