"""`ConnectionLimiter`: the bound on the connections to one upstream in use at once.

A call takes a place before it connects and gives it back when its response is closed. When
every place is taken, `acquire` waits for one at most its deadline (the call's `connect`
deadline: the time it may take to get connected at all), then raises a retryable 503
`GatewayOverloaded`, never hanging: an HTTP library's own pool would wait for ever, or give the
wait a connect timeout as if the upstream were unreachable.
"""

from __future__ import annotations

import asyncio

from gateway.errors import GatewayOverloaded
from gateway.state.lease import Lease

__all__ = ["ConnectionLimiter"]


class ConnectionLimiter:
    """At most `limit` places held at once; `acquire` returns a `Lease` on one of them."""

    __slots__ = ("_free", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = asyncio.Semaphore(limit)

    async def acquire(self, wait: float | None) -> Lease:
        """A place, at once if one is free, else within `wait` seconds (None: as long as it
        takes); `GatewayOverloaded` if none was freed in time."""
        if not self._free.locked():
            await self._free.acquire()  # free: returns at once
            return _Place(self._free)
        try:
            async with asyncio.timeout(wait):
                await self._free.acquire()
        except TimeoutError:
            raise GatewayOverloaded(
                f"all {self.limit} connections to the upstream stayed in use for {wait:g}s",
                retry_after="1",
            ) from None
        return _Place(self._free)


class _Place:
    """A `Lease` on one of a `ConnectionLimiter`'s places."""

    __slots__ = ("_free",)

    def __init__(self, free: asyncio.Semaphore) -> None:
        self._free: asyncio.Semaphore | None = free

    def release(self) -> None:
        free, self._free = self._free, None
        if free is not None:
            free.release()
