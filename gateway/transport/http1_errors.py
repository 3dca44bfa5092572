"""`translate()`: the one place the HTTP/1.1 client's foreign errors become `GatewayError`s.

`Http1Client` meets the OS (connecting, resolving, TLS, a connection lost with an errno),
httptools (a response it cannot parse) and zlib (a body it cannot inflate); each such error, or
the plain end of a connection (`None`), is translated here into the `GatewayError` it stands for
where it happened (`Phase`: getting connected, waiting for the head, reading the body), by type
and errno only, never by message. The classes and messages are those `translate_errors()` gives
for aiohttp's client in the same cases, so the rest of the gateway sees one set of errors
whichever client is underneath. Unlike aiohttp's, these errors carry no phase of their own (an
EOF is clean or a truncation depending on where it came), hence a translation of its own rather
than a context manager around aiohttp's exception classes.
"""

from __future__ import annotations

import errno
import ssl
import zlib
from typing import Literal

import httptools

from gateway.errors import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    GatewayError,
    NetworkError,
    UpstreamProtocolError,
    UpstreamTruncated,
)
from gateway.streaming import as_gateway_error

__all__ = ["HeadTooLarge", "Phase", "UnsupportedEncoding", "translate"]

#: Where an error arrived: getting connected (resolving, connecting, the TLS handshake),
#: waiting for the answer's head, or reading its body.
Phase = Literal["connect", "head", "body"]

_RESET = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_INVALID = "the upstream sent an invalid HTTP response"


class HeadTooLarge(ValueError):
    """The answer's head, or one of its lines, is longer than the client reads."""


class UnsupportedEncoding(ValueError):
    """The body's `Content-Encoding` is none the client can decode (`br`, `zstd`, ...)."""


def translate(
    cause: BaseException | None, phase: Phase, *, connect_limit: float | None = None
) -> GatewayError:
    """The `GatewayError` that `cause` (None: the upstream closed the connection) stands for in
    `phase`; the caller raises it `from cause`. `connect_limit` is named in a `ConnectTimeout`
    (a `TimeoutError` in the connect phase is the `connect` deadline firing)."""
    if isinstance(cause, GatewayError):
        return cause
    if isinstance(cause, (httptools.HttpParserError, HeadTooLarge)):
        return UpstreamProtocolError(_INVALID)
    if isinstance(cause, UnsupportedEncoding):
        return UpstreamProtocolError("the upstream sent a body in an encoding it cannot decode")
    if isinstance(cause, zlib.error):  # aiohttp's class for it: a `ClientPayloadError`
        return UpstreamTruncated("the upstream sent a body that does not decompress")
    if phase == "connect":
        if isinstance(cause, TimeoutError) and cause.errno is None:
            return ConnectTimeout(limit=connect_limit)
        if isinstance(cause, (OSError, ssl.SSLError)):  # refused, unreachable, DNS, certificate
            return ConnectFailed()
    elif phase == "head":
        if cause is None:
            return ConnectionReset("the upstream closed the connection without an answer")
        if isinstance(cause, OSError):
            return ConnectionReset() if cause.errno in _RESET else NetworkError()
    else:
        # A body cut short, by a FIN inside its length or chunks or by a reset: aiohttp's
        # `ClientPayloadError` for both.
        if cause is None or isinstance(cause, OSError):
            return UpstreamTruncated()
    return as_gateway_error(cause) if cause is not None else NetworkError()
