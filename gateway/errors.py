"""The gateway's one error tree.

Every failure the gateway can report is an instance of a `GatewayError` subclass. Each class
carries, as class attributes, the wire category (one of the six `ErrorCategory` strings inherited
from the Go seed), a `code` from a closed set that says exactly what happened, the HTTP status it
becomes before a response is committed, and whether retrying the same request may succeed.
Foreign exceptions (aiohttp, OSError, JSON) are translated into this tree at one place per
boundary (`gateway.transport` for upstream I/O); classification never looks at message text.

    GatewayError
    ├── GatewayTimeout (also TimeoutError)          category timeout, 504
    │   ├── ConnectTimeout                          connect_timeout
    │   ├── FirstByteTimeout                        first_byte_timeout
    │   ├── FirstTokenTimeout                       first_token_timeout
    │   ├── IdleTimeout                             idle_timeout
    │   ├── DeadlineExceeded                        deadline_exceeded
│   └── WriteStalled                            write_stall (the client stopped reading)
    ├── Canceled                                    category context_canceled, 499
    │   ├── ClientDisconnected                      client_disconnected
    │   └── StreamCancelled                         stream_cancelled (a resumable one, by its key)
    ├── NetworkError                                category network, 502
    │   ├── ConnectFailed                           connect_failed
    │   └── ConnectionReset                         connection_reset
    ├── RateLimited                                 category rate_limit
    │   ├── UpstreamRateLimited                     upstream_rate_limited, 429 (+ Retry-After)
    │   ├── GatewayOverloaded                       gateway_overloaded, 503 (+ Retry-After)
    │   └── KeyLimited                              429 (+ Retry-After): a gateway key's limits
    │       ├── KeyConcurrencyLimited               key_concurrency_limited
    │       └── KeyRateLimited                      key_rate_limited
    ├── APIError                                    category api_error
    │   ├── UpstreamServerError                     upstream_status_5xx, 502
    │   ├── UpstreamAuthFailed                      upstream_auth_failed, 502
    │   ├── UpstreamBadRequest                      upstream_bad_request, 400
    │   ├── UpstreamRejected                        upstream_status_4xx, 502
    │   ├── UpstreamRetryableStatus                 upstream_status_retryable, 502 (408, 409)
    │   ├── UpstreamErrorEvent                      upstream_error_event, 502
    │   └── RequestError (the client's request)     400
    │       ├── InvalidRequest                      invalid_request, 400
    │       ├── UnknownModel                        model_not_found, 404
    │       ├── Unauthorized                        unauthorized, 401 (no or wrong gateway key)
    │       ├── RequestTimeout                      request_timeout, 408 (body too slow)
    │       ├── RequestTooLarge                     request_too_large, 413
    │       ├── UnsupportedMediaType                unsupported_media_type, 415
    │       ├── UnsupportedEndpoint                 unsupported_endpoint, 404
    │       ├── RequestHeadTooLarge                 request_head_too_large, 431
    │       └── UnsupportedTransferEncoding         unsupported_transfer_encoding, 501
    └── StreamInterrupted                           category stream_interrupted, 502
        ├── UpstreamTruncated                       upstream_truncated
        ├── UpstreamProtocolError                   upstream_protocol_error
        ├── EventTooLarge                           event_too_large
        ├── StreamLost                              stream_lost (a resumed stream's rest is lost)
        └── ServerShutdown                          server_shutdown, 503, retryable

This module is pure stdlib: the streaming core imports it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "APIError",
    "Canceled",
    "ClientDisconnected",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionReset",
    "DeadlineExceeded",
    "ErrorCategory",
    "EventTooLarge",
    "FirstByteTimeout",
    "FirstTokenTimeout",
    "GatewayError",
    "GatewayOverloaded",
    "GatewayTimeout",
    "IdleTimeout",
    "InvalidRequest",
    "KeyConcurrencyLimited",
    "KeyLimited",
    "KeyRateLimited",
    "NetworkError",
    "RateLimited",
    "RateWindow",
    "RequestError",
    "RequestHeadTooLarge",
    "RequestTimeout",
    "RequestTooLarge",
    "ResourceNotFound",
    "ServerShutdown",
    "StreamCancelled",
    "StreamInterrupted",
    "StreamLost",
    "Unauthorized",
    "UnknownModel",
    "UnknownPreviousResponse",
    "UnsupportedEndpoint",
    "UnsupportedMediaType",
    "UnsupportedTransferEncoding",
    "UntranslatableParameter",
    "UpstreamAuthFailed",
    "UpstreamBadRequest",
    "UpstreamErrorEvent",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamRetryableStatus",
    "UpstreamServerError",
    "UpstreamTruncated",
    "WriteStalled",
]


class ErrorCategory(enum.StrEnum):
    """The six stable wire categories of the Go seed (`StreamError.type`)."""

    STREAM_INTERRUPTED = "stream_interrupted"
    API_ERROR = "api_error"
    RATE_LIMIT = "rate_limit"
    NETWORK = "network"
    TIMEOUT = "timeout"
    CONTEXT_CANCELED = "context_canceled"


class GatewayError(Exception):
    """Root of every error the gateway reports.

    `message` is for humans and safe to show a client: no stack traces, URLs or keys. Subclasses
    fix `category`, `code`, `http_status` and `retryable`; instances may override the code when
    a subclass covers several (for example an upstream's own sanitised error code).
    """

    category: ClassVar[ErrorCategory] = ErrorCategory.STREAM_INTERRUPTED
    code: str = "internal_error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    #: What a client is told in `x-should-retry` (contract section 4): False where a retry
    #: cannot mend it, True for the gateway's own limits and drain, None: the SDK decides.
    client_should_retry: ClassVar[bool | None] = None
    default_message: ClassVar[str] = "the gateway failed to complete the request"
    #: Seconds the upstream asked to wait before trying again (`Retry-After`, `retry-after-ms`),
    #: when its answer said; set on the instance by the provider that read the answer.
    retry_delay: float | None = None
    #: The request field the error is about, where one is (OpenAI's `error.param`).
    param: str | None = None

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


# --- timeout -----------------------------------------------------------------------------------


class GatewayTimeout(GatewayError, TimeoutError):
    """A deadline of contract section 6 fired; the message names the limit."""

    category = ErrorCategory.TIMEOUT
    code = "deadline_exceeded"
    http_status = 504
    retryable = True
    limit_name: ClassVar[str] = "total"
    #: The default message, naming `limit_name` (the limit's value follows when known).
    what_fired: ClassVar[str] = "upstream did not respond within the {} deadline"

    def __init__(self, message: str | None = None, *, limit: float | None = None) -> None:
        self.limit = limit
        if message is None:
            message = self.what_fired.format(self.limit_name)
            if limit is not None:
                message += f" ({limit:g}s)"
        super().__init__(message)


class ConnectTimeout(GatewayTimeout):
    code = "connect_timeout"
    limit_name = "connect"


class FirstByteTimeout(GatewayTimeout):
    code = "first_byte_timeout"
    limit_name = "first_byte"


class FirstTokenTimeout(GatewayTimeout):
    """The upstream sent no answer content (text, a tool call, reasoning) within the limit:
    its preamble (a role chunk, `message_start`), pings and empty deltas don't count."""

    code = "first_token_timeout"
    limit_name = "first_token"
    what_fired = "upstream sent no answer content within the {} deadline"


class IdleTimeout(GatewayTimeout):
    code = "idle_timeout"
    limit_name = "idle"


class DeadlineExceeded(GatewayTimeout):
    code = "deadline_exceeded"
    limit_name = "total"


class WriteStalled(GatewayTimeout):
    """The client stopped reading: its connection could take no more bytes for the whole
    `write_stall` limit, so the gateway closed it (and the upstream). Nobody is left to read
    the error; it is recorded in logs and metrics."""

    code = "write_stall"
    limit_name = "write_stall"
    what_fired = "the client did not read the stream within the {} limit"


# --- context_canceled --------------------------------------------------------------------------


class Canceled(GatewayError):
    """The request's context was canceled by its owner (not by a deadline)."""

    category = ErrorCategory.CONTEXT_CANCELED
    code = "context_canceled"
    http_status = 499
    default_message = "the request was canceled"


class ClientDisconnected(Canceled):
    """The client closed its connection; nobody is left to read the error."""

    code = "client_disconnected"
    default_message = "the client disconnected"

    def __init__(self, message: str | None = None, *, phase: str = "unknown") -> None:
        self.phase = phase
        super().__init__(message)


class StreamCancelled(Canceled):
    """A resumable stream was cancelled by the key that made it (`DELETE /v1/streams/{id}`,
    `POST /v1/responses/{id}/cancel`)."""

    code = "stream_cancelled"
    default_message = "the stream was cancelled"


# --- network -----------------------------------------------------------------------------------


class NetworkError(GatewayError):
    category = ErrorCategory.NETWORK
    code = "network_error"
    http_status = 502
    retryable = True
    default_message = "network error talking to the upstream"


class ConnectFailed(NetworkError):
    code = "connect_failed"
    default_message = "could not connect to the upstream"


class ConnectionReset(NetworkError):
    code = "connection_reset"
    default_message = "the upstream connection was reset"


# --- rate_limit --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateWindow:
    """Where a gateway key stands in its requests-per-minute limit, as clients are told it in
    `x-ratelimit-limit-requests`, `-remaining-requests` and `-reset-requests` (contract
    section 4): the limit, the requests it may still start at once, and the seconds until its
    whole allowance is back."""

    limit: int
    remaining: int
    reset: float

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(0, self.remaining)),
            "x-ratelimit-reset-requests": _duration(self.reset),
        }


def _duration(seconds: float) -> str:
    """A duration as OpenAI writes it in its rate-limit headers: `120ms`, `7s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, whole = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{whole}s" if minutes else f"{whole}s"


class RateLimited(GatewayError):
    """Too many requests; `retry_after` (seconds, as the wire said it) is passed on to clients."""

    client_should_retry: ClassVar[bool | None] = True
    category = ErrorCategory.RATE_LIMIT
    code = "rate_limited"
    http_status = 429
    retryable = True

    def __init__(self, message: str | None = None, *, retry_after: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class UpstreamRateLimited(RateLimited):
    code = "upstream_rate_limited"
    default_message = "the upstream is rate limiting requests"


class GatewayOverloaded(RateLimited):
    """The gateway (or its connection pool to an upstream) is full: retry shortly."""

    code = "gateway_overloaded"
    http_status = 503
    default_message = "the gateway is at capacity"


class KeyLimited(RateLimited):
    """The client's gateway key is over one of its own limits (`auth` settings)."""

    code = "key_limited"
    http_status = 429


class KeyConcurrencyLimited(KeyLimited):
    code = "key_concurrency_limited"
    default_message = "too many requests in flight for this gateway key"


class KeyRateLimited(KeyLimited):
    code = "key_rate_limited"
    default_message = "too many requests per minute for this gateway key"
    #: The key's window when it was refused (set by the store that refused it).
    rate: RateWindow | None = None


# --- api_error ---------------------------------------------------------------------------------


class APIError(GatewayError):
    category = ErrorCategory.API_ERROR
    code = "api_error"
    http_status = 502
    default_message = "the upstream returned an error"


class UpstreamServerError(APIError):
    code = "upstream_status_5xx"
    retryable = True
    default_message = "the upstream failed with a server error"


class UpstreamAuthFailed(APIError):
    """The upstream rejected the gateway's credentials: not the client's fault, hence 502."""

    client_should_retry: ClassVar[bool | None] = False
    code = "upstream_auth_failed"
    default_message = "the upstream rejected the gateway's credentials"


class UpstreamBadRequest(APIError):
    """The upstream refused the request as invalid; its sanitised message and code pass on."""

    client_should_retry: ClassVar[bool | None] = False
    code = "upstream_bad_request"
    http_status = 400
    default_message = "the upstream rejected the request"

    def __init__(
        self,
        message: str | None = None,
        *,
        upstream_code: str | None = None,
        param: str | None = None,
    ) -> None:
        self.upstream_code = upstream_code
        self.param = param
        super().__init__(message)


class UpstreamRejected(APIError):
    """Any other 4xx from the upstream (404, 405, ...): a configuration problem, hence 502."""

    client_should_retry: ClassVar[bool | None] = False
    code = "upstream_status_4xx"
    default_message = "the upstream rejected the request"


class UpstreamRetryableStatus(APIError):
    """408 (request timeout) or 409 (conflict, e.g. a lock): the same request may succeed."""

    code = "upstream_status_retryable"
    retryable = True
    default_message = "the upstream could not take the request this time"


class UpstreamErrorEvent(APIError):
    """The upstream itself ended its stream with an error payload, which was relayed as is."""

    code = "upstream_error_event"
    default_message = "the upstream reported an error mid-stream"


class RequestError(APIError):
    """The client's own request is unacceptable; raised before anything goes upstream."""

    client_should_retry: ClassVar[bool | None] = False
    code = "invalid_request"
    http_status = 400
    default_message = "invalid request"


class InvalidRequest(RequestError):
    code = "invalid_request"


class UntranslatableParameter(InvalidRequest):
    """A request parameter the route's target cannot honour in its API (the gateway
    translates between APIs): refused, not silently lost, unless the route drops such
    parameters (`drop_params`)."""

    code = "unsupported_parameter"
    default_message = (
        "a parameter cannot be sent to this model's upstream, which speaks another API"
    )

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        self.param = param
        if message is None and param is not None:
            message = (
                f"the parameter {param!r} cannot be sent to this model's upstream, which speaks "
                "another API (a route may drop what its target cannot honour: drop_params)"
            )
        super().__init__(message)


class UnknownModel(RequestError):
    code = "model_not_found"
    http_status = 404
    default_message = "the requested model is not routed by this gateway"


class ResourceNotFound(RequestError):
    """A resource the request names - a stored response - does not exist for this client:
    the gateway knows no upstream holding it for the client's key, or that upstream has none
    (its 404 on a call about the resource, which is the client's business, not the
    upstream's fault)."""

    code = "not_found"
    http_status = 404
    default_message = "the requested resource was not found"


class UnknownPreviousResponse(RequestError):
    """A Responses request continues a response (`previous_response_id`) whose upstream the
    gateway cannot tell among its route's: it never guesses, as an upstream that does not
    know the id would start a new conversation or refuse."""

    code = "previous_response_not_found"
    param = "previous_response_id"
    default_message = "the previous response is not known to this gateway"


class Unauthorized(RequestError):
    code = "unauthorized"
    http_status = 401
    default_message = "a valid gateway key is required (Authorization: Bearer or x-api-key)"


class RequestTimeout(RequestError):
    """The client did not send its whole request body within `limits.body_timeout`."""

    client_should_retry: ClassVar[bool | None] = None
    code = "request_timeout"
    http_status = 408
    default_message = "the request body was not received in time"


class RequestTooLarge(RequestError):
    code = "request_too_large"
    http_status = 413
    default_message = "the request body is too large"


class UnsupportedMediaType(RequestError):
    """An API request whose body is not `application/json` (contract section 1): a cross-site
    form or `text/plain` POST never spends tokens."""

    code = "unsupported_media_type"
    http_status = 415
    default_message = "the request body must be application/json"


class UnsupportedEndpoint(RequestError):
    """A path (or method) the gateway does not serve."""

    code = "unsupported_endpoint"
    http_status = 404
    default_message = "the gateway does not serve this endpoint"


class RequestHeadTooLarge(RequestError):
    """A request line or header field longer than the limit (`limits.max_header_line_bytes`)."""

    code = "request_head_too_large"
    http_status = 431
    default_message = "a request header field is too large"


class UnsupportedTransferEncoding(RequestError):
    """A request body framed with a transfer coding other than `chunked` alone (RFC 9112
    section 6.1: 501); its framing is ambiguous, so its connection is closed."""

    code = "unsupported_transfer_encoding"
    http_status = 501
    default_message = "the only transfer coding the gateway accepts is chunked"


# --- stream_interrupted ------------------------------------------------------------------------


class StreamInterrupted(GatewayError):
    category = ErrorCategory.STREAM_INTERRUPTED
    code = "stream_interrupted"
    http_status = 502
    default_message = "the stream was interrupted"


class UpstreamTruncated(StreamInterrupted):
    code = "upstream_truncated"
    retryable = True
    default_message = "the upstream ended the stream before the answer was complete"


class UpstreamProtocolError(StreamInterrupted):
    code = "upstream_protocol_error"
    default_message = "the upstream broke the wire protocol"


class StreamLost(StreamInterrupted):
    """A resumed stream cannot go on: the replica serving it stopped before its end, or the
    events asked for are no longer kept."""

    code = "stream_lost"
    default_message = (
        "the rest of this stream is lost: the replica serving it stopped, or the events asked "
        "for are no longer kept"
    )


class EventTooLarge(StreamInterrupted):
    code = "event_too_large"
    default_message = "an upstream event exceeded the size limit"

    def __init__(self, message: str | None = None, *, limit: int | None = None) -> None:
        if message is None and limit is not None:
            message = f"an upstream event exceeded the size limit of {limit} bytes"
        super().__init__(message)


class ServerShutdown(StreamInterrupted):
    client_should_retry: ClassVar[bool | None] = True
    code = "server_shutdown"
    http_status = 503
    retryable = True
    default_message = "the gateway is shutting down; retry the request"
