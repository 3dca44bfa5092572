"""Deployment pools as the openai SDK sees them: one route, several deployments of its model.

The deployments here share the fake upstream's URL and differ by key (as several keys of one
upstream do), so the fake tells them apart by the `Authorization` header each call carried;
a dead deployment has a port nothing listens on. Spreads are judged by counts over many
requests, never by time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web

from gateway.server.app_state import METRICS
from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.chain_gateway import FAST_RETRY, closed_port
from tests.support.fake_upstream import DONE, FakeUpstream, UpstreamCall

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
WORDS = ["The ", "quick ", "fox."]
KEYS = {name: f"sk-pool-{name}-canary-0a1b2c3d" for name in ("a", "b", "c")}


def key_of(call: UpstreamCall) -> str:
    """The deployment a call went to, by the key it carried."""
    bearer = call.headers["Authorization"].removeprefix("Bearer ")
    return next(name for name, key in KEYS.items() if key == bearer)


def by_key(behaviours: dict[str, fake.Behaviour], default: fake.Behaviour) -> fake.Behaviour:
    """Answer each deployment (by its key) its own way."""

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        return await behaviours.get(key_of(call), default)(request, call)

    return behave


def deployment(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "api_key": KEYS[name], **fields}


def pool_settings(
    upstream: FakeUpstream, *deployments: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    backup = {"upstream": "backup", "model": "backup-model"}
    return {
        "upstreams": {
            "pool": {"base_url": upstream.base_url, "deployments": list(deployments), **fields},
            "backup": {"base_url": upstream.base_url, "api_key": "sk-backup-canary-9e8d7c6b"},
        },
        "routes": [{"model": "gpt", "targets": [{"upstream": "pool", "model": "gpt"}, backup]}],
        "retry": FAST_RETRY,
        "heartbeat": None,
    }


@pytest.fixture
async def sdk_for(start_gateway: StartGateway) -> AsyncIterator[Any]:
    clients: list[openai.AsyncOpenAI] = []

    async def make(settings: dict[str, Any]) -> tuple[openai.AsyncOpenAI, RunningGateway]:
        gateway = await start_gateway(None, **settings)
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key="client", max_retries=0)
        clients.append(client)
        return client, gateway

    yield make
    for client in clients:
        await client.close()


async def chat_text(sdk: openai.AsyncOpenAI) -> str:
    stream = await sdk.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts)


def sample(gateway: RunningGateway, name: str, **labels: str) -> float | None:
    value = gateway.app[METRICS].registry.get_sample_value(name, labels)
    return None if value is None else float(value)


def answers() -> fake.Behaviour:
    return fake.sse_stream(fake.openai_chunks(WORDS, model="gpt"))


async def test_weighted_spreads_the_requests_by_weight(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script("gpt", answers())
    sdk, _ = await sdk_for(
        pool_settings(upstream, deployment("a", weight=3), deployment("b", weight=1))
    )

    for _ in range(200):
        assert await chat_text(sdk) == "".join(WORDS)

    counts = Counter(key_of(call) for call in upstream.requests)
    assert sum(counts.values()) == 200  # each request one call: none failed
    assert 150 - 25 <= counts["a"] <= 150 + 25  # 3:1, within about 4 standard deviations


async def test_least_in_flight_spreads_concurrent_streams_evenly_whatever_the_weights(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    release = asyncio.Event()
    first, *rest = fake.openai_chunks(WORDS, model="gpt")

    async def held(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(first)
        await release.wait()
        for chunk in [*rest, DONE]:
            await response.write(chunk)
        await response.write_eof()
        return response

    upstream.script("gpt", held)
    sdk, gateway = await sdk_for(
        pool_settings(
            upstream,
            deployment("a", weight=5),
            deployment("b", weight=1),
            deployment("c", weight=1),
            strategy="least_in_flight",
        )
    )

    streams = []
    for _ in range(9):
        streams.append(
            await sdk.chat.completions.create(model="gpt", messages=MESSAGES, stream=True)
        )
        await upstream.next_call()  # its deployment holds it: in flight
    counts = Counter(key_of(call) for call in upstream.requests)
    in_flight = sample(
        gateway, "gateway_deployment_in_flight", upstream="pool", deployment="b", model="gpt"
    )
    release.set()
    texts = ["".join([c.choices[0].delta.content or "" async for c in s]) for s in streams]

    assert counts == {"a": 3, "b": 3, "c": 3}
    assert in_flight == 3
    assert texts == ["".join(WORDS)] * 9
    labels = {"upstream": "pool", "deployment": "b", "model": "gpt"}
    assert sample(gateway, "gateway_deployment_in_flight", **labels) == 0
    assert sample(gateway, "gateway_deployment_calls_total", **labels, outcome="succeeded") == 3


async def test_lowest_latency_prefers_the_fast_deployment_once_each_was_tried(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    fast = answers()

    async def slow(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        await asyncio.sleep(0.3)  # before its headers: a slow first token
        return await fast(request, call)

    upstream.script("gpt", by_key({"b": slow}, fast))
    sdk, _ = await sdk_for(
        pool_settings(
            upstream,
            deployment("a", weight=1),
            deployment("b", weight=10),  # latency wins over weight
            strategy="lowest_latency",
        )
    )

    for _ in range(2):  # warm-up: the untried deployment goes first, so each is tried once
        await chat_text(sdk)
    warm = Counter(key_of(call) for call in upstream.requests)
    for _ in range(10):
        assert await chat_text(sdk) == "".join(WORDS)

    assert warm == {"a": 1, "b": 1}
    assert [key_of(call) for call in upstream.requests[2:]] == ["a"] * 10


async def test_a_dead_deployment_stops_getting_traffic_once_its_circuit_opens(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script("gpt", answers())
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    settings = pool_settings(
        upstream, deployment("a"), deployment("b", base_url=dead), deployment("c")
    )
    sdk, gateway = await sdk_for({**settings, "circuit": {"failures": 2, "cooldown": 600}})

    for _ in range(30):
        assert await chat_text(sdk) == "".join(WORDS)

    labels = {"upstream": "pool", "deployment": "b", "model": "gpt"}
    assert sample(gateway, "gateway_deployment_calls_total", **labels, outcome="failed") == 2
    assert sample(gateway, "gateway_deployment_circuit_state", **labels) == 2  # open
    counts = Counter(key_of(call) for call in upstream.requests)
    assert sum(counts.values()) == 30  # the others served every request
    assert set(counts) <= {"a", "c"}
    assert not upstream.calls_for("backup-model")  # never left the pool
    text = gateway.app[METRICS].exposition()[0].decode()
    assert 'gateway_circuit_state{target="pool/gpt@b"} 2.0' in text
    assert "127.0.0.1" not in text  # labels from the configuration only: no URLs...
    assert not any(key in text for key in KEYS.values())  # ...and no keys


async def test_a_rate_limited_key_fails_over_to_the_next_key_at_once(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    limited = fake.status(
        429, body=fake.openai_error("Rate limit reached", type="requests"),
        headers={"Retry-After": "1"},
    )  # fmt: skip
    upstream.script("gpt", by_key({"a": limited}, answers()))
    settings = pool_settings(upstream)
    settings["upstreams"]["pool"] = {
        "base_url": upstream.base_url,
        "api_keys": [KEYS["a"], KEYS["b"]],
    }
    sdk, gateway = await sdk_for({**settings, "circuit": {"failures": 3, "cooldown": 600}})

    for _ in range(20):
        assert await chat_text(sdk) == "".join(WORDS)

    keys = [key_of(call) for call in upstream.requests]
    assert keys.count("b") == 20  # every request answered by the second key
    assert 1 <= keys.count("a") <= 3  # never retried; skipped once its circuit opened
    assert "a" not in [keys[i] for i in range(1, len(keys)) if keys[i - 1] == "a"]
    labels = {"upstream": "pool", "deployment": "key-1", "model": "gpt"}
    assert sample(gateway, "gateway_deployment_calls_total", **labels, outcome="failed") == (
        keys.count("a")
    )


async def test_a_pool_whose_deployments_all_fail_moves_down_the_chain(
    upstream: FakeUpstream, sdk_for: Any
) -> None:
    upstream.script("gpt", fake.status(503))
    upstream.script("backup-model", fake.sse_stream(fake.openai_chunks(["backup"])))
    sdk, _ = await sdk_for(pool_settings(upstream, deployment("a"), deployment("b")))

    assert await chat_text(sdk) == "backup"

    pool_calls = upstream.calls_for("gpt")
    # Each deployment once, the last one tried with the route's retries (3 calls in all).
    assert len(pool_calls) == 1 + FAST_RETRY["attempts"]
    first, *last = [key_of(call) for call in pool_calls]
    assert set(last) == {"a", "b"} - {first}
    assert len(upstream.calls_for("backup-model")) == 1
