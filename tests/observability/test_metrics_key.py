"""`/metrics` and gateway keys: `metrics.require_key` unset means auto - a key is asked for
whenever gateway keys are configured and `/metrics` is on the main listener, not on its own
`metrics.listen`; `false` opts out explicitly, `true` asks always."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from gateway.server import create_app
from gateway.server.app import RUNNER_OPTIONS, GatewayRunner, create_metrics_app
from gateway.settings import GatewaySettings
from tests.conftest import StartGateway

KEY = "gw-metrics-key"


@pytest.mark.parametrize(
    ("metrics", "auth", "status"),
    [
        pytest.param({}, {"keys": [KEY]}, 401, id="auto-with-keys"),
        pytest.param({}, {}, 200, id="auto-without-keys"),
        pytest.param({"require_key": False}, {"keys": [KEY]}, 200, id="explicit-opt-out"),
        pytest.param({"require_key": True}, {"keys": [KEY]}, 401, id="explicit-on"),
    ],
)
async def test_metrics_on_the_main_listener_without_a_key(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    metrics: dict[str, object],
    auth: dict[str, object],
    status: int,
) -> None:
    gw = await start_gateway(None, metrics=metrics, auth=auth)

    async with client.get(f"{gw.url}/metrics") as response:
        assert response.status == status
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_metrics_with_the_key_is_served_when_one_is_required(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(None, auth={"keys": [KEY]})

    headers = {"Authorization": f"Bearer {KEY}"}
    async with client.get(f"{gw.url}/metrics", headers=headers) as response:
        assert response.status == 200
        assert "gateway_" in await response.text()


async def test_metrics_on_its_own_listener_needs_no_key_by_default(
    client: aiohttp.ClientSession,
) -> None:
    settings = GatewaySettings(
        auth={"keys": [KEY]}, metrics={"listen": {"host": "127.0.0.1", "port": 0}}
    )
    app = create_app(settings)
    runners = [GatewayRunner(app, **RUNNER_OPTIONS), GatewayRunner(create_metrics_app(app))]
    ports = []
    try:
        for runner in runners:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ports.append(runner.addresses[-1][1])
        main, metrics = ports
        async with client.get(f"http://127.0.0.1:{metrics}/metrics") as response:
            assert response.status == 200
            assert response.headers["Server"] == "sse-gateway"
        async with client.get(f"http://127.0.0.1:{main}/metrics") as response:
            assert response.status == 404  # only on its own listener
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def test_require_key_unset_is_auto() -> None:
    assert GatewaySettings().metrics.require_key is None
    keyed = GatewaySettings(auth={"keys": [KEY]})
    assert keyed.metrics.key_required(keys_configured=True)
    own = GatewaySettings(auth={"keys": [KEY]}, metrics={"listen": {"port": 9464}})
    assert not own.metrics.key_required(keys_configured=True)
