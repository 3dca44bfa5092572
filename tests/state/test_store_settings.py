"""`state.redis_url` picks the store: from the environment only (it may hold a password, which
never reaches the config file, an error message, a log line or the metrics); with it
`create_app` builds a `RedisStore`, without it a `MemoryStore`, and start-up says which. A key's
tokens per minute come from `auth` like its requests per minute."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict
from structlog.testing import capture_logs

from gateway.server.app_state import STORE
from gateway.server.auth import GatewayKeys
from gateway.server.shared_state import announce_store
from gateway.settings import ConfigError, load_settings
from gateway.settings.auth import hash_key
from gateway.state import MemoryStore
from gateway.state.redis_store import RedisStore
from tests.conftest import StartGateway
from tests.state.redis_gateways import Replicas
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer

PASSWORD = "redis-password-canary-51c0"


def test_the_redis_url_comes_from_the_environment_and_is_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"redis://:{PASSWORD}@redis.internal:6380/2"
    monkeypatch.setenv("GATEWAY_STATE__REDIS_URL", url)
    monkeypatch.setenv("GATEWAY_STATE__ON_ERROR", "closed")

    settings = load_settings()

    assert settings.state.redis_url is not None
    assert settings.state.redis_url.get_secret_value() == url
    assert settings.state.on_error == "closed"
    assert PASSWORD not in repr(settings)
    assert PASSWORD in settings.secret_values()  # the redactor keeps it out of every answer


def test_a_redis_url_in_the_config_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"state:\n  redis_url: redis://:{PASSWORD}@redis:6379/0\n")

    with pytest.raises(ConfigError) as refused:
        load_settings(config)

    assert "GATEWAY_STATE__REDIS_URL" in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_a_redis_url_of_another_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_STATE__REDIS_URL", f"http://:{PASSWORD}@redis:6379")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "redis://" in str(refused.value)
    assert PASSWORD not in str(refused.value)


async def test_without_redis_start_up_says_the_state_is_per_process(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway()
    with capture_logs() as logs:
        announce_store(gw.app)  # what a serving worker says once it listens

    assert isinstance(gw.app[STORE], MemoryStore)
    (line,) = [line for line in logs if line["event"] == "state_store"]
    assert line["shared"] is False
    assert line["note"] == "limits, circuits and response owners are per process"


async def test_with_redis_start_up_names_it_without_its_password(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"  # redis-server has no password: ignored
    (gw,) = await replicas(1, (), state={"redis_url": url})
    with capture_logs() as logs:
        announce_store(gw.app)

    assert isinstance(gw.app[STORE], RedisStore)
    (line,) = [line for line in logs if line["event"] == "state_store"]
    assert (line["shared"], line["redis"]) == (True, f"127.0.0.1:{redis.port}/0")
    assert PASSWORD not in repr(logs)
    async with client.get(f"{gw.url}/metrics") as reply:
        assert PASSWORD not in await reply.text()


def test_a_keys_tokens_per_minute_come_from_auth() -> None:
    big = {"name": "big", "key_hash": hash_key("gw-key-big"), "tokens_per_minute": 50_000}
    auth = {"keys": ["gw-key-one"], "tokens_per_minute_per_key": 1000, "clients": [big]}
    keys = GatewayKeys.from_settings(load_settings(auth=auth).auth)

    found = [keys.identify(CIMultiDict(Authorization=f"Bearer gw-key-{n}")) for n in ("one", "big")]

    assert [client.tokens_per_minute if client else None for client in found] == [1000, 50_000]
