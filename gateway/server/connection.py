"""Client connections: how long a request head may take, how large it may be, and what a head
that cannot be parsed is answered.

**Head deadline.** aiohttp has no request-head timeout, but its keep-alive timer is one: it is
armed when a connection opens and again when a response ends, and when it fires while the
connection still waits for (the rest of) a request head, the connection is closed. With
`keepalive_timeout = limits.head_timeout`, a client trickling its request line and headers a
byte at a time is cut off `head_timeout` seconds after it connected (or after its previous
response ended), whatever it sends meanwhile; a request whose head is complete is never touched
by it, however long its response streams. The same timer closes a keep-alive connection left
idle that long. (The body has its own deadline: `gateway.server.request_body`.)

**Head size.** aiohttp's parser limits: `max_line_size` and `max_field_size` (request line,
each header field: `limits.max_header_line_bytes`) and `max_headers`, which is
`header_bound(limits.max_headers)`: twice the limit, so that a head just over the limit still
parses and `gateway.server.request_head` answers it 431 (aiohttp's too-many-headers error is
of the same class as any malformed head's, and messages are never parsed); one past the bound
is answered 400 like any unparsable head. The bound keeps what a head may hold at
`2 * max_headers * max_header_line_bytes`.

**Unparsable heads.** aiohttp answers them in text/plain, echoing up to 100 bytes of the
offending line - which may be someone's key - and logs them at ERROR with a traceback.
`GatewayRequestHandler` answers in the OpenAI error shape instead (the path is unknown when the
head cannot be parsed): 431 `request_head_too_large` for a line over the limit, 400
`invalid_request` for anything else, closing the connection; it counts them in
`gateway_errors_total` and logs one line naming the status and the parser's error class,
nothing the client sent. It also answers the last-resort 500 of an exception no middleware
caught without a traceback in the body, even in asyncio debug mode (aiohttp's debug mode would
send one).

**Write stall.** A client that stops reading fills its socket, then the transport's write
buffer; asyncio then calls the protocol's `pause_writing()`, and the relay's next write waits
(it stops reading the upstream: the bytes held per stream are bounded by the buffers, whatever
the upstream sends). `GatewayRequestHandler` arms one timer at `pause_writing()` and cancels it
at `resume_writing()`: a connection that accepts no bytes for `limits.write_stall` seconds is
aborted, which cancels its handler - the relay closes the upstream and records the stream as
`write_stall` (`stalled_writing`). A client that reads, however slowly, resumes writing and is
never cut. Nothing is done per write: the timer only moves when the buffer crosses its marks.

**Server header.** Every response the connection writes - an app's answers and streams,
aiohttp's own rejections, the unparsable-head answers above - carries `Server: <server.header>`
(none at all when it is empty) instead of aiohttp's `Python/x.y aiohttp/x.y.z`: the request
factory gives each request a `StreamWriter` whose public `on_headers_sent` hook sets it just
before the head is written, the one point every response passes.

`GatewayRunner` (`gateway.server.runner`) serves an app through `GatewayRequestHandler`s.
Everything here is public aiohttp: `web.RequestHandler` and its `handle_error()`, its
`max_field_size`, the asyncio protocol's `pause_writing()`/`resume_writing()`, a writer's
`output_size`, and `aiohttp.http.StreamWriter` with its `on_headers_sent` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage, StreamWriter
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from multidict import CIMultiDict

from gateway.apis import OPENAI_CHAT
from gateway.errors import ErrorCategory, InvalidRequest, RequestHeadTooLarge
from gateway.observability import Metrics
from gateway.settings import LimitSettings
from gateway.streaming import StreamError

__all__ = [
    "HEADER_BOUND_FACTOR",
    "GatewayRequestHandler",
    "handler_options",
    "header_bound",
    "stalled_writing",
    "with_server_header",
]

_log = structlog.get_logger("gateway.server")
_DIALECT = OPENAI_CHAT.dialect
_API_ERROR = ErrorCategory.API_ERROR
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
#: aiohttp's own bound on header fields, as a multiple of `limits.max_headers`.
HEADER_BOUND_FACTOR = 2


def header_bound(max_headers: int) -> int:
    """aiohttp's `max_headers` for a `limits.max_headers`: past it the parser refuses the head
    (400); up to it the gateway counts the fields itself (431)."""
    return max_headers * HEADER_BOUND_FACTOR


def handler_options(
    limits: LimitSettings, metrics: Metrics, *, server_header: str = ""
) -> dict[str, Any]:
    """The per-connection options of `limits`, where `GatewayRequestHandler` counts the heads
    it rejects (`gateway_errors_total`), and the `Server` header of every response (empty:
    none). `GatewayRunner` gives them to every connection of the app it serves, from the app's
    `SETTINGS` and `METRICS`; an app's `handler_args` are not read by it."""
    return {
        "server_header": server_header,
        "keepalive_timeout": limits.head_timeout,
        "max_line_size": limits.max_header_line_bytes,
        "max_field_size": limits.max_header_line_bytes,
        "max_headers": header_bound(limits.max_headers),
        "metrics": metrics,
        "write_stall": limits.write_stall,
    }


def stalled_writing(request: web.BaseRequest) -> float | None:
    """The `write_stall` limit if `request`'s connection was closed for not reading, else
    None."""
    protocol = request.protocol
    if isinstance(protocol, GatewayRequestHandler) and protocol.write_stalled:
        return protocol.write_stall
    return None


class GatewayRequestHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, answering what it cannot parse in the gateway's error shape and
    closing a connection whose client stopped reading."""

    __slots__ = (
        "_metrics",
        "_on_gone",
        "_stall_timer",
        "server_header",
        "write_stall",
        "write_stalled",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        metrics: Metrics | None = None,
        write_stall: float | None = None,
        server_header: str = "",
        **options: Any,
    ) -> None:
        super().__init__(manager, **options)
        self._metrics = metrics
        self.server_header = server_header
        self.write_stall = write_stall
        self.write_stalled = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self._on_gone: Callable[[], None] | None = None

    def on_client_gone(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` once, synchronously, the moment the client is known gone: its FIN
        read (aiohttp closes the connection on it anyway) or the connection lost. aiohttp
        cancels the handler only a loop turn or two later, and a busy loop's turn takes
        milliseconds: this is how a relay closes its upstream in the turn the client left.
        None: no longer."""
        self._on_gone = callback

    def _client_gone(self) -> None:
        callback, self._on_gone = self._on_gone, None
        if callback is not None:
            try:
                callback()
            except Exception:  # a relay's bug must not break the connection's teardown
                _log.exception("client_gone_callback_failed")

    def eof_received(self) -> None:
        self._client_gone()
        super().eof_received()

    async def set_server_header(self, headers: CIMultiDict[str]) -> None:
        """`StreamWriter`'s `on_headers_sent` hook: the `Server` header, or none."""
        if self.server_header:
            headers[hdrs.SERVER] = self.server_header
        else:
            headers.popall(hdrs.SERVER, None)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_stall is not None and self._stall_timer is None:
            # Called by the transport, in its loop: the running loop is the connection's.
            loop = asyncio.get_running_loop()
            self._stall_timer = loop.call_later(self.write_stall, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_stall_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_stall_timer()
        self._client_gone()
        super().connection_lost(exc)

    def _cancel_stall_timer(self) -> None:
        timer = self._stall_timer
        if timer is not None:
            self._stall_timer = None
            timer.cancel()

    def _write_stalled(self) -> None:
        """The client took no bytes for `write_stall` seconds: drop the connection (no FIN
        handshake to wait for behind a full buffer); its handler is cancelled. A transport
        already closing is aborted too: its close would wait for the buffer to drain."""
        self._stall_timer = None
        transport = self.transport
        if transport is None:
            return
        self.write_stalled = True
        _log.info("client_write_stalled", limit_s=self.write_stall)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A reset: the kernel drops what the client never read instead of keeping it
            # (and the socket) until the client reads or TCP gives up.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("the response has started; cannot send an error instead")
        status, error = self._error_for(status, exc)
        if self._metrics is not None:
            self._metrics.errors.labels(error.type.value, error.code).inc()
        response = web.Response(
            status=status, body=_DIALECT.error_body(error), content_type="application/json"
        )
        # Said outright: the answer is HTTP/1.0 (the head's version is unknown), where
        # aiohttp leaves the header out.
        response.headers[hdrs.CONNECTION] = "close"
        response.force_close()
        return response

    def _error_for(self, status: int, exc: BaseException | None) -> tuple[int, StreamError]:
        """The status and error answered, logged in one line without what the client sent."""
        problem = type(exc).__name__ if exc is not None else None
        if isinstance(exc, LineTooLong):
            _log.info("request_head_rejected", status=431, problem=problem)
            limit = self.max_field_size
            message = f"a request line or header field is longer than {limit} bytes"
            return 431, StreamError(_API_ERROR, message, RequestHeadTooLarge.code)
        if isinstance(exc, HttpProcessingError) or status < 500:
            _log.info("request_head_rejected", status=400, problem=problem)
            message = "the request could not be parsed as HTTP/1.1"
            return 400, StreamError(_API_ERROR, message, InvalidRequest.code)
        # An exception no middleware caught (a bug): logged with its traceback, never sent.
        _log.error("request_failed", status=status, problem=problem, exc_info=exc)
        return 500, StreamError(
            _API_ERROR, "the gateway failed to handle the request", "internal_error"
        )


RequestFactory = Callable[
    [
        RawRequestMessage,
        StreamReader,
        web.RequestHandler,
        AbstractStreamWriter,
        "asyncio.Task[None]",
    ],
    web.BaseRequest,
]


def with_server_header(factory: RequestFactory) -> RequestFactory:
    """`factory`, giving each request of a `GatewayRequestHandler` a writer that sets the
    connection's `Server` header (`GatewayRequestHandler.set_server_header`)."""

    def make(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        if isinstance(protocol, GatewayRequestHandler):
            writer = StreamWriter(
                protocol, asyncio.get_running_loop(), on_headers_sent=protocol.set_server_header
            )
        return factory(message, payload, protocol, writer, task)

    return make
