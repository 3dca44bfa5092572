"""The streaming core: pure asyncio + stdlib, embeddable without the server.

`Context` (cancellation and deadlines with a cause), `SSEDecoder` (byte-exact framing),
`ContextAwareStream` / `stream_from_context` (reads interrupted by the context and the phase
limits), `StreamError` / `make_stream_error` (categorised errors) and the `Dialect` protocol
(each API's dialect is in its `gateway.apis` package).
This package imports no aiohttp, pydantic or prometheus; a test holds it to that.
"""

from gateway.errors import ErrorCategory
from gateway.streaming.context import CancelScope, Context, DeadlineError
from gateway.streaming.dialect import (
    HEARTBEAT,
    TOKEN_KINDS,
    Dialect,
    Opening,
    StreamTracker,
    TokenCounts,
    Verdict,
    compact_json,
    is_count,
    loads_object,
    shape_reader,
)
from gateway.streaming.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent
from gateway.streaming.stream import ContextAwareStream, stream_from_context
from gateway.streaming.stream_error import (
    StreamError,
    as_gateway_error,
    error_for_status,
    make_stream_error,
)
from gateway.streaming.timeouts import Timeouts

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "HEARTBEAT",
    "TOKEN_KINDS",
    "CancelScope",
    "Context",
    "ContextAwareStream",
    "DeadlineError",
    "Dialect",
    "ErrorCategory",
    "Opening",
    "SSEDecoder",
    "SSEEvent",
    "StreamError",
    "StreamTracker",
    "Timeouts",
    "TokenCounts",
    "Verdict",
    "as_gateway_error",
    "compact_json",
    "error_for_status",
    "is_count",
    "loads_object",
    "make_stream_error",
    "shape_reader",
    "stream_from_context",
]
