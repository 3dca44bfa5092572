"""How a gateway app is served: `GatewayRunner`, an `AppRunner` whose connections are
`GatewayRequestHandler`s (`gateway.server.connection`).

aiohttp has no hook for the protocol class of an app's connections, so the runner uses only
its public surface: `AppRunner.setup()` starts the app and makes its `web.Server` (the app's
request handler and request factory, the runner's handler cancellation), and the runner's
`server` - the protocol factory every site serves (`loop.create_server(runner.server, ...)`
in aiohttp's sites, `connect_accepted_socket` in `ListenerSite`) - is a `GatewayServer` made
from that server's public attributes, with each request's writer setting the `Server` header
(`with_server_header`). A `GatewayServer` keeps its connections with the app's server, so the
runner's own `cleanup()` - aiohttp's, unchanged: stop the sites, close idle connections, the
app's shutdown, wait for busy connections up to `shutdown_timeout`, the app's cleanup - closes
them like any app's.

The connections' options are the runner's keyword options for `RequestHandler` (for example
`access_log=None`), then `debug` as aiohttp sets it (the loop's debug mode), then the gateway's:
`handler_options` of the app's `SETTINGS` and `METRICS` (head deadline, head limits, write
stall, `Server` header, the metrics its rejections count in). They are read from the app's
typed state because aiohttp keeps an app's `handler_args` to itself; so every app a
`GatewayRunner` serves holds `SETTINGS` and `METRICS` (`create_app`, `create_metrics_app`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.server.app_state import METRICS, SETTINGS
from gateway.server.connection import GatewayRequestHandler, handler_options, with_server_header

__all__ = ["GatewayRunner", "GatewayServer"]


class GatewayServer(web.Server):
    """The protocol factory of a gateway app's sites: `GatewayRequestHandler`s with
    `connection_options`, serving requests through `app_server`'s handler, request factory
    (its writers set the `Server` header) and handler cancellation. Its connections are kept
    by `app_server`, whose shutdown closes them."""

    def __init__(self, app_server: web.Server, connection_options: Mapping[str, Any]) -> None:
        super().__init__(
            app_server.request_handler,
            request_factory=with_server_header(app_server.request_factory),
            handler_cancellation=app_server.handler_cancellation,
        )
        self.app_server = app_server
        self.connection_options = dict(connection_options)

    def __call__(self) -> GatewayRequestHandler:
        # Called by the loop for each accepted connection: the running loop is the server's.
        loop = asyncio.get_running_loop()
        return GatewayRequestHandler(self, loop=loop, **self.connection_options)

    @property
    def connections(self) -> list[web.RequestHandler]:
        return self.app_server.connections

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        self.app_server.connection_made(handler, transport)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        self.app_server.connection_lost(handler, exc)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` serving a gateway app through a `GatewayServer` (see the module)."""

    __slots__ = ("_gateway_options", "_gateway_server")

    def __init__(
        self,
        app: web.Application,
        *,
        handle_signals: bool = False,
        shutdown_timeout: float = 60.0,
        handler_cancellation: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(
            app,
            handle_signals=handle_signals,
            shutdown_timeout=shutdown_timeout,
            handler_cancellation=handler_cancellation,
            **options,
        )
        self._gateway_options = options
        self._gateway_server: GatewayServer | None = None

    @property
    def server(self) -> web.Server | None:
        """The protocol factory of this runner's sites: None before `setup()` and after
        `cleanup()`."""
        return self._gateway_server

    async def setup(self) -> None:
        await super().setup()
        app_server = super().server
        assert app_server is not None
        settings = self.app[SETTINGS]
        limits = handler_options(
            settings.limits, self.app[METRICS], server_header=settings.server.header
        )
        debug = asyncio.get_running_loop().get_debug()
        options = {**self._gateway_options, "debug": debug, **limits}
        self._gateway_server = GatewayServer(app_server, options)

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self._gateway_server = None
