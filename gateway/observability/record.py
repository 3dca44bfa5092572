"""`RequestRecord`: what happened to one request, written once when it ends.

The relay fills a record as the request progresses and the handler's `finally` calls `finish()`
exactly once, whatever path the request ended by. `finish()` is the single place where a
request becomes observable: it emits the one `request_finished` (or, for `stream: true`,
`stream_finished`) log line and records the request's metrics, so the two can never disagree.

Only a stream's live figures are recorded while it runs, on the route's pre-bound children, so
dashboards see throughput as it happens rather than when long streams end: the gap since the
last write at every relayed write (`relayed`); the events and bytes relayed are counted on the
record and added to their counters by `flush()`, which `Metrics` calls every second and before
every exposition while the stream runs, and `finish()` calls last (a counter's increment costs
a lock; a stream writes up to thousands of times a second).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from gateway.errors import ClientDisconnected, GatewayError
from gateway.observability.metrics import NO_ROUTE, Metrics, RouteMetrics

__all__ = ["RequestRecord"]

_log = structlog.get_logger("gateway.request")
_MAX_MESSAGE = 200


@dataclass(slots=True)
class RequestRecord:
    """Mutable per-request facts; `finish()` turns them into one log line and the metrics."""

    request_id: str
    endpoint: str
    metrics: Metrics
    started: float = field(default_factory=time.monotonic)
    model: str | None = None  # as the client sent it: logged (escaped), never a label
    route: str | None = None
    upstream: str | None = None  # the upstream of the latest attempt: the one that answered
    upstream_model: str | None = None  # the model name that attempt asked it for
    attempts: int = 0  # upstream calls made (retries, failovers and continuations included)
    failovers: int = 0
    continuations: int = 0  # continuation calls whose answer was spliced in
    stream: bool = False
    outcome: str = "in_progress"
    error: GatewayError | None = None
    status: int | None = None
    first_event_at: float | None = None
    events: int = 0
    bytes: int = 0
    skipped_events: int = 0
    redactions: int = 0  # fragments of the gateway's secrets removed from the relayed answer
    refused: str | None = None  # why the request was answered but refused (`refuse`)
    #: Tokens the upstreams reported, by kind (`gateway.streaming.TOKEN_KINDS`; the API's
    #: dialect read them from their usage), summed over the request's calls (`add_tokens`).
    tokens: dict[str, int] = field(default_factory=dict)
    #: The same by upstream: what the metrics count.
    _tokens_by_upstream: dict[str, dict[str, int]] = field(default_factory=dict)
    finished: bool = False
    _route_metrics: RouteMetrics | None = None
    _active: bool = False
    _last_write: float = 0.0
    _relayed_bytes: int = 0  # written by `relayed`: events' bytes
    _counted_events: int = 0  # added to the counters so far
    _counted_bytes: int = 0

    def bind_route(self, route: str) -> None:
        self.route = route
        self._route_metrics = self.metrics.route_metrics(route)

    @property
    def route_metrics(self) -> RouteMetrics:
        if self._route_metrics is None:
            self._route_metrics = self.metrics.route_metrics(NO_ROUTE)
        return self._route_metrics

    def stream_started(self) -> None:
        """A streaming response began: counted among the active streams until `finish()`."""
        if not self._active:
            self._active = True
            self.route_metrics.active_streams.inc()
            self.metrics.watch(self)

    def relayed(self, events: int, size: int) -> None:
        """One write of `events` upstream events (`size` bytes) reached the client's socket."""
        now = time.monotonic()
        bound = self.route_metrics
        if self.first_event_at is None:
            self.first_event_at = now
        else:
            bound.event_gap.observe(now - self._last_write)
        self._last_write = now
        self.events += events
        self._relayed_bytes += size

    def flush(self) -> None:
        """Add the events and bytes relayed since the last flush to their counters."""
        bound = self.route_metrics
        if self.events > self._counted_events:
            bound.events.inc(self.events - self._counted_events)
            self._counted_events = self.events
        if self._relayed_bytes > self._counted_bytes:
            bound.bytes.inc(self._relayed_bytes - self._counted_bytes)
            self._counted_bytes = self._relayed_bytes

    def redacted(self, where: str, count: int) -> None:
        """`count` fragments of the gateway's secrets were removed from what the upstream sent
        (`where`: `stream` or `body`); logged once per request, never with the secret."""
        if not self.redactions:
            _log.warning("upstream_secret_redacted", upstream=self.upstream, where=where)
        self.redactions += count
        self.metrics.child(self.metrics.redactions, where).inc(count)

    def answered(self, response: web.Response) -> None:
        """The request was answered with `response`, a complete (not streamed) body."""
        self.status = response.status
        self.bytes = len(response.body) if isinstance(response.body, bytes) else 0

    def answering(self, upstream: str, model: str) -> None:
        """An upstream call to `upstream` asking for `model` begins."""
        self.upstream = upstream
        self.upstream_model = model
        self.attempts += 1

    def attempt(self, upstream: str, result: str) -> None:
        """One upstream call ended its opening phase: `ok`, or the code of the error."""
        self.metrics.child(self.metrics.upstream_attempts, upstream, result).inc()

    def retried(self, upstream: str, reason: str) -> None:
        """`upstream` is called again for this request; `reason` is an error code."""
        self.metrics.child(self.metrics.upstream_retries, upstream, reason).inc()

    def continued(self, result: str) -> None:
        """A continuation of this stream ended with `result` (a closed set)."""
        if result == "ok":
            self.continuations += 1
        metrics = self.metrics
        metrics.child(metrics.continuations, self.route_metrics.name, result).inc()

    def failed_over(self, reason: str) -> None:
        """The request left a target for the route's next one; `reason` is an error code."""
        self.failovers += 1
        metrics = self.metrics
        metrics.child(metrics.upstream_failovers, self.route_metrics.name, reason).inc()

    def add_tokens(self, upstream: str, tokens: dict[str, int]) -> None:
        """One call to `upstream` reported `tokens` (by kind): added to the request's."""
        if not tokens:
            return
        mine = self._tokens_by_upstream.setdefault(upstream, {})
        for kind, count in tokens.items():
            mine[kind] = mine.get(kind, 0) + count
            self.tokens[kind] = self.tokens.get(kind, 0) + count

    def refuse(self, reason: str) -> None:
        """The request was answered, and what it asked for refused, without an error (a CORS
        preflight's origin, method...): outcome `refused`; `reason` comes from a closed set."""
        self.refused = reason
        if self.error is None:
            self.outcome = "refused"

    def fail(self, error: GatewayError) -> None:
        """Record the error that ended the request (the first one wins)."""
        if self.error is None:
            self.error = error
            # A closed set: completed, client_disconnected, refused, or the error's category.
            disconnected = isinstance(error, ClientDisconnected)
            self.outcome = "client_disconnected" if disconnected else error.category.value

    def finish(self) -> None:
        """Emit the request's one log line and record its metrics; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        if self.outcome == "in_progress":
            self.outcome = "completed"
        now = time.monotonic()
        tokens = self.tokens
        self._record_metrics(now)
        error = self.error
        fields: dict[str, Any] = {
            "endpoint": self.endpoint,
            "model": self.model,
            "route": self.route,
            "upstream": self.upstream,
            "upstream_model": self.upstream_model,
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
        if self.attempts > 1:
            fields["attempts"] = self.attempts
        if self.failovers:
            fields["failovers"] = self.failovers
        if self.continuations:
            fields["continuations"] = self.continuations
        if tokens:
            fields["tokens"] = tokens
        if self.skipped_events:
            fields["skipped_events"] = self.skipped_events
        if self.redactions:
            fields["redactions"] = self.redactions
        if self.refused is not None:
            fields["refused"] = self.refused
        if isinstance(error, ClientDisconnected):
            fields["phase"] = error.phase
        elif error is not None:
            fields["message"] = error.message[:_MAX_MESSAGE]
        _log.info("stream_finished" if self.stream else "request_finished", **fields)

    def _record_metrics(self, now: float) -> None:
        metrics, bound, error = self.metrics, self.route_metrics, self.error
        if self._active:
            metrics.unwatch(self)
        self.flush()
        metrics.child(metrics.requests, self.endpoint, bound.name, self.outcome).inc()
        if error is not None:
            metrics.child(metrics.errors, error.category.value, error.code).inc()
            if isinstance(error, ClientDisconnected):
                metrics.child(metrics.client_disconnects, error.phase).inc()
        if self.first_event_at is not None:
            bound.ttfb.observe(self.first_event_at - self.started)
        bound.duration.observe(now - self.started)
        if self.bytes > self._counted_bytes:  # heartbeats, error events, JSON bodies
            bound.bytes.inc(self.bytes - self._counted_bytes)
        for upstream, tokens in self._tokens_by_upstream.items():
            for kind, count in tokens.items():
                metrics.child(metrics.tokens, bound.name, upstream, kind).inc(count)
        if self._active:
            bound.active_streams.dec()


def _ms(end: float | None, start: float) -> float | None:
    return None if end is None else round((end - start) * 1000, 3)
