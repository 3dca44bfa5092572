"""An upstream's connection pool when it is full: a request waits at most its connect deadline
for a connection, then gets a 503 `gateway_overloaded` with `Retry-After` - never an indefinite
hang - while the streams holding the connections go on untouched."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from tests.conftest import UPSTREAM_KEY, StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import DONE, FakeUpstream, UpstreamCall

MODEL = "m"
CHAT = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def gated(gate: asyncio.Event) -> fake.Behaviour:
    answer = fake.sse_stream()

    async def behave(request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        await gate.wait()
        return await answer(request, call)

    return behave


async def test_full_upstream_pool_is_a_503_after_the_connect_deadline(
    upstream: FakeUpstream, start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    one_connection = {
        "kind": "openai",
        "base_url": upstream.base_url,
        "api_key": UPSTREAM_KEY,
        "max_connections": 1,
    }
    gw = await start_gateway(
        upstream, models=(MODEL,), heartbeat=None, upstreams={"fake": one_connection}
    )
    gate = asyncio.Event()
    upstream.script(MODEL, gated(gate))
    url = f"{gw.url}/v1/chat/completions"

    async def stream() -> bytes:
        async with client.post(url, json=CHAT) as response:
            assert response.status == 200
            return await response.read()

    holder = asyncio.create_task(stream())
    await upstream.next_call()
    async with client.post(url, json=CHAT, headers={"x-gateway-connect-timeout": "0.2"}) as refused:
        body = await refused.read()
    gate.set()

    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    error = json.loads(body)["error"]
    assert error["code"] == "gateway_overloaded"
    assert "0.2s" in error["message"]
    assert (await holder).endswith(DONE)
    assert len(upstream.requests) == 1
