"""Two gateways sharing one real Redis (`state.redis_url`) share each key's limits and every
target's circuit: a key's requests and tokens per minute hold in total across both, not per
replica; a circuit opened through one is skipped by the other. Real sockets, a real
`redis-server`, the fake upstream."""

from __future__ import annotations

import aiohttp

from tests.conftest import RunningGateway
from tests.observability.scrape import total, value
from tests.state.redis_gateways import Replicas, redis_store_of
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

KEY = "gw-key-shared-by-two-replicas"
MODEL = "m"
HEADERS = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


async def ask(client: aiohttp.ClientSession, gw: RunningGateway) -> int:
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=HEADERS) as reply:
        await reply.read()
        return reply.status


async def test_a_keys_requests_per_minute_hold_in_total_across_two_replicas(
    replicas: Replicas, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.json_completion())
    one, two = await replicas(2, (MODEL,), auth={"keys": [KEY], "requests_per_minute_per_key": 4})

    statuses = [await ask(client, gw) for gw in (one, two) * 5]

    assert statuses.count(200) == 4  # not 4 on each
    assert statuses[:4] == [200] * 4
    assert set(statuses[4:]) == {429}
    assert total(one, "gateway_redis_call_seconds_count", operation="admit") == 5
    assert total(one, "gateway_state_fallbacks_total") == 0


async def test_a_keys_tokens_per_minute_hold_in_total_across_two_replicas(
    replicas: Replicas, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.json_completion("Hello!"))  # 5 input + 1 output tokens
    one, two = await replicas(2, (MODEL,), auth={"keys": [KEY], "tokens_per_minute_per_key": 20})

    statuses = []
    for gw in (one, two) * 3:
        statuses.append(await ask(client, gw))
        await redis_store_of(gw).link.flush()  # its charge is in Redis before the next request

    assert statuses == [200, 200, 200, 200, 429, 429]  # 20, 14, 8, 2 left; then -4
    assert total(two, "gateway_redis_call_seconds_count", operation="charge") == 2


async def test_a_circuit_opened_through_one_replica_is_skipped_by_the_other(
    replicas: Replicas, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.status(500))
    route = {
        "model": MODEL,
        "targets": [{"upstream": "fake"}, {"upstream": "mock", "model": "mock"}],
    }
    one, two = await replicas(
        2, (), routes=[route], circuit={"failures": 2, "cooldown": 60}, auth={"keys": [KEY]}
    )

    assert [await ask(client, one) for _ in range(2)] == [200, 200]  # failed over to the mock
    await redis_store_of(one).link.flush()
    calls = len(upstream.requests)
    assert calls == 2

    assert [await ask(client, two) for _ in range(3)] == [200, 200, 200]

    assert len(upstream.requests) == calls  # the other replica never called the open target
    backend = redis_store_of(two).backends()[0]
    assert backend.name == "fake/*"
    assert int(backend.circuit_state) == 2
    assert value(two, "gateway_circuit_state", target="fake/*") == 2  # its watcher heard it
