"""Observability: Prometheus metrics, structured logs, the per-request record joining them, and
the W3C trace context passed upstream."""

from gateway.observability.logs import configure_logging
from gateway.observability.metrics import NO_ROUTE, Metrics, RouteMetrics
from gateway.observability.record import RequestRecord
from gateway.observability.trace_context import UPSTREAM_TRACE, add_trace_id, client_trace

__all__ = [
    "NO_ROUTE",
    "UPSTREAM_TRACE",
    "Metrics",
    "RequestRecord",
    "RouteMetrics",
    "add_trace_id",
    "client_trace",
    "configure_logging",
]
