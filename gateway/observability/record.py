"""`RequestRecord`: what happened to one request, written once when it ends.

The relay fills a record as the request progresses (cheap attribute writes, nothing on the
per-event path but counters) and the handler's `finally` calls `finish()` exactly once, which
emits the one `request_finished` log line. Metrics hook in at the same point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.errors import ClientDisconnected, GatewayError

__all__ = ["RequestRecord"]

_log = structlog.get_logger("gateway.request")
_MAX_FIELD = 128


@dataclass(slots=True)
class RequestRecord:
    """Mutable per-request facts; `finish()` turns them into one log line."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    route: str | None = None
    upstream: str | None = None
    stream: bool = False
    outcome: str = "in_progress"
    error: GatewayError | None = None
    status: int | None = None
    first_event_at: float | None = None
    events: int = 0
    bytes: int = 0
    skipped_events: int = 0
    usage: dict[str, Any] | None = None
    finished: bool = False

    def fail(self, error: GatewayError) -> None:
        """Record the error that ended the request (the first one wins)."""
        if self.error is None:
            self.error = error
            # A closed set: completed, client_disconnected, or the error's category.
            disconnected = isinstance(error, ClientDisconnected)
            self.outcome = "client_disconnected" if disconnected else error.category.value

    def finish(self) -> None:
        """Emit the request's one log line; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        if self.outcome == "in_progress":
            self.outcome = "completed"
        now = time.monotonic()
        error = self.error
        fields: dict[str, Any] = {
            "endpoint": self.endpoint,
            "route": self.route,
            "upstream": self.upstream,
            "stream": self.stream,
            "outcome": self.outcome,
            "category": error.category.value if error else None,
            "code": error.code if error else None,
            "status": self.status,
            "ttfb_ms": _ms(self.first_event_at, self.started),
            "duration_ms": _ms(now, self.started),
            "events": self.events,
            "bytes": self.bytes,
        }
        if self.skipped_events:
            fields["skipped_events"] = self.skipped_events
        if self.usage:
            fields["tokens"] = {
                key: value
                for key, value in self.usage.items()
                if key in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
                and isinstance(value, int)
            }
        if isinstance(error, ClientDisconnected):
            fields["phase"] = error.phase
        elif error is not None:
            fields["message"] = error.message[:_MAX_FIELD]
        _log.info("request_finished", **fields)


def _ms(end: float | None, start: float) -> float | None:
    return None if end is None else round((end - start) * 1000, 3)
