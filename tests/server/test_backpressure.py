"""Backpressure and slow clients: a client that reads slowly or not at all makes the gateway stop
reading its upstream, and one that takes no bytes for `limits.write_stall` seconds has both
sides closed and the stream recorded as `write_stall`.

The upstream `flood`s: it writes events as fast as its connection takes them and counts what it
handed over (`call.bytes_sent`). A stalled client is a raw socket with a small receive buffer
that sends its request and then never reads, so nothing in the test process buffers for it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import pytest

from gateway.server.app_state import ROUTER
from tests.conftest import RunningGateway, StartGateway
from tests.observability.scrape import total, value
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream, UpstreamCall
from tests.support.openai_wire import openai_chunks
from tests.support.raw_http import head

MODEL = "m"
RCVBUF = 4096
STALLED_READERS = 1000
MiB = 1024 * 1024


def port_of(gw: RunningGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def stream_request(model: str = MODEL) -> bytes:
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    return head("POST", "/v1/chat/completions", fields) + body


async def stalled_client(port: int, request: bytes) -> socket.socket:
    """A connection that sends `request`, reads the first bytes of the answer, then never
    reads again (its receive buffer is small, so the window closes soon)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, request)
    first = await loop.sock_recv(sock, 64)
    assert first.startswith(b"HTTP/1.1 200"), first
    return sock


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:  # noqa: ASYNC109
    """Wait for `condition` (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling counters, nothing to await
            await asyncio.sleep(0.02)


async def plateau(read: Callable[[], int], *, still: float = 0.5, timeout: float = 30) -> int:  # noqa: ASYNC109
    """Wait until `read()` stops changing for `still` seconds and return it. A count that keeps
    growing never settles, and the timeout fails the test."""
    async with asyncio.timeout(timeout):
        last = read()
        while True:
            await asyncio.sleep(still)
            now = read()
            if now == last:
                return now
            last = now


async def read_to_end(sock: socket.socket) -> int:
    """Read until EOF (or an error) and return the byte count; a hang guard of 10 s."""
    loop = asyncio.get_running_loop()
    received = 0
    async with asyncio.timeout(10):
        while data := await loop.sock_recv(sock, 1 << 20):
            received += len(data)
    return received


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def flooding(upstream: FakeUpstream) -> FakeUpstream:
    upstream.script(MODEL, fake.flood())
    return upstream


async def test_a_client_that_stops_reading_stops_the_upstream_reads(
    flooding: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(flooding, (MODEL,), limits={"write_stall": 60})
    sock = await stalled_client(port_of(gw), stream_request())
    try:
        call = flooding.requests[0]
        # Bounded by the buffers between the two (sockets, transports, one read), not by
        # what the upstream would send: the flood would go on at gigabytes per second.
        sent = await plateau(lambda: call.bytes_sent)
        assert 0 < sent < 32 * MiB
        assert not call.closed_by_peer.is_set()
        assert value(gw, "gateway_active_streams", route=MODEL) == 1
    finally:
        sock.close()
    await call.wait_closed_by_peer()


async def test_a_client_stalled_past_write_stall_has_both_sides_closed_and_recorded(
    flooding: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(flooding, (MODEL,), limits={"write_stall": 0.5})
    sock = await stalled_client(port_of(gw), stream_request())
    try:
        call = flooding.requests[0]
        await call.wait_closed_by_peer()
        await until(lambda: total(gw, "gateway_requests_total") == 1)
        outcome = {"endpoint": "chat_completions", "route": MODEL, "outcome": "timeout"}
        assert value(gw, "gateway_requests_total", **outcome) == 1
        assert value(gw, "gateway_errors_total", category="timeout", code="write_stall") == 1
        assert value(gw, "gateway_active_streams", route=MODEL) == 0
        # The client's connection was reset: it finds no more bytes, only the reset.
        with pytest.raises(ConnectionResetError):
            await read_to_end(sock)
    finally:
        sock.close()


async def test_a_slow_reader_that_keeps_reading_gets_every_byte(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    chunks = openai_chunks(["x" * 2000] * 1000)  # about 2.3 MB: well over every buffer
    upstream.script(MODEL, fake.sse_stream(chunks))
    gw = await start_gateway(upstream, (MODEL,), limits={"write_stall": 0.5})
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    received = bytearray()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port_of(gw)))
        await loop.sock_sendall(sock, stream_request())
        async with asyncio.timeout(60):
            while data := await loop.sock_recv(sock, 16384):
                received += data
                await asyncio.sleep(0.002)  # slower than the upstream, never stopped
                if received.endswith(b"0\r\n\r\n"):
                    break
    finally:
        sock.close()
    body = dechunk(bytes(received).split(b"\r\n\r\n", 1)[1])
    assert body == b"".join(chunks) + fake.DONE
    assert value(gw, "gateway_errors_total", category="timeout", code="write_stall") == 0


def dechunk(raw: bytes) -> bytes:
    out, rest = bytearray(), raw
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        rest = rest[size + 2 :]


async def test_a_non_streaming_answer_to_a_client_that_never_reads_is_dropped(
    upstream: FakeUpstream, start_gateway: StartGateway
) -> None:
    upstream.script(MODEL, fake.json_completion("x" * (8 * MiB)))
    gw = await start_gateway(upstream, (MODEL,), limits={"write_stall": 0.5})
    body = json.dumps(
        {"model": MODEL, "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    sock = await stalled_client(port_of(gw), head("POST", "/v1/chat/completions", fields) + body)
    try:
        await asyncio.sleep(1.5)  # well past write_stall, reading nothing
        with pytest.raises(ConnectionResetError):
            await read_to_end(sock)
    finally:
        sock.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_memory_stays_flat_with_a_thousand_stalled_readers(
    flooding: FakeUpstream, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        flooding, (MODEL,), limits={"write_stall": 120, "max_streams": 2 * STALLED_READERS}
    )
    assert MODEL in gw.app[ROUTER].models()
    port = port_of(gw)
    baseline = rss_bytes()
    sockets: list[socket.socket] = []
    try:
        for _ in range(STALLED_READERS // 100):
            batch = [stalled_client(port, stream_request()) for _ in range(100)]
            sockets += await asyncio.gather(*batch)
        calls: list[UpstreamCall] = flooding.requests
        assert len(calls) == STALLED_READERS

        def sent() -> int:
            return sum(call.bytes_sent for call in calls)

        filled = await plateau(sent, still=1.0, timeout=120)
        full = rss_bytes()
        await asyncio.sleep(3)  # the upstreams still have everything to send
        later = rss_bytes()
        assert sent() == filled, "the gateway kept reading upstreams nobody reads"
        assert later - full < 8 * MiB, (full, later)
        per_stream = (full - baseline) / STALLED_READERS
        print(
            f"{STALLED_READERS} stalled readers: RSS +{(full - baseline) / MiB:.1f} MiB, "
            f"{per_stream / 1024:.0f} KiB per stream, +{(later - full) / MiB:.2f} MiB in 3 s"
        )
        # Gateway and fake upstream both live in this process: the buffers of both ends of
        # the upstream connection and the client transport count here, nothing unbounded.
        assert per_stream < 1 * MiB, per_stream
        assert value(gw, "gateway_active_streams", route=MODEL) == STALLED_READERS
    finally:
        for sock in sockets:
            sock.close()
    await until(lambda: value(gw, "gateway_active_streams", route=MODEL) == 0, timeout=60)
    await until(lambda: all(call.closed_by_peer.is_set() for call in flooding.requests), 60)
