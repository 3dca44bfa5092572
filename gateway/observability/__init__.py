"""Observability: structured logs and the per-request record (metrics join them later)."""

from gateway.observability.logs import configure_logging
from gateway.observability.record import RequestRecord

__all__ = ["RequestRecord", "configure_logging"]
