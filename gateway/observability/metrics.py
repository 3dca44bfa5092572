"""`Metrics`: the gateway's Prometheus metrics, one object per app owning its registry.

Names are `gateway_<noun>_<unit>`; every label value comes from a closed set - route and
upstream names from the config (or `none` for a request that never reached a route), error
categories and codes from `gateway.errors`, disconnect phases, token kinds - never from what a
client typed (model names, keys, paths, user ids). `route_metrics(name)` hands out pre-bound
children, so the per-read path of a stream is a few `inc`/`observe` calls on bound objects and
no label lookup.

Several worker processes: when `PROMETHEUS_MULTIPROC_DIR` is set (the supervisor sets it for its
workers before they import prometheus-client), values live in that directory's memory-mapped
files and `exposition()` aggregates every process's values, so any worker answers `/metrics`
for all of them.
"""

from __future__ import annotations

import asyncio
import os
import platform
from dataclasses import dataclass
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from gateway import __version__
from gateway.redaction import Redactor

__all__ = ["NO_ROUTE", "Metrics", "RouteMetrics", "multiprocess_dir"]

#: The `route` label of requests that never reached a route (invalid body, unknown model).
NO_ROUTE = "none"

#: Time to first byte: from a few milliseconds (cached, local) to a minute (queued, reasoning).
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Seconds between two flushes of the figures streams count on their own (`LiveFigures`).
FLUSH_INTERVAL = 1.0

#: A labelled metric (or one of its children).
M = TypeVar("M", Counter, Gauge, Histogram)

#: A Redis call of the shared state: well under a millisecond, up to its budget and past it.
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

GAP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, if this process runs in it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class LiveFigures(Protocol):
    """Figures a stream counts on its own and adds to the metrics now and then (`watch`)."""

    def flush(self) -> None:
        """Add what was counted since the last flush to the metrics."""


@dataclass(frozen=True, slots=True)
class RouteMetrics:
    """One route's pre-bound children: what a stream touches while it runs."""

    name: str
    active_streams: Gauge
    ttfb: Histogram
    duration: Histogram
    event_gap: Histogram
    events: Counter
    bytes: Counter


class Metrics:
    """Every gateway metric, registered in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests finished, by endpoint, route and outcome (completed, "
            "client_disconnected, refused - a CORS preflight refused - or the error category).",
            ["endpoint", "route", "outcome"],
            registry=r,
        )
        self.active_streams = Gauge(
            "gateway_active_streams",
            "Streaming responses in progress.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.errors = Counter(
            "gateway_errors",
            "Requests that ended with an error, by category and code.",
            ["category", "code"],
            registry=r,
        )
        self.ttfb = Histogram(
            "gateway_time_to_first_byte_seconds",
            "From the request's arrival to the first upstream event (or body byte) relayed.",
            ["route"],
            buckets=TTFB_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "gateway_stream_duration_seconds",
            "From the request's arrival to the end of its response.",
            ["route"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.event_gap = Histogram(
            "gateway_event_gap_seconds",
            "Time between two relayed upstream reads that carried events.",
            ["route"],
            buckets=GAP_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "gateway_relayed_events", "Upstream events relayed to clients.", ["route"], registry=r
        )
        self.bytes = Counter(
            "gateway_relayed_bytes",
            "Bytes written to clients (events, heartbeats, error events, JSON bodies).",
            ["route"],
            registry=r,
        )
        self.upstream_attempts = Counter(
            "gateway_upstream_attempts",
            "Upstream calls, by upstream and result (ok, or the error code that ended them).",
            ["upstream", "result"],
            registry=r,
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries",
            "Upstream calls repeated on the same upstream, by the error code that caused it.",
            ["upstream", "reason"],
            registry=r,
        )
        self.upstream_failovers = Counter(
            "gateway_upstream_failovers",
            "Requests moved to a route's next target, by the error code that caused it.",
            ["route", "reason"],
            registry=r,
        )
        self.continuations = Counter(
            "gateway_continuations",
            "Continuations of streams cut or stalled after their first byte, by route and "
            "result (ok, rejected, failed, unsound, exhausted).",
            ["route", "result"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "gateway_circuit_state",
            "Each target's circuit: 0 closed, 1 half-open (probing), 2 open (skipped); "
            "the worst of the workers.",
            ["target"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.client_disconnects = Counter(
            "gateway_client_disconnects",
            "Clients that went away before their response ended, by phase.",
            ["phase"],
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens the upstreams reported in their usage, by route, upstream and kind (input, "
            "output, cached, reasoning); each call of a continued stream its own; also the "
            "partial usage of cut streams.",
            ["route", "upstream", "kind"],
            registry=r,
        )
        self.redactions = Counter(
            "gateway_redactions",
            "Fragments of the gateway's own secrets removed from what an upstream sent before "
            "it was relayed, by where they were (stream: SSE events, body: a JSON answer).",
            ["where"],
            registry=r,
        )
        self.redis_call = Histogram(
            "gateway_redis_call_seconds",
            "Round trip of the shared state's Redis commands, by operation (admit, release, "
            "charge, refresh, circuit_read, circuit_claim, circuit_verdict, owner_remember, "
            "owner_get, owner_forget; flush: the readiness check).",
            ["operation"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "gateway_redis_errors",
            "Redis commands of the shared state that failed (timeout past "
            "`state.redis_timeout`, connection, error reply, or dropped while Redis was "
            "down), by operation.",
            ["operation"],
            registry=r,
        )
        self.state_fallbacks = Counter(
            "gateway_state_fallbacks",
            "Decisions taken without Redis (`state.on_error`: counted in this process, or "
            "refused), by operation.",
            ["operation"],
            registry=r,
        )
        deployment = ["upstream", "deployment", "model"]
        self.deployment_calls = Counter(
            "gateway_deployment_calls",
            "Calls to each deployment of a pooled upstream, by verdict (succeeded, failed - "
            "the deployment's fault -, abandoned); labels from the configuration only.",
            [*deployment, "outcome"],
            registry=r,
        )
        self.deployment_in_flight = Gauge(
            "gateway_deployment_in_flight",
            "Calls in flight to each deployment of a pooled upstream.",
            deployment,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.deployment_ttft = Histogram(
            "gateway_deployment_time_to_first_token_seconds",
            "From a call's start to its answer (a stream's first event, a whole body), per "
            "deployment: what `lowest_latency` averages.",
            deployment,
            buckets=TTFB_BUCKETS,
            registry=r,
        )
        self.deployment_circuit_state = Gauge(
            "gateway_deployment_circuit_state",
            "Each deployment's circuit: 0 closed, 1 half-open, 2 open; the worst of the workers.",
            deployment,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.build_info = Gauge(
            "gateway_build_info",
            "Always 1; the labels say which build is running.",
            ["version", "python"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self._routes: dict[str, RouteMetrics] = {}
        self._children: dict[tuple[object, ...], object] = {}
        self._live: dict[int, LiveFigures] = {}
        self._ticker: asyncio.TimerHandle | None = None

    def route_metrics(self, route: str) -> RouteMetrics:
        """The bound children of `route` (a config route name or `NO_ROUTE`)."""
        bound = self._routes.get(route)
        if bound is None:
            bound = RouteMetrics(
                name=route,
                active_streams=self.active_streams.labels(route),
                ttfb=self.ttfb.labels(route),
                duration=self.duration.labels(route),
                event_gap=self.event_gap.labels(route),
                events=self.events.labels(route),
                bytes=self.bytes.labels(route),
            )
            self._routes[route] = bound
        return bound

    def child(self, metric: M, *labels: str) -> M:
        """`metric.labels(*labels)`, memoised (a dict lookup rather than prometheus-client's
        validation and locking): label values come from closed sets, so the memo stays small."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child  # type: ignore[return-value]

    def watch(self, figures: LiveFigures) -> None:
        """Flush `figures` every `FLUSH_INTERVAL` seconds, and before every exposition, until
        `unwatch(figures)`: counted on their own, they reach the metrics at most that late."""
        self._live[id(figures)] = figures
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._tick)

    def unwatch(self, figures: LiveFigures) -> None:
        """Stop flushing `figures` (their owner flushes them one last time)."""
        self._live.pop(id(figures), None)

    def _tick(self) -> None:
        self._ticker = None
        self._flush_live()
        if self._live:  # the timer runs only while some stream counts on its own
            self._ticker = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._tick)

    def _flush_live(self) -> None:
        for figures in list(self._live.values()):
            figures.flush()

    def exposition(self, accept: str = "", redactor: Redactor | None = None) -> tuple[bytes, str]:
        """The exposition in the format `accept` prefers (Prometheus text or OpenMetrics) and
        its content type; all workers' values in multiprocess mode (this worker's streams
        flushed first; the others' are at most `FLUSH_INTERVAL` late).

        Labels come from closed sets of the configuration, never from clients; `redactor`
        still passes over the whole text, so that a secret pasted into a route or upstream
        name cannot be scraped.
        """
        self._flush_live()
        encode, content_type = choose_encoder(accept)
        directory = multiprocess_dir()
        if directory is None:
            text = encode(self.registry)
        else:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            text = encode(registry)
        if redactor is not None:
            text = redactor.redact_bytes(text)[0]
        return text, content_type
