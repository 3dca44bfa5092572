"""Gateways on real sockets sharing one real Redis, for the tests of the shared state.

The fixtures (`tests/state/conftest.py`): `redis`, a Redis of the test's own; `replicas(n,
models, **overrides)`, which starts `n` gateways (`create_app` with `state.redis_url` set: each
builds its own `RedisStore`), all under one key prefix of the test's own, in front of the fake
upstream, stopped at the end of the test. `shared(gw)` waits until a gateway's Redis link
answers again (after an outage: its commands reach Redis from then on). `gateway_process`
runs a gateway as a process of its own (`python -m gateway`), for a test to SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from gateway.server.app_state import STORE
from gateway.state.redis_link import RedisUnavailable
from gateway.state.redis_store import RedisStore
from tests.conftest import RunningGateway
from tests.server.test_drain import REPO, _ready, free_port

__all__ = ["Replicas", "gateway_process", "redis_store_of", "shared"]

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


@contextlib.asynccontextmanager
async def gateway_process(
    config: dict[str, Any], redis_url: str, directory: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A gateway process with `config` (its YAML file and log in `directory`) sharing the
    Redis at `redis_url`, ready: its URL and process, killed at the end if still running."""
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_CONFIG=str(path), GATEWAY_LISTEN__PORT=str(port))
    env["GATEWAY_STATE__REDIS_URL"] = redis_url
    log = (directory / "gateway.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", cwd=REPO, env=env, stdout=log, stderr=log
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(20):
            while not await _ready(url):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.05)
        yield url, process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
