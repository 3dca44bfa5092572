"""The bench's load generator: a raw asyncio HTTP/1.1 streaming client (uvloop when installed).

One `Connection` carries one request at a time (keep-alive between them). It writes the request
and times, on CLOCK_MONOTONIC:

- TTFB: request written -> first data event received (a complete event, not a byte);
- total: request written -> the event that ends the stream received (`data: [DONE]` on chat,
  `response.completed` on Responses: the shape's `bench.protocol.WireApi` says which);
- per-event latency: receive time - the send stamp the upstream put in the event
  (`WireApi.stamp`), for every event of the read, one clock read per read.

A stream is an error unless it answered 200, carried exactly the data events asked for, no
other event (`event: error`, `response.failed`...), and ended with its API's end event and the
end of the body - or unless the client aborted it on purpose (`abort_after` events, or
`Connection.abort()`), which is recorded as the close time, not an error. Parsing is the least
that check needs: status line, the framing headers, chunked decoding, `\\n\\n` splitting, a
prefix test per event and, with a log, one `int()` per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from bench.protocol import CHAT, StreamShape, WireApi

__all__ = ["Address", "Connection", "EventLog", "StreamResult", "fetch", "fetch_json"]

_FETCH_TIMEOUT = 10.0  # seconds for a control or health request
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN
_HEAD, _SIZE, _DATA, _DATA_END, _TRAILER, _LENGTH, _UNTIL_CLOSE = range(7)


@dataclass(slots=True)
class EventLog:
    """Every data event read: its send stamp and its latency (ns), in two parallel arrays."""

    sent_ns: array[int] = field(default_factory=lambda: array("q"))
    latency_ns: array[int] = field(default_factory=lambda: array("q"))


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int


@dataclass(slots=True)
class StreamResult:
    """One streaming request as the client saw it; times are CLOCK_MONOTONIC ns."""

    sent_ns: int = 0
    status: int = 0
    events: int = 0
    first_event_ns: int | None = None
    done_ns: int | None = None
    aborted_ns: int | None = None
    error: str | None = None

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.first_event_ns is None else (self.first_event_ns - self.sent_ns) / 1e6

    @property
    def total_ms(self) -> float | None:
        return None if self.done_ns is None else (self.done_ns - self.sent_ns) / 1e6


class _ClientProtocol(asyncio.Protocol):
    """Parses one response at a time; see the module docstring for what counts as an error."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._state = _HEAD
        self._raw = bytearray()
        self._sse = bytearray()
        self._remaining = 0
        self._keep_alive = True
        self._result: StreamResult | None = None
        self._future: asyncio.Future[StreamResult] | None = None
        self._log: EventLog | None = None
        self._abort_after = 0
        self._reset = False
        self._stamp: Callable[[bytes], int | None] = CHAT.stamp
        self._expect = 0
        self._on_first: Callable[[], None] | None = None
        self._done = False
        self._api = CHAT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def begin(
        self,
        request: bytes,
        expect_events: int,
        log: EventLog | None,
        abort_after: int,
        on_first_event: Callable[[], None] | None,
        api: WireApi = CHAT,
        *,
        reset: bool = False,
        stamp: Callable[[bytes], int | None] | None = None,
    ) -> asyncio.Future[StreamResult]:
        assert self.transport is not None
        assert self._future is None
        self._future = asyncio.get_running_loop().create_future()
        self._result = StreamResult()
        self._state, self._done, self._keep_alive = _HEAD, False, True
        self._raw.clear()
        self._sse.clear()
        self._expect, self._log = expect_events, log
        self._abort_after, self._on_first, self._reset = abort_after, on_first_event, reset
        self._api, self._stamp = api, stamp or api.stamp
        self._result.sent_ns = time.monotonic_ns()
        self.transport.write(request)
        return self._future

    def abort(self, reset: bool = False) -> None:
        """Close the connection now, on purpose (the stream is not an error): a FIN, or with
        `reset` an RST (SO_LINGER 0, then close)."""
        if self.transport is not None and reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        if self._result is not None and self._result.aborted_ns is None:
            self._result.aborted_ns = time.monotonic_ns()
        if self.transport is not None:
            self.transport.abort()
        self._resolve()

    def data_received(self, data: bytes) -> None:
        if self._result is None:
            return
        now = time.monotonic_ns()
        if self._state == _HEAD:
            self._raw += data
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return
            data = bytes(self._raw[end + 4 :])
            self._read_head(bytes(self._raw[:end]))
            self._raw.clear()
        if self._state == _LENGTH or self._state == _UNTIL_CLOSE:
            self._body(data, now)
        elif self._state != _HEAD:
            self._dechunk(data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._result is not None and self._state == _UNTIL_CLOSE:
            self._end_of_body()
        elif self._result is not None and self._result.aborted_ns is None:
            self._fail(f"connection lost ({type(exc).__name__ if exc else 'EOF'})")

    def _read_head(self, head: bytes) -> None:
        assert self._result is not None
        lines = head.decode("latin-1").split("\r\n")
        try:
            self._result.status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            self._fail(f"bad status line {lines[0][:80]!r}")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        self._keep_alive = headers.get("connection") != "close"
        if headers.get("transfer-encoding") == "chunked":
            self._state = _SIZE
        elif "content-length" in headers:
            self._state, self._remaining = _LENGTH, int(headers["content-length"])
            if self._remaining == 0:
                self._end_of_body()
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False

    def _body(self, data: bytes, now: int) -> None:
        if self._state == _LENGTH:
            data = data[: self._remaining]
            self._remaining -= len(data)
        self._feed(data, now)
        if self._state == _LENGTH and self._remaining == 0:
            self._end_of_body()

    def _dechunk(self, data: bytes, now: int) -> None:
        raw = self._raw
        raw += data
        pos, parts = 0, []
        while self._result is not None:
            if self._state == _DATA:
                take = min(self._remaining, len(raw) - pos)
                if take:
                    parts.append(raw[pos : pos + take])
                    pos += take
                    self._remaining -= take
                if self._remaining:
                    break
                self._state = _DATA_END
            if len(raw) - pos < 2:
                break
            if self._state == _DATA_END:
                pos += 2
                self._state = _SIZE
                continue
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            line = raw[pos:line_end]
            pos = line_end + 2
            if self._state == _TRAILER:
                if not line:
                    self._feed(b"".join(parts), now)
                    parts = []
                    self._end_of_body()
                continue
            size = int(line.split(b";", 1)[0], 16)
            self._state, self._remaining = (_DATA, size) if size else (_TRAILER, 0)
        del raw[:pos]
        if parts:
            self._feed(b"".join(parts), now)

    def _feed(self, data: bytes, now: int) -> None:
        result = self._result
        if result is None or not data:
            return
        if result.status != 200:
            self._sse += data
            return
        sse = self._sse
        sse += data
        end = sse.rfind(b"\n\n")
        if end < 0:
            return
        block = bytes(sse[:end])
        del sse[: end + 2]
        log, api, stamp_of = self._log, self._api, self._stamp
        counted, done, done_is_counted = api.counted, api.done, api.done_is_counted
        for event in block.split(b"\n\n"):
            if event.startswith(counted):
                result.events += 1
                if result.first_event_ns is None:
                    result.first_event_ns = now
                    if self._on_first is not None:
                        self._on_first()
                if log is not None:
                    try:
                        stamp = stamp_of(event)
                    except ValueError:
                        self._fail(f"unstamped event {event[:160]!r}")
                        return
                    if stamp is not None:
                        log.sent_ns.append(stamp)
                        log.latency_ns.append(now - stamp)
                if result.events == self._abort_after:
                    self.abort(self._reset)
                    return
                if done_is_counted and event.startswith(done):
                    result.done_ns = now
                    self._done = True
            elif event.startswith(done):
                result.done_ns = now
                self._done = True
            elif not event.startswith(b":"):
                self._fail(f"unexpected event {event[:160]!r}")
                return

    def _end_of_body(self) -> None:
        result = self._result
        if result is None:
            return
        if result.status != 200:
            self._fail(f"HTTP {result.status}: {bytes(self._sse[:160])!r}")
        elif not self._done:
            self._fail(f"no {self._api.end_name} after {result.events} events")
        elif self._expect and result.events != self._expect:
            self._fail(f"{result.events} events, expected {self._expect}")
        else:
            self._state = _HEAD
            self._resolve()

    def _fail(self, message: str) -> None:
        if self._result is not None and self._result.error is None:
            self._result.error = message
        self._keep_alive = False
        if self.transport is not None:
            self.transport.abort()
        self._resolve()

    def _resolve(self) -> None:
        future, result = self._future, self._result
        self._future = self._result = None
        if future is not None and result is not None and not future.done():
            future.set_result(result)

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.lost and self._future is None


class Connection:
    """A client connection to a target; one request at a time, kept alive between them."""

    def __init__(self, address: Address, protocol: _ClientProtocol, key: str | None) -> None:
        self.address = address
        self._protocol = protocol
        self._auth = f"Authorization: Bearer {key}\r\n" if key else ""

    @classmethod
    async def open(cls, address: Address, key: str | None = None) -> Connection:
        """A connection whose requests present the gateway key `key` (None: no key)."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_ClientProtocol, address.host, address.port)
        return cls(address, protocol, key)

    @property
    def reusable(self) -> bool:
        return self._protocol.reusable

    def start(
        self,
        shape: StreamShape,
        *,
        log: EventLog | None = None,
        abort_after: int = 0,
        reset: bool = False,
        on_first_event: Callable[[], None] | None = None,
    ) -> asyncio.Future[StreamResult]:
        """Send a streaming request for `shape`; the future resolves when it is over. With
        `abort_after`, the client closes after that many events (`reset`: with an RST)."""
        body = shape.api.request_body(shape)
        request = (
            f"POST {shape.api.path} HTTP/1.1\r\nHost: {self.address.host}:{self.address.port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{self._auth}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        expect = 0 if abort_after else shape.expected_events
        stamp = None if shape.upstream is None else shape.upstream.relayed_stamp(shape.api)
        return self._protocol.begin(
            request, expect, log, abort_after, on_first_event, shape.api, reset=reset, stamp=stamp
        )

    async def stream(self, shape: StreamShape, **options: Any) -> StreamResult:
        return await self.start(shape, **options)

    def abort(self, reset: bool = False) -> None:
        """Close now (a FIN; `reset`: an RST); the running stream ends as aborted."""
        self._protocol.abort(reset)

    def close(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()


async def fetch_json(address: Address, path: str) -> Any:
    """GET `path` on a fresh connection and parse the JSON body (control endpoints, health)."""
    return json.loads(await fetch(address, path))


async def fetch(address: Address, path: str) -> bytes:
    """GET `path` on a fresh connection: the body of its 200 (RuntimeError for another)."""
    async with asyncio.timeout(_FETCH_TIMEOUT):
        reader, writer = await asyncio.open_connection(address.host, address.port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {address.host}\r\nConnection: close\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}")
    return body
