"""Traces in the server: the tracer's life, the request's span, the Redis calls' spans.

With `tracing.enabled` the app builds its `Tracing` at start-up (`tracing_lifecycle`, in each
worker process) and exports what is left at shutdown; `tracing_middleware` gives every relayed
request a `RequestTrace`, current (the OpenTelemetry context of the handler's task) from before
admission to the request's last byte, and ends it from the request's record; the shared
store's Redis calls become its children (`observe_store`).

With tracing off nothing is built and the per-request cost is one header lookup: a client's
valid `traceparent` and `tracestate` are passed upstream unchanged (`UPSTREAM_TRACE`), as a
proxy that does not trace passes them; without one, no trace header is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import context as otel_context

from gateway.observability import UPSTREAM_TRACE, client_trace
from gateway.server.app_state import RECORD, REQUEST_TRACE, TRACING
from gateway.server.handlers import relayed_endpoint
from gateway.settings import TracingSettings
from gateway.tracing import RequestTrace, TracedRedis, Tracing

if TYPE_CHECKING:  # a shared store is observed once redis is imported
    from gateway.state.redis_link import RedisObserver

__all__ = ["observed_store", "tracing_lifecycle", "tracing_middleware"]


def tracing_middleware(settings: TracingSettings) -> Middleware:
    """The middleware of `settings`: a span per relayed request, or (off) the client's trace
    context passed on."""
    return _traced if settings.enabled else _passed_on


@web.middleware
async def _passed_on(request: web.Request, handler: Handler) -> web.StreamResponse:
    carried = client_trace(request.headers)
    if carried is None:
        return await handler(request)
    token = UPSTREAM_TRACE.set(carried)
    try:
        return await handler(request)
    finally:
        UPSTREAM_TRACE.reset(token)


@web.middleware
async def _traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info
    if relayed_endpoint(info.handler) is None:  # probes, models, metrics: no span
        return await handler(request)
    route = info.route.resource.canonical if info.route.resource else request.path
    trace = request[REQUEST_TRACE] = RequestTrace(
        request.app[TRACING], request.headers, request.method, route
    )
    attached = otel_context.attach(trace.context)
    upstream = UPSTREAM_TRACE.set(None)  # each call of the chain sets its own
    status: int | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        UPSTREAM_TRACE.reset(upstream)
        trace.finish(request.get(RECORD), status)
        otel_context.detach(attached)


def tracing_lifecycle(
    settings: TracingSettings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's `cleanup_ctx` of its tracer: built at start-up when tracing is on, flushed
    and stopped at shutdown."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if not settings.enabled:
            yield
            return
        tracing = app[TRACING] = Tracing(settings)
        try:
            yield
        finally:
            await tracing.aclose()

    return lifecycle


def observed_store(app: web.Application, observer: RedisObserver) -> RedisObserver:
    """`observer` of the shared store's Redis calls, each also a span when tracing."""
    tracing = app.get(TRACING)
    return observer if tracing is None else TracedRedis(observer, tracing.tracer)
