"""The aiohttp application factory and the server runner.

`create_app(settings)` builds everything a gateway needs (providers, router, routes) with no
module-level state, so tests build as many independent apps as they like, each with its own
settings and providers. Apps are served by a `GatewayRunner` (`gateway.server.runner`: each
connection a `gateway.server.connection.GatewayRequestHandler` with the request-head deadline
and limits of the app's settings) with handler cancellation
on (`RUNNER_OPTIONS`): a client that disconnects cancels its handler, which is how a vanished
client closes its upstream at once. Every request passes `request_head_middleware` (framing,
header count) and every `/v1/*` request `admission_middleware` (gateway keys, capacity) before
its handler reads a byte of its body; CORS preflights (`gateway.server.cors`, when origins are
configured) are answered before admission. `/metrics` is served by the main app, or by
`create_metrics_app()` on a listener of its own (`metrics.listen`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from gateway.apis import APIS, RESPONSES_FOLLOW_UPS
from gateway.observability import Metrics
from gateway.providers import Provider, build_providers
from gateway.redaction import Redactor
from gateway.routing import Router, build_routes
from gateway.server.admission import admission_middleware, rate_limit_headers
from gateway.server.app_state import (
    GATEWAY_KEYS,
    METRICS,
    PROVIDERS,
    REDACTOR,
    ROUTER,
    SERVER_CONTEXT,
    SETTINGS,
    STORE,
)
from gateway.server.auth import GatewayKeys
from gateway.server.circuits import watch_circuits
from gateway.server.cors import CorsPolicy, cors_middlewares, send_cors_headers
from gateway.server.deployments import DeploymentMetrics
from gateway.server.handlers import (
    api_handler,
    follow_up_handler,
    get_model,
    healthz,
    list_models,
    metrics_handler,
    readyz,
    refuse_while_draining,
)
from gateway.server.heap import HeapTrimmer, malloc_trim
from gateway.server.lifecycle import LIFECYCLE, Lifecycle, drain_middleware
from gateway.server.listener import ListenerSite, listening_socket
from gateway.server.middlewares import request_id_middleware
from gateway.server.request_body import defer_continue
from gateway.server.request_head import request_head_middleware
from gateway.server.resumable import stream_runs
from gateway.server.runner import GatewayRunner
from gateway.server.shared_state import build_store, store_lifecycle
from gateway.server.stream_resume import cancel_stream, resume_stream
from gateway.server.tracing import tracing_lifecycle, tracing_middleware
from gateway.settings import GatewaySettings
from gateway.state import StateStore
from gateway.streaming import Context

__all__ = ["RUNNER_OPTIONS", "GatewayRunner", "create_app", "create_metrics_app", "start_server"]


#: How every gateway app is served: a client that disconnects cancels its handler.
RUNNER_OPTIONS: dict[str, Any] = {
    "handler_cancellation": True,
    "access_log": None,
    "shutdown_timeout": 5.0,
}


def create_app(
    settings: GatewaySettings,
    *,
    providers: Mapping[str, Provider] | None = None,
    metrics: Metrics | None = None,
    store: StateStore | None = None,
) -> web.Application:
    """A gateway application; `providers` replaces the ones built from settings (tests);
    `store` holds its limits and circuits (default: `build_store(settings)` - a `RedisStore`
    with `state.redis_url`, else a `MemoryStore` of this process - closed when the app stops;
    a store given is used as it was made, and its maker closes it)."""
    metrics = metrics or Metrics()
    cors = CorsPolicy.from_settings(settings.cors)  # None: no origins, no CORS headers at all
    app = web.Application(
        middlewares=[
            request_id_middleware,
            tracing_middleware(settings.tracing),  # a relayed request's span, or its traceparent
            request_head_middleware,
            *cors_middlewares(cors),  # preflights, answered before drain and admission
            drain_middleware(refuse_while_draining),
            admission_middleware,
        ],
        client_max_size=settings.limits.max_request_bytes,
    )
    redactor = Redactor(settings.secret_values())
    providers = dict(providers) if providers is not None else build_providers(settings, redactor)
    app[SETTINGS] = settings
    app[REDACTOR] = redactor
    app[PROVIDERS] = providers
    owned = store is None
    if store is None:
        store = build_store(settings)
    app[STORE] = store
    app[ROUTER] = Router(build_routes(settings, providers, store, DeploymentMetrics(metrics)))
    app[METRICS] = metrics
    watch_circuits(app[ROUTER], store, app[METRICS])
    app[GATEWAY_KEYS] = GatewayKeys.from_settings(settings.auth)
    app[LIFECYCLE] = Lifecycle()
    app.on_response_prepare.append(rate_limit_headers)
    send_cors_headers(app, cors)
    app.cleanup_ctx.append(tracing_lifecycle(settings.tracing))  # before the store's calls
    app.cleanup_ctx.append(store_lifecycle(owned))
    app.cleanup_ctx.append(_server_context)
    app.cleanup_ctx.append(_provider_lifecycle)
    app.cleanup_ctx.append(stream_runs)  # stopped first: before the providers and the store
    app.cleanup_ctx.append(_heap_trimming)
    # Every API path also without `/v1` (contract section 1): SDKs configured with a bare
    # base URL call `/chat/completions`.
    for api in APIS:
        handler = api_handler(api)
        for path in (api.path, api.path.removeprefix("/v1")):
            app.router.add_post(path, handler, expect_handler=defer_continue)
    for follow_up in RESPONSES_FOLLOW_UPS:
        handler = follow_up_handler(follow_up)
        for path in (follow_up.path, follow_up.path.removeprefix("/v1")):
            app.router.add_route(follow_up.method, path, handler)
    for prefix in ("/v1", ""):
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_get(prefix + "/models/{model_id:.+}", get_model)
        app.router.add_get(prefix + "/streams/{stream_id}", resume_stream)
        app.router.add_delete(prefix + "/streams/{stream_id}", cancel_stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if settings.metrics.enabled and settings.metrics.listen is None:
        app.router.add_get("/metrics", metrics_handler)
    return app


def create_metrics_app(app: web.Application) -> web.Application:
    """The app of the separate metrics listener: `/metrics` of `app`, nothing else."""
    settings = app[SETTINGS]
    metrics_app = web.Application(
        middlewares=[request_id_middleware, request_head_middleware],
    )
    metrics_app[SETTINGS] = settings
    metrics_app[METRICS] = app[METRICS]
    metrics_app[REDACTOR] = app[REDACTOR]
    metrics_app[GATEWAY_KEYS] = app[GATEWAY_KEYS]
    metrics_app.router.add_get("/metrics", metrics_handler)
    return metrics_app


async def _server_context(app: web.Application) -> AsyncIterator[None]:
    app[SERVER_CONTEXT] = Context()
    yield
    app[SERVER_CONTEXT].close()


async def _heap_trimming(app: web.Application) -> AsyncIterator[None]:
    """Memory that ended requests freed goes back to the system (`gateway.server.heap`)."""
    store = app[STORE]
    trimmer = HeapTrimmer(lambda: store.in_flight, trim=malloc_trim())
    trimmer.start()
    yield
    trimmer.stop()


async def _provider_lifecycle(app: web.Application) -> AsyncIterator[None]:
    providers = app[PROVIDERS].values()
    for provider in providers:
        await provider.start()
    yield
    for provider in providers:
        await provider.aclose()


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving `app` on `host`:`port` (0: any free port) as a worker serves it (a
    `ListenerSite`); returns the runner (to `cleanup()`, which closes the socket) and the bound
    port."""
    sock = listening_socket(host, port)
    try:
        runner = GatewayRunner(app, **RUNNER_OPTIONS)
        await runner.setup()
        site = ListenerSite(runner, sock)
        await site.start()
    except BaseException:
        sock.close()
        raise
    return runner, site.port
