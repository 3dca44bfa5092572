"""`StreamError`: the categorised, wire-ready form of a failure (the Go seed's `StreamError`).

`make_stream_error(exc)` is the seed's `MakeStreamError`, fixed: it classifies by exception type
and HTTP status, never by searching message text. `GatewayError`s carry their own category and
code; the few stdlib exceptions that can reach the core are mapped by type here (aiohttp's are
translated earlier, in `gateway.transport`); anything else is an internal failure whose
text is not shown to clients.

`StreamError.to_sse_event()` renders the seed's frame with a real JSON encoder: the output is
always exactly one event whose `data` is one line of JSON, whatever the message contains.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from gateway.errors import (
    APIError,
    Canceled,
    ConnectFailed,
    ConnectionReset,
    DeadlineExceeded,
    ErrorCategory,
    GatewayError,
    NetworkError,
    StreamInterrupted,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamRetryableStatus,
    UpstreamServerError,
)

__all__ = ["StreamError", "as_gateway_error", "error_for_status", "make_stream_error"]


@dataclass(frozen=True, slots=True)
class StreamError:
    """A failure as a client sees it: category (`type`), human message, and exact `code`.

    `code` is always from the gateway's closed set (safe as a metric label). When an upstream
    refused the request with its own sanitised code (e.g. `context_length_exceeded`), that is
    `provider_code`, and the OpenAI dialect shows it to SDK users in place of `code`.
    """

    type: ErrorCategory
    message: str
    code: str
    param: str | None = None
    provider_code: str | None = None

    def to_sse_event(self) -> str:
        """The Go seed's frame: `event: error` + `data: {"type": ..., "message": ...}`."""
        data = json.dumps({"type": self.type.value, "message": self.message})
        return f"event: error\ndata: {data}\n\n"


def make_stream_error(exc: BaseException) -> StreamError:
    """Classify any exception into a `StreamError` (by type and status, never by text)."""
    error = as_gateway_error(exc)
    if isinstance(error, UpstreamBadRequest):
        return StreamError(
            type=error.category,
            message=error.message,
            code=error.code,
            param=error.param,
            provider_code=error.upstream_code,
        )
    return StreamError(
        type=error.category, message=error.message, code=error.code, param=error.param
    )


def as_gateway_error(exc: BaseException) -> GatewayError:
    """The `GatewayError` an exception stands for; `GatewayError`s are returned as they are."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        return Canceled()
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded()
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed()
    if isinstance(exc, ConnectionError):
        return ConnectionReset()
    if isinstance(exc, OSError):
        return NetworkError()
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return error_for_status(status)
    return StreamInterrupted("the gateway failed while relaying the stream")


def error_for_status(
    status: int, message: str | None = None, *, retry_after: str | None = None
) -> GatewayError:
    """The error an upstream HTTP error status stands for (contract section 4)."""
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status in (401, 403):
        return UpstreamAuthFailed()
    if status in (400, 422):
        return UpstreamBadRequest(message)
    if status in (408, 409):
        return UpstreamRetryableStatus(message)
    if status >= 500:
        return UpstreamServerError(message)
    if status >= 400:
        return UpstreamRejected(message)
    return APIError(message)
