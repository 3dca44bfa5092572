"""`translate_errors()`: the one place aiohttp's and the OS's exceptions become `GatewayError`s.

This boundary's `map_httpcore_exceptions`: every aiohttp or OS error raised while talking to an
upstream (connecting, sending, reading the head or the body) passes through it and leaves as
the `GatewayError` it stands for, chained to the original (`raise ... from exc`).
Classification is by exception type only, never by message text; the gateway's own words are
the message, so no host, URL or errno text of the original reaches a client.
"""

from __future__ import annotations

import errno
from types import TracebackType

import aiohttp

from gateway.errors import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    DeadlineExceeded,
    GatewayError,
    NetworkError,
    UpstreamProtocolError,
    UpstreamTruncated,
)
from gateway.streaming import as_gateway_error

__all__ = ["translate_errors"]


def translate_errors(*, connect_limit: float | None = None) -> _ErrorTranslation:
    """Re-raise aiohttp/OS errors of an upstream call as the `GatewayError` they stand for:
    `with translate_errors(): ...`.

    `connect_limit` is the connect timeout in force, named in a `ConnectTimeout`'s message.
    A `GatewayError` and anything that is not an `Exception` (a cancellation) pass through.
    """
    return _ErrorTranslation(connect_limit)


class _ErrorTranslation:
    """`translate_errors()`'s context manager: a slotted object rather than a generator, since
    a stream holds one for as long as it reads its upstream."""

    __slots__ = ("_connect_limit",)

    def __init__(self, connect_limit: float | None) -> None:
        self._connect_limit = connect_limit

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, GatewayError):
            error = _translation(exc, self._connect_limit)
            if error is not None:
                raise error from exc


def _translation(exc: Exception, connect_limit: float | None) -> GatewayError | None:
    """The `GatewayError` an aiohttp/OS error stands for (None: not this boundary's error).
    Most specific first: aiohttp's classes inherit from each other and from `OSError`."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(limit=connect_limit)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return DeadlineExceeded()
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed()
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionReset("the upstream closed the connection without an answer")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamTruncated()
    if isinstance(exc, aiohttp.ClientOSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return ConnectionReset()
        return NetworkError()
    if isinstance(exc, aiohttp.ClientConnectionError):
        return ConnectionReset() if isinstance(exc, ConnectionResetError) else NetworkError()
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError("the upstream sent an invalid HTTP response")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return as_gateway_error(exc)
    return None
