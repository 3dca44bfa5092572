"""What a parsed request head must satisfy before anything reads its body: unambiguous framing,
and no more header fields than `limits.max_headers`.

**Framing (RFC 9112 sections 6.1 and 6.3).** The gateway decodes one transfer coding, `chunked`,
and only alone. aiohttp's parser (llhttp) already refuses a head whose framing it cannot
determine - `chunked` not the final coding (`chunked, gzip`; `gzip` or `foo` alone), repeated
`Transfer-Encoding` fields, `Transfer-Encoding` together with `Content-Length` (the smuggling
pair) - and `GatewayRequestHandler` answers those 400 `invalid_request` and closes (in the
OpenAI shape: the path of a head that failed to parse is not known). What llhttp lets through as
chunked is every list whose last coding is `chunked`; `check_head` answers what remains:

- codings before `chunked` (`gzip, chunked`, `identity, chunked`, `foo, chunked`): 501
  `unsupported_transfer_encoding`, as nginx and Envoy do - the gateway would parse the body as
  chunked alone while a proxy in front might have decoded it otherwise;
- a malformed list (an empty element, `chunked;x=1`): 400 `invalid_request`.

Both say `Connection: close` and the connection is closed after the answer: where the body ends
is in doubt, so nothing after it on the connection can be trusted to be a request.

**Header count.** aiohttp raises one exception class for a head with too many fields and for
any other malformed head, so the parser cannot tell them apart without reading its message
text. Instead the parser's own bound is twice the limit (`gateway.server.connection.header_bound`),
and a head that parsed is counted here: more than `limits.max_headers` fields is 431
`request_head_too_large`, closed. Past the parser's bound the head is refused by the parser
like any malformed head: 400 `invalid_request`.

The answers are in the path's dialect, logged as one `request_head_rejected` line (status and
problem, nothing the client sent) and counted in `gateway_errors_total`, like the parser's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import hdrs, web

from gateway.apis import errors_dialect
from gateway.errors import (
    InvalidRequest,
    RequestError,
    RequestHeadTooLarge,
    UnsupportedTransferEncoding,
)
from gateway.server.app_state import METRICS, SETTINGS
from gateway.server.middlewares import REQUEST_ID
from gateway.server.relay import error_response

__all__ = ["check_head", "request_head_middleware", "transfer_coding_error"]

_CHUNKED = "chunked"
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_log = structlog.get_logger("gateway.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_head_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    error = check_head(request, request.app[SETTINGS].limits.max_headers)
    if error is None:
        return await handler(request)
    _log.info("request_head_rejected", status=error.http_status, problem=error.code)
    request.app[METRICS].errors.labels(error.category.value, error.code).inc()
    response = error_response(errors_dialect(request.path), error, request[REQUEST_ID])
    response.force_close()
    return response


def check_head(request: web.BaseRequest, max_headers: int) -> RequestError | None:
    """What is wrong with `request`'s head, or None."""
    if len(request.raw_headers) > max_headers:
        return RequestHeadTooLarge(f"the request has more than {max_headers} header fields")
    codings = request.headers.get(hdrs.TRANSFER_ENCODING)
    if codings is None:
        return None
    return transfer_coding_error(codings)


def transfer_coding_error(value: str) -> RequestError | None:
    """What is wrong with a `Transfer-Encoding` value, or None if it is `chunked` alone.

    (Only heads the parser took for chunked get here: their last coding is `chunked`.)
    """
    codings = [coding.strip(" \t").lower() for coding in value.split(",")]
    if codings == [_CHUNKED]:
        return None
    if any(not coding or not _TOKEN.issuperset(coding) for coding in codings):
        return InvalidRequest("the request's Transfer-Encoding is malformed")
    if codings[-1] != _CHUNKED or codings.count(_CHUNKED) > 1:
        return InvalidRequest("chunked must be the request's final transfer coding, once")
    return UnsupportedTransferEncoding()
