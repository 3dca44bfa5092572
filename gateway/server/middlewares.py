"""Middlewares: the request id, and JSON errors for what the router itself rejects.

`request_id_middleware` takes the client's `x-request-id` if it is sane (else makes one),
binds it into every log line of the request and echoes it on the response. aiohttp's own
HTTP errors (unknown path, wrong method, oversized body) become JSON in the dialect of the path
(Anthropic's under `/v1/messages`, OpenAI's elsewhere), and a bug in a handler becomes a 500
with a generic message: no traceback reaches a client.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.apis import errors_dialect, served_endpoints
from gateway.errors import ErrorCategory
from gateway.streaming import Dialect, StreamError

__all__ = ["REQUEST_ID", "http_error_response", "request_id_middleware"]

REQUEST_ID = web.RequestKey("request_id", str)
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_log = structlog.get_logger("gateway.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("x-request-id", "")
    # 32 random hex digits, as `uuid4().hex` has (but for its version bits), at a quarter of
    # the cost.
    request_id = given if _SANE_ID.fullmatch(given) else os.urandom(16).hex()
    request[REQUEST_ID] = request_id
    dialect = errors_dialect(request.path)
    # One token held for the request's life; `bound_contextvars` would hold a generator, its
    # frame and a copy of the whole context instead (about 1 KiB per open stream).
    token = structlog.contextvars.bind_contextvars(request_id=request_id)["request_id"]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = http_error_response(request, exc)
    except Exception:
        _log.exception("handler_failed", path=request.path)
        response = _json_error(
            dialect, 500, "the gateway failed to handle the request", "internal_error"
        )
    finally:
        structlog.contextvars.reset_contextvars(request_id=token)
    if not response.prepared:
        # Both names: `request-id` is the one the anthropic SDK reads (contract section 1).
        response.headers["x-request-id"] = response.headers["request-id"] = request_id
    return response


def http_error_response(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own HTTP error `exc` (a 4xx or 5xx: an unknown path, a method not served...)
    as JSON in the dialect of the request's path."""
    message = _not_served(request) if exc.status == 404 else exc.reason
    response = _json_error(errors_dialect(request.path), exc.status, message, _code(exc.status))
    if "Allow" in exc.headers:  # a 405 must say which methods are allowed (RFC 9110)
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _code(status: int) -> str:
    return {404: "unsupported_endpoint", 405: "method_not_allowed", 413: "request_too_large"}.get(
        status, "invalid_request"
    )


def _not_served(request: web.Request, limit: int = 128) -> str:
    """A 404's message: the path asked for (printable, capped) and the endpoints served."""
    path = request.path
    shown = "".join(ch if ch.isprintable() else "?" for ch in path[:limit])
    shown += "..." if len(path) > limit else ""
    served = ", ".join(served_endpoints())
    return (
        f"{request.method} {shown} is not an endpoint of this gateway; it serves {served} "
        "(each also without /v1), GET /healthz, GET /readyz and GET /metrics"
    )


def _json_error(dialect: Dialect, status: int, message: str, code: str) -> web.Response:
    error = StreamError(type=ErrorCategory.API_ERROR, message=message, code=code)
    response = web.Response(
        status=status, body=dialect.error_body(error), content_type="application/json"
    )
    if status < 500:  # a path, method or body the gateway refuses: the same again fails again
        response.headers["x-should-retry"] = "false"
    return response
