"""The aiohttp application factory and the server runner.

`create_app(settings)` builds everything a gateway needs (providers, router, routes) with no
module-level state, so tests build as many independent apps as they like, each with its own
settings and providers. `serve()` runs one with handler cancellation on: a client that
disconnects cancels its handler, which is how a vanished client closes its upstream at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from gateway.providers import Provider, build_providers
from gateway.routing import Router
from gateway.server.handlers import chat_completions, healthz, list_models, readyz
from gateway.server.keys import PROVIDERS, ROUTER, SERVER_CONTEXT, SETTINGS
from gateway.server.middlewares import request_id_middleware
from gateway.settings import GatewaySettings
from gateway.streaming import Context

__all__ = ["create_app", "serve", "start_server"]


def create_app(
    settings: GatewaySettings, *, providers: Mapping[str, Provider] | None = None
) -> web.Application:
    """A gateway application; `providers` replaces the ones built from settings (tests)."""
    app = web.Application(
        middlewares=[request_id_middleware],
        client_max_size=settings.limits.max_request_bytes,
    )
    providers = dict(providers) if providers is not None else build_providers(settings)
    app[SETTINGS] = settings
    app[PROVIDERS] = providers
    app[ROUTER] = Router(settings, providers)
    app.cleanup_ctx.append(_server_context)
    app.cleanup_ctx.append(_provider_lifecycle)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _server_context(app: web.Application) -> AsyncIterator[None]:
    app[SERVER_CONTEXT] = Context()
    yield
    app[SERVER_CONTEXT].close()


async def _provider_lifecycle(app: web.Application) -> AsyncIterator[None]:
    providers = app[PROVIDERS].values()
    for provider in providers:
        await provider.start()
    yield
    for provider in providers:
        await provider.aclose()


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving `app`; returns the runner (to `cleanup()`) and the bound port."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[-1][1])


def serve(settings: GatewaySettings) -> None:
    """Run the gateway until interrupted (SIGINT/SIGTERM)."""
    web.run_app(
        create_app(settings),
        host=settings.listen.host,
        port=settings.listen.port,
        handler_cancellation=True,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
    )
