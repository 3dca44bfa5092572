"""`Lifecycle`: whether the gateway is serving or draining, and the requests still in flight.

The drain sequence (`gateway.server.serving.run_worker` drives it on SIGTERM/SIGINT):

1. `begin_drain()`: `/readyz` answers 503 so load balancers stop sending traffic; the caller
   stops the listener and closes idle keep-alive connections; a request that still arrives on
   a connection gets a retryable 503 `server_shutdown` (`drain_middleware`).
2. In-flight requests may finish on their own within the grace period (`wait_idle`).
3. Then the server context is cancelled with `ServerShutdown`: each remaining stream ends
   with one retryable `stream_interrupted`/`server_shutdown` error event and its upstream is
   closed - through the relay's normal error channel, nothing special-cased.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.apis import canonical_path

__all__ = ["LIFECYCLE", "Lifecycle", "drain_middleware"]


class Lifecycle:
    """Serving/draining state and the count of API requests in flight."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin_drain(self) -> None:
        self.draining = True

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no API request is in flight."""
        await self._idle.wait()


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def drain_middleware(
    refuse: Callable[[web.Request], web.StreamResponse],
) -> Middleware:
    """Counts the API requests in flight; while draining, answers new ones with `refuse`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not canonical_path(request.path).startswith("/v1/"):
            return await handler(request)
        lifecycle = request.app[LIFECYCLE]
        if lifecycle.draining:
            return refuse(request)
        lifecycle.request_started()
        try:
            return await handler(request)
        finally:
            lifecycle.request_ended()

    return middleware
