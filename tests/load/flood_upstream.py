"""A fast upstream with large events for `tests/load`: as fast as each connection takes them.

    python -m tests.load.flood_upstream --event-bytes B --events N

A process of its own (raw asyncio protocol, uvloop when installed), printing one JSON line,
`{"port": P}`, once it listens. Every `POST` is answered with an OpenAI chat stream: `N` chunks
whose `data:` line is about `B` bytes of valid JSON (a role chunk first, a
`finish_reason: "stop"` chunk last), then `data: [DONE]`, HTTP/1.1 chunked, keep-alive. It
writes as fast as the connection takes bytes and no faster: writing pauses while the
transport is above its high-water mark (`pause_writing`), so what a stalled proxy leaves
unread stays in this process's bounded buffer and the proxy's socket, never growing.

`GET /_flood/sent` answers `{"bytes": S, "streams": A}`: the bytes handed to the transports so
far and the streams still being written. A test waits for `bytes` to stop growing: then every
stream is blocked on its reader, and whatever the proxy buffers per stream is at its most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import cast

from bench.eventloop import run
from bench.system import raise_fd_limit

__all__ = ["SENT_PATH", "event_bytes", "main"]

SENT_PATH = "/_flood/sent"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_CHUNK = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
_LAST = b"0\r\n\r\n"


def event_bytes(size: int, *, role: bool = False, final: bool = False) -> bytes:
    """One SSE event of about `size` bytes, a valid `chat.completion.chunk`."""
    if final:
        choice = b'[{"index":0,"delta":{},"finish_reason":"stop"}]}'
        return b"data: " + _CHUNK + choice + b"\n\n"
    pad = max(size - 160, 1)
    role_field = b'"role":"assistant",' if role else b""
    choice = b'[{"index":0,"delta":{' + role_field + b'"content":"' + b"x" * pad
    return b"data: " + _CHUNK + choice + b'"},"finish_reason":null}]}\n\n'


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _State:
    """The counters `GET /_flood/sent` reports."""

    def __init__(self, size: int, events: int) -> None:
        self.size = size
        self.events = events
        self.sent = 0
        self.streams = 0
        self.first = _chunked(event_bytes(size, role=True))
        self.middle = _chunked(event_bytes(size))
        self.end = _chunked(event_bytes(size, final=True)) + _chunked(b"data: [DONE]\n\n") + _LAST


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed from the head and `Content-Length`, one stream
    at a time, written while the transport is not paused."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._left = -1  # events still to write; -1: no stream running
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of `asyncio.Transport`, only alike).
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._left >= 0:
            self._state.streams -= 1
        self._left = -1
        self._transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._left < 0:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            del self._buffer[: end + 4 + length]
            self._answer(head.split(" ", 2))

    def _answer(self, request_line: list[str]) -> None:
        assert self._transport is not None
        if request_line[0] == "GET" and request_line[1] == SENT_PATH:
            body = json.dumps({"bytes": self._state.sent, "streams": self._state.streams})
            self._transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body.encode())
            )
            self._transport.close()
            return
        self._state.streams += 1
        self._left = self._state.events
        self._write(_STREAM_HEAD + self._state.first)
        self._left -= 1
        self._pump()

    def _pump(self) -> None:
        state = self._state
        transport = self._transport
        while self._left > 0 and not self._paused and transport and not transport.is_closing():
            if self._left == 1:
                self._write(state.end)
                self._left = -1
                state.streams -= 1
                return
            self._write(state.middle)
            self._left -= 1

    def _write(self, data: bytes) -> None:
        assert self._transport is not None
        self._state.sent += len(data)
        self._transport.write(data)


async def _serve(size: int, events: int) -> None:
    loop = asyncio.get_running_loop()
    state = _State(size, events)
    server = await loop.create_server(
        lambda: _Connection(state), "127.0.0.1", 0, backlog=4096, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
    await stop
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.load.flood_upstream")
    parser.add_argument("--event-bytes", type=int, required=True)
    parser.add_argument("--events", type=int, required=True, help="data events per stream (>= 2)")
    args = parser.parse_args(argv)
    raise_fd_limit()
    run(_serve(args.event_bytes, max(args.events, 2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
