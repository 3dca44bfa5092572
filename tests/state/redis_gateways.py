"""Gateways on real sockets sharing one real Redis, for the tests of the shared state.

The fixtures (`tests/state/conftest.py`): `redis`, a Redis of the test's own; `replicas(n,
models, **overrides)`, which starts `n` gateways (`create_app` with `state.redis_url` set: each
builds its own `RedisStore`), all under one key prefix of the test's own, in front of the fake
upstream, stopped at the end of the test. `shared(gw)` waits until a gateway's Redis link
answers again (after an outage: its commands reach Redis from then on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.server.app_state import STORE
from gateway.state.redis_link import RedisUnavailable
from gateway.state.redis_store import RedisStore
from tests.conftest import RunningGateway

__all__ = ["Replicas", "redis_store_of", "shared"]

Replicas = Callable[..., Awaitable[list[RunningGateway]]]


def redis_store_of(gw: RunningGateway) -> RedisStore:
    store = gw.app[STORE]
    assert isinstance(store, RedisStore)
    return store


async def shared(gw: RunningGateway) -> None:
    """Wait until `gw`'s Redis link answers (a hang guard of 20 s, not a timing assertion)."""
    link = redis_store_of(gw).link
    async with asyncio.timeout(20):
        while True:
            if not link.down:
                try:
                    await link.flush()
                    return
                except RedisUnavailable:
                    pass
            await asyncio.sleep(0.05)
