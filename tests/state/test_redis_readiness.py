"""`/readyz` follows Redis where Redis is required (`state.on_error: closed`): 503 while it
does not answer, ready again once it does; with `open` (or without Redis) readiness ignores
it. The check is cached: a burst of probes costs at most one `PING` a second."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import RunningGateway
from tests.observability.scrape import total
from tests.state.redis_gateways import Replicas
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer

MODEL = "m"


async def readiness(client: aiohttp.ClientSession, gw: RunningGateway) -> tuple[int, str]:
    async with client.get(f"{gw.url}/readyz") as reply:
        return reply.status, (await reply.json())["status"]


async def until_ready_is(
    client: aiohttp.ClientSession, gw: RunningGateway, status: int
) -> tuple[int, str]:
    """Poll `/readyz` until it answers `status` (a hang guard of 20 s, not a timing bound)."""
    async with asyncio.timeout(20):
        while (answer := await readiness(client, gw))[0] != status:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # polling a server: nothing here to wait on
        return answer


async def test_closed_policy_turns_unready_while_redis_is_down_and_ready_when_it_is_back(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    (gw,) = await replicas(1, (MODEL,), state={"on_error": "closed"})
    assert await readiness(client, gw) == (200, "ready")

    redis.kill()
    assert await until_ready_is(client, gw, 503) == (503, "redis_unavailable")

    redis.start()
    assert await until_ready_is(client, gw, 200) == (200, "ready")


async def test_open_policy_stays_ready_without_redis(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    (gw,) = await replicas(1, (MODEL,), state={"on_error": "open"})
    redis.kill()
    for _ in range(3):
        assert await readiness(client, gw) == (200, "ready")
        await asyncio.sleep(0.6)
    assert total(gw, "gateway_redis_call_seconds_count", operation="flush") == 0


async def test_a_burst_of_probes_costs_at_most_one_ping_a_second(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    (gw,) = await replicas(1, (MODEL,), state={"on_error": "closed"})
    started = asyncio.get_running_loop().time()
    answers = []
    for _ in range(5):
        answers += await asyncio.gather(*(readiness(client, gw) for _ in range(20)))
        await asyncio.sleep(0.1)
    elapsed = asyncio.get_running_loop().time() - started

    assert set(answers) == {(200, "ready")}
    pings = total(gw, "gateway_redis_call_seconds_count", operation="flush")
    assert 1 <= pings <= int(elapsed) + 1, (pings, elapsed)
