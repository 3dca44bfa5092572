"""Observability: Prometheus metrics, structured logs, and the per-request record joining them."""

from gateway.observability.logs import configure_logging
from gateway.observability.metrics import NO_ROUTE, Metrics, RouteMetrics
from gateway.observability.record import RequestRecord

__all__ = ["NO_ROUTE", "Metrics", "RequestRecord", "RouteMetrics", "configure_logging"]
