"""Traces: OpenTelemetry spans of relayed requests, their upstream calls and Redis calls.

`Tracing` is the app's tracer provider and exporter (`tracing.enabled`); `RequestTrace` the
span of one request, which observes its chain (`TracedAttempts`: a span per upstream call, the
W3C context each call carries upstream); `TracedRedis` the spans of the shared store's calls.
With tracing off none of this is built: the server only passes a client's `traceparent` on
(`gateway.observability.client_trace`).
"""

from gateway.tracing.attempts import TracedAttempts
from gateway.tracing.redis_calls import TracedRedis
from gateway.tracing.request_trace import RequestTrace
from gateway.tracing.tracer import Tracing

__all__ = ["RequestTrace", "TracedAttempts", "TracedRedis", "Tracing"]
