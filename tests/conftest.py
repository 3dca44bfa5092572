"""Suite-wide fixtures: a fake upstream, and gateways started on real sockets in front of it.

`start_gateway(...)` builds `GatewaySettings` from keyword overrides (by default one `fake`
upstream of kind `openai` pointing at the `upstream` fixture, and one route per model name
given), starts the app on 127.0.0.1 with handler cancellation on - exactly as `gateway` runs
it - and stops it at the end of the test.

Unless a test sets `retry`, its gateway calls each target once (`retry: {attempts: 1}`): a
test of what one upstream fault becomes sees that fault once, at once. The retry policy itself
(and its defaults) is tested where it is the subject (`tests/e2e/test_retries.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.server import create_app, start_server
from gateway.settings import GatewaySettings
from tests.support.fake_upstream import FakeUpstream

UPSTREAM_KEY = "sk-upstream-canary-7f3a9c1e"


@dataclass
class RunningGateway:
    url: str  # e.g. http://127.0.0.1:PORT
    app: web.Application
    settings: GatewaySettings

    @property
    def base_url(self) -> str:
        """The OpenAI SDK's base_url for this gateway."""
        return f"{self.url}/v1"


StartGateway = Callable[..., Awaitable[RunningGateway]]


def gateway_settings(
    upstream: FakeUpstream | None, models: tuple[str, ...] = (), **overrides: Any
) -> GatewaySettings:
    """Settings routing each of `models` to the fake upstream (same model name)."""
    values: dict[str, Any] = {}
    if upstream is not None:
        values["upstreams"] = {
            "fake": {"kind": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
            "mock": {"kind": "mock", "mock": {"chunk_delay": 0.0}},
        }
        values["routes"] = [{"model": model, "targets": [{"upstream": "fake"}]} for model in models]
    values["retry"] = {"attempts": 1}
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    runners: list[web.AppRunner] = []

    async def start(
        upstream: FakeUpstream | None = None, models: tuple[str, ...] = (), **overrides: Any
    ) -> RunningGateway:
        settings = gateway_settings(upstream, models, **overrides)
        app = create_app(settings)
        runner, port = await start_server(app, "127.0.0.1", 0)
        runners.append(runner)
        return RunningGateway(url=f"http://127.0.0.1:{port}", app=app, settings=settings)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for the gateway (closed before the gateway stops)."""
    async with aiohttp.ClientSession() as session:
        yield session
