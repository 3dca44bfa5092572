"""Fixtures of the shared-state tests: a real Redis per test, and gateways sharing it
(`tests.state.redis_gateways`)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from gateway.server import create_app, start_server
from tests.conftest import RunningGateway, gateway_settings
from tests.state.redis_gateways import Replicas
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer, redis_server_or_skip

_PREFIXES = itertools.count()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A Redis of the test's own: it may be killed, paused and restarted."""
    yield from redis_server_or_skip()


@pytest.fixture
async def replicas(redis: RedisServer, upstream: FakeUpstream) -> AsyncIterator[Replicas]:
    runners: list[web.AppRunner] = []
    prefix = f"replicas-{next(_PREFIXES)}:"

    async def start(count: int, models: tuple[str, ...], **overrides: Any) -> list[RunningGateway]:
        state = {
            "redis_url": redis.url,
            "redis_prefix": prefix,
            # A budget per Redis call that a loaded CI machine keeps: over the default 50 ms a
            # call falls back (counting per replica, or 503 with `on_error: closed`), and these
            # tests are about sharing and outages, not that budget; a test of it sets its own.
            "redis_timeout": 1.0,
            **overrides.pop("state", {}),
        }
        gateways = []
        for _ in range(count):
            settings = gateway_settings(upstream, models, state=state, **overrides)
            app = create_app(settings)
            runner, port = await start_server(app, "127.0.0.1", 0)
            runners.append(runner)
            gateways.append(RunningGateway(f"http://127.0.0.1:{port}", app, settings))
        return gateways

    yield start
    for runner in reversed(runners):
        await runner.cleanup()
