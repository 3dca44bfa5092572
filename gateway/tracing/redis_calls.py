"""`TracedRedis`: a `RedisObserver` decorator making each Redis call of a request a span.

The shared store's `RedisLink` reports each command when its batch is answered, in the context
of the caller that gave it; so the span it becomes here (`redis {operation}`, CLIENT, from the
command's batch round trip to its answer) is a child of the span that was current then: the
request's. A command given outside any traced request (a background task's) makes no span. A
failed command is a span with status ERROR; a decision taken without Redis (`state.on_error`)
is an event on the request's span. The wrapped observer (the metrics) hears everything first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:  # the store is only ever observed once redis is imported
    from gateway.state.redis_link import RedisObserver

__all__ = ["TracedRedis"]

_DB_SYSTEM = "db.system.name"
_DB_OPERATION = "db.operation.name"


class TracedRedis:
    """The wrapped observer, each Redis call of a traced request also a span."""

    __slots__ = ("_inner", "_tracer")

    def __init__(self, inner: RedisObserver, tracer: trace.Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def redis_call(self, operation: str, seconds: float) -> None:
        self._inner.redis_call(operation, seconds)
        self._span(operation, seconds, None)

    def redis_error(self, operation: str) -> None:
        self._inner.redis_error(operation)
        self._span(operation, 0.0, "Redis did not answer")

    def fallback(self, operation: str) -> None:
        self._inner.fallback(operation)
        parent = trace.get_current_span()
        if parent.get_span_context().is_valid:
            parent.add_event("state_fallback", {_DB_OPERATION: operation})

    def _span(self, operation: str, seconds: float, error: str | None) -> None:
        if not trace.get_current_span().get_span_context().is_valid:
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            f"redis {operation}",
            kind=SpanKind.CLIENT,
            start_time=end - int(seconds * 1e9),
            attributes={_DB_SYSTEM: "redis", _DB_OPERATION: operation},
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end)
