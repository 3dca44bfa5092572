"""The bench's mock OpenAI- and Anthropic-compatible upstream: raw asyncio protocols, uvloop
when installed.

    python -m bench.upstream [--hosts 127.0.0.1,127.0.0.2] [--port 0] [--no-uvloop]

Listens on the same port on every host given (one loopback address per target spreads the
connections of a 10,000-stream run over several address pairs) and prints one JSON line,
`{"port": P, "uvloop": true}`, once it accepts. It stops on SIGTERM or SIGINT.

`POST .../chat/completions`, `POST .../responses` and `POST .../messages` stream what the
request's `bench n=.. d=.. rid=..` marker asks for, in that API's events (`bench.protocol`):
HTTP/1.1 chunked, keep-alive, every event stamped with its CLOCK_MONOTONIC send time. With
`d=0` the events go out as fast as the client takes them, 16 events a write, paused by the
transport's flow control. A client that
closes (FIN or RST) while its stream is still running is recorded as `rid -> close time (ns)`;
`GET /_bench/closes` returns those records as JSON, with the number of streams still running and
the connections and requests seen on each listen address (one per target: does a proxy reuse its
upstream connections?), and forgets the closes. `GET /_bench/finish` sends what is left of every
stream with a delay at once (the rest of its events, the last one ending it) and returns
`{"finished": N}`: a test holds many streams open, then ends them all cleanly when it wants
(`tests/load/`).

It is meant to cost far less per event than the proxies measured: no HTTP framework, one
`transport.write` per batch, nothing parsed but the request line, `Content-Length` and the marker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import cast

from bench.eventloop import run, uvloop_available
from bench.protocol import CLOSES_PATH, FINISH_PATH, WIRES, StreamShape, WireApi
from bench.system import raise_fd_limit

__all__ = ["UpstreamState", "main", "serve"]

_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"
_BURST = 16  # events per write when the stream has no delay
#: The streaming APIs by how their upstream path ends (`/chat/completions`, `/responses`,
#: `/messages`).
_BY_SUFFIX: dict[str, WireApi] = {api.upstream_suffix: api for api in WIRES.values()}


@dataclass(slots=True)
class UpstreamState:
    """What the runner can ask for: streams cut by their client, and streams running."""

    closes: dict[int, int] = field(default_factory=dict)
    active: int = 0
    served: int = 0
    connections: dict[str, int] = field(default_factory=dict)  # by listen address
    requests: dict[str, int] = field(default_factory=dict)
    paced: set[_UpstreamProtocol] = field(default_factory=set)  # streams with a delay


def _framed(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _plain_response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _UpstreamProtocol(asyncio.Protocol):
    """One client connection: parses requests one at a time and streams the answers."""

    def __init__(self, state: UpstreamState) -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._shape: StreamShape | None = None
        self._sent = 0
        self._start = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._host = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._host = str(transport.get_extra_info("sockname")[0])
        self._state.connections[self._host] = self._state.connections.get(self._host, 0) + 1

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._shape is None:
            self._next_request()

    def eof_received(self) -> bool:
        self._client_gone()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_gone()
        self._transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._shape is not None and self._shape.delay == 0:
            self._burst()

    def _client_gone(self) -> None:
        if self._shape is not None:
            self._state.closes[self._shape.rid] = time.monotonic_ns()
            self._end_stream()

    def _next_request(self) -> None:
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = bytes(self._buffer[:head_end]).decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        end = head_end + 4 + length
        if len(self._buffer) < end:
            return
        body = bytes(self._buffer[head_end + 4 : end])
        del self._buffer[:end]
        self._dispatch(method, path, body)

    def _dispatch(self, method: str, path: str, body: bytes) -> None:
        assert self._transport is not None
        api = next((a for end, a in _BY_SUFFIX.items() if path.endswith(end)), None)
        shape = StreamShape.parse(body, api) if method == "POST" and api is not None else None
        if shape is not None and shape.chunks >= 2:
            self._start_stream(shape)
        elif method == "GET" and path == CLOSES_PATH:
            closes = {str(rid): at for rid, at in self._state.closes.items()}
            self._state.closes.clear()
            answer = {
                "closes": closes,
                "active": self._state.active,
                "served": self._state.served,
                "connections": self._state.connections,
                "requests": self._state.requests,
            }
            self._transport.write(_plain_response("200 OK", json.dumps(answer).encode()))
        elif method == "GET" and path == FINISH_PATH:
            paced = list(self._state.paced)
            for protocol in paced:
                protocol.finish_now()
            body = json.dumps({"finished": len(paced)}).encode()
            self._transport.write(_plain_response("200 OK", body))
        elif method == "GET" and path == "/healthz":
            self._transport.write(_plain_response("200 OK", b'{"status":"ok"}'))
        else:
            self._transport.write(_plain_response("404 Not Found", b'{"error":"not found"}'))

    def _start_stream(self, shape: StreamShape) -> None:
        self._shape, self._sent = shape, 0
        self._state.active += 1
        self._state.served += 1
        self._state.requests[self._host] = self._state.requests.get(self._host, 0) + 1
        self._start = self._loop.time()
        if shape.delay == 0:
            self._burst(head=_STREAM_HEAD)
        else:
            self._state.paced.add(self)
            self._tick(head=_STREAM_HEAD)

    def _events(self, count: int) -> bytes:
        """The next `count` events (fewer at the end), all stamped now; the last ends the stream."""
        assert self._shape is not None
        stamp = time.monotonic_ns()
        total, event = self._shape.chunks, self._shape.api.event
        parts = [
            event(index, total, stamp)
            for index in range(self._sent, min(self._sent + count, total))
        ]
        self._sent = min(self._sent + count, total)
        payload = _framed(b"".join(parts))
        return payload + _LAST_CHUNK if self._sent == total else payload

    def _tick(self, head: bytes = b"") -> None:
        """Send one event; schedule the next `delay` after the stream's start (no drift)."""
        self._timer = None
        if self._shape is None or self._transport is None:
            return
        self._transport.write(head + self._events(1))
        if self._sent == self._shape.chunks:
            self._finish()
            return
        self._timer = self._loop.call_at(self._start + self._sent * self._shape.delay, self._tick)

    def finish_now(self) -> None:
        """Send the rest of this paced stream at once: its remaining chunks, then [DONE]."""
        if self._shape is None or self._transport is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport.write(self._events(self._shape.chunks - self._sent))
        self._finish()

    def _burst(self, head: bytes = b"") -> None:
        """Write `_BURST` events, then yield to the other connections; stop while paused."""
        self._timer = None
        if self._shape is None or self._transport is None or self._paused:
            return
        self._transport.write(head + self._events(_BURST))
        if self._sent == self._shape.chunks:
            self._finish()
        elif not self._paused:
            self._timer = self._loop.call_soon(self._burst)  # type: ignore[assignment]

    def _finish(self) -> None:
        self._end_stream()
        if self._buffer:
            self._next_request()

    def _end_stream(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._shape is not None:
            self._shape = None
            self._state.active -= 1
            self._state.paced.discard(self)


async def serve(hosts: list[str], port: int, state: UpstreamState) -> list[asyncio.Server]:
    """Listen on `port` (0: pick one) on every host; the first host decides a picked port."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    for host in hosts:
        server = await loop.create_server(
            lambda: _UpstreamProtocol(state), host, port, backlog=8192, reuse_address=True
        )
        port = server.sockets[0].getsockname()[1]
        servers.append(server)
    return servers


async def _main(hosts: list[str], port: int, uvloop_used: bool) -> None:
    servers = await serve(hosts, port, UpstreamState())
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    bound = servers[0].sockets[0].getsockname()[1]
    print(json.dumps({"port": bound, "uvloop": uvloop_used}), flush=True)
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--hosts", default="127.0.0.1", help="comma-separated listen addresses")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    args = parser.parse_args(argv)
    raise_fd_limit()
    use_uvloop = not args.no_uvloop and uvloop_available()
    run(_main(args.hosts.split(","), args.port, use_uvloop), use_uvloop=use_uvloop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
