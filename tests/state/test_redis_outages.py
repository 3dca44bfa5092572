"""Redis killed, restarted and paused under traffic: no request is stuck on it.

With `state.on_error: open` every request is still answered while Redis is gone, and each
fallback is counted; with `closed` a request that needs Redis gets 503 at once. A restarted
Redis is shared again from the next requests on; a paused one (SIGSTOP: connections accepted,
nothing answered) costs each request its budget, then the fallback. The only time limits here
are hang guards."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import RunningGateway
from tests.observability.scrape import total
from tests.state.redis_gateways import Replicas, shared
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.redis_server import RedisServer

KEY = "gw-key-through-the-outage"
MODEL = "m"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
LIMITS = {"keys": [KEY], "requests_per_minute_per_key": 10_000, "max_streams_per_key": 50}


async def ask(client: aiohttp.ClientSession, gw: RunningGateway) -> int:
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=HEADERS) as reply:
        await reply.read()
        return reply.status


async def traffic(client: aiohttp.ClientSession, gw: RunningGateway, count: int) -> list[int]:
    """`count` requests, ten at a time, within a generous hang guard."""
    async with asyncio.timeout(60):
        statuses: list[int] = []
        for _ in range(count // 10):
            statuses += await asyncio.gather(*(ask(client, gw) for _ in range(10)))
        return statuses


async def test_redis_killed_under_traffic_open_admits_and_counts_the_fallback(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.json_completion())
    (gw,) = await replicas(1, (MODEL,), auth=LIMITS)
    before = asyncio.gather(*(ask(client, gw) for _ in range(20)))

    redis.kill()  # SIGKILL while those are in flight
    statuses = [*await asyncio.wait_for(before, 60), *await traffic(client, gw, 40)]

    assert set(statuses) == {200}
    assert total(gw, "gateway_state_fallbacks_total", operation="admit") > 0
    assert total(gw, "gateway_redis_errors_total") > 0


async def test_redis_down_with_on_error_closed_refuses_with_503(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.json_completion())
    (gw,) = await replicas(1, (MODEL,), auth=LIMITS, state={"on_error": "closed"})
    assert await ask(client, gw) == 200

    redis.kill()
    statuses = await traffic(client, gw, 20)

    assert set(statuses) == {503}
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=HEADERS) as reply:
        body = await reply.json()
    assert reply.headers["Retry-After"] == "1"
    assert body["error"]["code"] == "gateway_overloaded"
    assert "shared state (Redis) is unavailable" in body["error"]["message"]
    assert total(gw, "gateway_state_fallbacks_total", operation="admit") == 21


async def test_a_restarted_redis_is_shared_again(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.json_completion())
    limits = {"keys": [KEY], "requests_per_minute_per_key": 3}
    one, two = await replicas(2, (MODEL,), auth=limits)
    assert await ask(client, one) == 200
    redis.kill()
    assert {await ask(client, gw) for gw in (one, two)} == {200}  # each counts on its own

    redis.start()  # empty: a Redis without persistence, restarted
    await shared(one)
    await shared(two)
    statuses = [await ask(client, gw) for gw in (one, two) * 3]

    assert statuses == [200, 200, 200, 429, 429, 429]  # three per minute in total again


async def test_a_paused_redis_costs_a_request_its_budget_then_the_fallback(
    replicas: Replicas, redis: RedisServer, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.json_completion())
    (gw,) = await replicas(1, (MODEL,), auth=LIMITS, state={"redis_timeout": 0.1})
    assert await ask(client, gw) == 200

    redis.pause()  # SIGSTOP: the socket still accepts, nothing answers
    try:
        statuses = await traffic(client, gw, 30)
    finally:
        redis.resume()
    await shared(gw)
    after = await traffic(client, gw, 10)

    assert set(statuses) == set(after) == {200}
    assert total(gw, "gateway_state_fallbacks_total", operation="admit") >= 10
    assert total(gw, "gateway_redis_errors_total", operation="admit") >= 10
    fallbacks = total(gw, "gateway_state_fallbacks_total", operation="admit")
    assert await traffic(client, gw, 10) == [200] * 10
    assert total(gw, "gateway_state_fallbacks_total", operation="admit") == fallbacks  # shared
