"""`Http1Connection`: one HTTP/1.1 connection to an upstream, an asyncio `Protocol` fed to
httptools' response parser, and `IdlePool`, the connections of one origin waiting for a call.

A connection carries one exchange at a time and is reused for the next (`begin`); the protocol
object, its parser and its buffer live as long as the connection. What it promises:

- The body's bytes are buffered as they arrive and handed out by `read`, at most `limit` joined
  at a time; the reader waits on one future that `data_received`/`connection_lost` resolve (no
  polling, no timer). Above `high_water` buffered bytes the transport stops reading, and it
  resumes once the reader took them: a client that stops reading stops the upstream's window.
- Every byte received before the connection ended comes out of `read` before the error of the
  end: a FIN or a reset inside a body is raised once the buffer is empty.
- A body delimited by the connection's close (no length, not chunked) ends cleanly at EOF
  (httptools cannot be told of an EOF, so the connection knows the framing itself); a FIN
  anywhere else in a body is a truncation and before the head an answer never given.
- The head is bounded (`MAX_HEAD` in total, `MAX_LINE` a header line, aiohttp's line limit);
  interim 1xx answers are skipped; a HEAD's answer has no body.
- `reusable()` holds only when the body was read to its end, the parser says keep-alive, and
  nothing arrived after the answer. An idle connection whose peer closes, or sends anything,
  leaves its pool at once.

Foreign errors (the OS's, httptools') are kept as they came and leave, translated, through
`gateway.transport.http1_errors.translate` when the reader reaches them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import socket
from collections.abc import Callable
from typing import cast

import httptools
from multidict import CIMultiDict

from gateway.errors import GatewayError
from gateway.transport.http1_errors import HeadTooLarge, Phase, translate

__all__ = ["MAX_HEAD", "MAX_LINE", "Http1Connection", "IdlePool"]

MAX_HEAD = 64 * 1024
MAX_LINE = 8190


class Http1Connection(asyncio.Protocol):
    """One connection: the exchange in progress on it, or idle in an `IdlePool`."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_cause",
        "_closed",
        "_complete",
        "_framed",
        "_head_bytes",
        "_head_done",
        "_high_water",
        "_interim",
        "_keep_alive",
        "_loop",
        "_no_body",
        "_offset",
        "_pairs",
        "_parser",
        "_paused",
        "_waiter",
        "headers",
        "idle_since",
        "pool",
        "status",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, high_water: int) -> None:
        self._loop = loop
        self._high_water = high_water
        # The parser holds this protocol's callbacks: a cycle made once connected and broken
        # once the connection is lost, so that reference counts free both (with what the
        # connection buffered), not the cyclic collector some time later.
        self._parser: httptools.HttpResponseParser | None = None
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        # A list, not a deque: it holds a piece or two between reads (pausing bounds it), and
        # an empty deque costs every connection, idle or streaming, 760 bytes against 56.
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._offset = 0  # bytes of the buffer's first piece already handed out
        self._paused = False
        self._closed = False  # connection_lost was called
        self._cause: BaseException | None = None  # why it ended, if not a plain EOF
        #: The pool holding it while idle (None: in use, or not pooled).
        self.pool: IdlePool | None = None
        self.idle_since = 0.0
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._pairs: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._head_done = False
        self._interim = False
        self._complete = False  # the parser saw the answer's end (not a close-delimited one)
        self._framed = True  # the body has a length or chunks (else: it ends at EOF)
        self._keep_alive = False
        self._no_body = False

    # --- the exchange ----------------------------------------------------------------------

    def begin(self, *, no_body: bool) -> None:
        """Start an exchange: the next bytes are its answer (`no_body`: to a HEAD)."""
        self.status = 0
        self._pairs = []
        self._head_bytes = 0
        self._head_done = self._interim = self._complete = self._keep_alive = False
        self._framed = True
        self._no_body = no_body

    async def read_head(self) -> None:
        """Wait for the answer's head (`status`, `headers`)."""
        while not self._head_done:
            if self._closed:
                raise self._error("head")
            await self._wait()

    async def read(self, limit: int) -> bytes:
        """At most `limit` bytes of the body, as soon as some are there; b"" at its end."""
        while not self._buffered:
            if self._complete:
                return b""
            if self._closed:
                if self._cause is None and not self._framed:
                    self._complete = True  # a close-delimited body: EOF is its end
                    return b""
                raise self._error("body")
            await self._wait()
        data = self._take(limit)
        if self._paused and self._buffered <= self._high_water // 2:
            self._paused = False
            if not self._closed and self.transport is not None:
                self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """Whether the next exchange may use it: its answer read to the end, keep-alive, and
        nothing after it."""
        return self._complete and self._keep_alive and not self._buffered and not self._closed

    def abort(self, cause: BaseException | None = None) -> None:
        """Close at once (no lingering: the upstream sees the close now); a reader still
        waiting is told `cause` (default: the connection was aborted)."""
        if self._cause is None:
            self._cause = cause or ConnectionAbortedError(errno.ECONNABORTED, "aborted")
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # The socket shut down first (`TransportSocket.shutdown`, public): the FIN leaves
            # now, where the transport's abort leaves the socket to the loop's next turn.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Gone already (OSError), or uvloop's pseudo-socket, which refuses shutdown
                # (TypeError): the abort below then closes it.
                with contextlib.suppress(OSError, TypeError):
                    sock.shutdown(socket.SHUT_RDWR)
        if transport is not None:
            transport.abort()

    def drop(self) -> None:
        """Close at once and let go of what it buffered: nobody will read it."""
        self.abort()
        self._buffer.clear()
        self._buffered = self._offset = 0

    def _take(self, limit: int) -> bytes:
        buffer = self._buffer
        first = buffer[0]
        if (
            self._offset == 0
            and len(first) <= limit
            and (len(buffer) == 1 or len(first) + len(buffer[1]) > limit)
        ):
            del buffer[0]  # the common case: one piece, handed on without a copy
            self._buffered -= len(first)
            return first
        pieces = []
        wanted = limit
        taken = 0  # whole pieces handed out, deleted at once below (not one by one: quadratic)
        while taken < len(buffer) and wanted:
            first = buffer[taken]
            end = self._offset + wanted
            if end >= len(first):
                pieces.append(first[self._offset :] if self._offset else first)
                wanted -= len(first) - self._offset
                taken += 1
                self._offset = 0
            else:
                pieces.append(first[self._offset : end])
                self._offset = end
                wanted = 0
        del buffer[:taken]
        data = b"".join(pieces)
        self._buffered -= len(data)
        return data

    def _error(self, phase: Phase) -> GatewayError:
        error = translate(self._cause, phase)
        if error is not self._cause:
            error.__cause__ = self._cause
        return error

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not checked with isinstance: uvloop's TCPTransport implements
        # asyncio.Transport's interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        if self.pool is not None:  # an idle connection that talks is not to be reused
            self.abort()
            return
        try:
            if not self._head_done:
                self._head_bytes += len(data)
            assert self._parser is not None  # no data after connection_lost
            self._parser.feed_data(data)
            if not self._head_done and self._head_bytes > MAX_HEAD:
                raise HeadTooLarge()
        except (httptools.HttpParserError, HeadTooLarge) as exc:
            if not self._complete:
                # The callback's own reason (a line too long) rather than httptools' wrapper.
                context = exc.__context__
                self.abort(context if isinstance(context, HeadTooLarge) else exc)
            else:
                self._keep_alive = False  # garbage after a complete answer: not reusable
        if self._buffered > self._high_water and not self._paused:
            self._paused = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._parser = None
        if exc is not None and self._cause is None:
            self._cause = exc
        if self.pool is not None:
            self.pool.discard(self)
        self._wake()

    # --- httptools' callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._keep_alive = False  # a second answer to one request: not reusable

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > MAX_LINE:
            raise HeadTooLarge()
        if not self._complete:
            self._pairs.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        assert self._parser is not None  # called by the parser
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: the answer is still to come
            self._pairs = []
            return
        self.status = status
        self.headers = CIMultiDict(self._pairs)
        self._pairs = []
        self._head_done = True
        headers = self.headers
        chunked = headers.get("transfer-encoding", "").rsplit(",", 1)[-1].strip().lower()
        self._framed = (
            chunked == "chunked"
            or "content-length" in headers
            or status in (204, 304)
            or self._no_body
        )
        if self._no_body:
            # httptools cannot be told that a HEAD's answer has no body: the answer ends here,
            # and the connection, whose parser would wait for that body, is not reused.
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if not self._complete:
            self._buffer.append(body)
            self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._complete:
            self._complete = True
            assert self._parser is not None  # called by the parser
            self._keep_alive = self._parser.should_keep_alive()


class IdlePool:
    """The idle connections to one origin, the last returned first out (its window is open,
    its peer the least likely to have timed it out), each closed after `keep_alive` seconds
    idle by one timer for the whole pool."""

    __slots__ = ("_idle", "_keep_alive", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, keep_alive: float) -> None:
        self._loop = loop
        self._keep_alive = keep_alive
        self._idle: collections.deque[Http1Connection] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._idle)

    def checkout(self) -> Http1Connection | None:
        """The most recently returned connection still open, if any."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            conn.pool = None
            if conn.reusable() and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.drop()
        return None

    def checkin(self, conn: Http1Connection) -> None:
        conn.idle_since = self._loop.time()
        conn.pool = self
        self._idle.append(conn)
        if self._timer is None:
            self._schedule(self._on_timer)

    def discard(self, conn: Http1Connection) -> None:
        """Take out a connection whose peer closed it while idle."""
        conn.pool = None
        with contextlib.suppress(ValueError):  # taken out already (checked out, expired)
            self._idle.remove(conn)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._idle:
            conn = self._idle.pop()
            conn.pool = None
            conn.drop()

    def _schedule(self, callback: Callable[[], None]) -> None:
        self._timer = self._loop.call_at(self._idle[0].idle_since + self._keep_alive, callback)

    def _on_timer(self) -> None:
        self._timer = None
        expired = self._loop.time() - self._keep_alive
        idle = self._idle
        while idle and idle[0].idle_since <= expired:
            conn = idle.popleft()
            conn.pool = None
            conn.drop()
        if idle:
            self._schedule(self._on_timer)
