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
each header field: `limits.max_header_line_bytes`) and `max_headers` (`limits.max_headers`).

**Unparsable heads.** aiohttp answers them in text/plain, echoing up to 100 bytes of the
offending line - which may be someone's key - and logs them at ERROR with a traceback.
`GatewayRequestHandler` answers in the OpenAI error shape instead (the path is unknown when the
head cannot be parsed): 431 `request_head_too_large` for a line over the limit, 400
`invalid_request` for anything else, closing the connection; it counts them in
`gateway_errors_total` and logs one line naming the status and the parser's error class,
nothing the client sent. It also answers the last-resort 500 of an exception no middleware
caught without a traceback in the body, even in asyncio debug mode (aiohttp's debug mode would
send one).

`GatewayRunner` is `web.AppRunner` serving through `GatewayRequestHandler`.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from gateway.errors import ErrorCategory, InvalidRequest, RequestHeadTooLarge
from gateway.observability import Metrics
from gateway.settings import LimitSettings
from gateway.streaming import OpenAIDialect, StreamError

__all__ = ["GatewayRequestHandler", "GatewayRunner", "GatewayServer", "handler_options"]

_log = structlog.get_logger("gateway.server")
_DIALECT = OpenAIDialect()
_API_ERROR = ErrorCategory.API_ERROR


def handler_options(limits: LimitSettings, metrics: Metrics) -> dict[str, Any]:
    """The per-connection options of `limits` (an `Application`'s `handler_args`), and where
    `GatewayRequestHandler` counts the heads it rejects (`gateway_errors_total`)."""
    return {
        "keepalive_timeout": limits.head_timeout,
        "max_line_size": limits.max_header_line_bytes,
        "max_field_size": limits.max_header_line_bytes,
        "max_headers": limits.max_headers,
        "metrics": metrics,
    }


class GatewayRequestHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, answering what it cannot parse in the gateway's error shape."""

    __slots__ = ("_metrics",)

    def __init__(
        self, manager: web.Server, *, metrics: Metrics | None = None, **options: Any
    ) -> None:
        super().__init__(manager, **options)
        self._metrics = metrics

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


class GatewayServer(web.Server):
    """`web.Server` whose connections are `GatewayRequestHandler`s."""

    def __call__(self) -> GatewayRequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` serving its app through `GatewayServer`."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        # The app's own server (its startup run, its handler and request factory), rebuilt as
        # a `GatewayServer` with the same options: aiohttp has no hook for the protocol class.
        made = await super()._make_server()
        return GatewayServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
