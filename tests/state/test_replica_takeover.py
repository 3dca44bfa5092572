"""A replica that dies mid-stream: a gateway process SIGKILLed while it relays a resumable
stream, resumed on a survivor sharing its real Redis. The survivor takes the stream over and
continues the answer on the route's prefill target (the text so far as the assistant's), so
the resumed stream is one whole answer; an answer prefill cannot continue (a tool call) ends
with one `stream_lost` event; two survivors resumed at once: one takes over, the other
follows its tail. The fake upstream streams slowly for the dead replica (model `slow`) and
continues for the survivor (model `cont`)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from tests.conftest import RunningGateway
from tests.observability.scrape import value
from tests.server.test_resumable_streams import CHAT, WORDS, events_of, text_of
from tests.state.redis_gateways import Replicas, gateway_process
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.openai_wire import chunk_event, openai_chunks
from tests.support.redis_server import RedisServer

MODEL = "m"
CONT = ["c0 ", "c1 ", "c2."]  # what the continuation target says, whatever it is given
ROUTES = [
    {
        "model": MODEL,
        "targets": [
            {"upstream": "fake", "model": "slow"},
            {"upstream": "fake", "model": "cont", "prefill": True},
        ],
    }
]
RESUMABLE = {"x-gateway-resumable": "true"}

pytestmark = pytest.mark.timeout(60)


async def killed_mid_stream(
    survivor: RunningGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    redis: RedisServer,
    directory: Path,
) -> tuple[str, list[tuple[int | None, str]]]:
    """Start a resumable stream on a gateway process with `survivor`'s routes and Redis
    prefix, SIGKILL it after three events: the stream's id and the events the client got."""
    config = {
        "upstreams": {"fake": {"kind": "openai", "base_url": upstream.base_url}},
        "routes": ROUTES,
        "state": {"redis_prefix": survivor.settings.state.redis_prefix},
    }
    async with gateway_process(config, redis.url, directory) as (url, process):
        chat = client.post(f"{url}/v1/chat/completions", json=CHAT, headers=RESUMABLE)
        async with chat as reply:
            stream_id = reply.headers["x-gateway-stream-id"]
            first = b"".join([await reply.content.readuntil(b"\n\n") for _ in range(3)])
            process.send_signal(signal.SIGKILL)
            await process.wait()
    return stream_id, events_of(first)


async def resumed(client: aiohttp.ClientSession, gw: RunningGateway, stream_id: str) -> list[Any]:
    """The whole stream read from `gw` (it waits for the dead replica's lease to expire)."""
    async with asyncio.timeout(30), client.get(f"{gw.url}/v1/streams/{stream_id}") as reply:
        assert reply.status == 200
        return events_of(await reply.read())


def roles(events: list[tuple[int | None, str]]) -> int:
    return sum(
        1
        for _, data in events
        if data != "[DONE]"
        for choice in json.loads(data).get("choices", [])
        if "role" in choice["delta"]
    )


async def test_a_sigkilled_replicas_stream_is_continued_on_the_prefill_target_elsewhere(
    replicas: Replicas,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    redis: RedisServer,
    tmp_path: Path,
) -> None:
    upstream.script("slow", fake.sse_stream(openai_chunks(WORDS, model="slow"), delay=0.2))
    upstream.script("cont", fake.sse_stream(openai_chunks(CONT, model="cont", id="chatcmpl-2")))
    (survivor,) = await replicas(1, (), routes=ROUTES)
    stream_id, seen = await killed_mid_stream(survivor, upstream, client, redis, tmp_path)

    with capture_logs() as logs:
        events = await resumed(client, survivor, stream_id)

    (call,) = upstream.calls_for("cont")
    prefill = call.body["messages"][-1]
    assert prefill["role"] == "assistant"
    kept = prefill["content"] + " "  # the text the dead replica kept (its space taken off)
    assert "".join(WORDS).startswith(kept)
    assert kept.startswith(text_of([d for _, d in seen[:-1]]))  # at most its last batch lost
    assert call.body["messages"][:-1] == CHAT["messages"]
    assert text_of([d for _, d in events]) == kept + "".join(CONT)  # one whole answer
    assert events[-1][1] == "[DONE]"
    assert roles(events) == 1  # the continuation's role chunk is not repeated
    assert {json.loads(d)["id"] for _, d in events[:-1]} == {"chatcmpl-fake"}
    assert [i for i, _ in events] == list(range(1, len(events) + 1))
    assert [e["event"] for e in logs].count("stream_taken_over") == 1
    assert value(survivor, "gateway_continuations_total", route=MODEL, result="ok") == 1

    again = await resumed(client, survivor, stream_id)  # the continued stream, kept whole
    assert again == events


async def test_an_answer_prefill_cannot_continue_a_tool_call_ends_lost(
    replicas: Replicas,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    redis: RedisServer,
    tmp_path: Path,
) -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    frames = [chunk_event({"role": "assistant", "tool_calls": [call]}, None, "slow", "c")]
    frames += [
        chunk_event(
            {"tool_calls": [{"index": 0, "function": {"arguments": f"{i}"}}]}, None, "slow", "c"
        )
        for i in range(30)
    ]
    upstream.script("slow", fake.sse_stream(frames, delay=0.2))
    upstream.script("cont", fake.sse_stream(openai_chunks(CONT, model="cont")))
    (survivor,) = await replicas(1, (), routes=ROUTES)
    stream_id, seen = await killed_mid_stream(survivor, upstream, client, redis, tmp_path)

    events = await resumed(client, survivor, stream_id)

    assert json.loads(events[-1][1])["error"]["code"] == "stream_lost"
    assert "[DONE]" not in [d for _, d in events]
    assert events[: len(seen) - 1] == seen[: len(seen) - 1]
    assert [i for i, _ in events] == list(range(1, len(events) + 1))
    assert upstream.calls_for("cont") == []
    assert value(survivor, "gateway_continuations_total", route=MODEL, result="unsound") == 1


async def test_two_replicas_resuming_at_once_one_takes_over_the_other_follows_its_tail(
    replicas: Replicas,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    redis: RedisServer,
    tmp_path: Path,
) -> None:
    upstream.script("slow", fake.sse_stream(openai_chunks(WORDS, model="slow"), delay=0.2))
    upstream.script("cont", fake.sse_stream(openai_chunks(CONT, model="cont"), delay=0.05))
    one, two = await replicas(2, (), routes=ROUTES)
    stream_id, _ = await killed_mid_stream(one, upstream, client, redis, tmp_path)

    with capture_logs() as logs:
        first, second = await asyncio.gather(
            resumed(client, one, stream_id), resumed(client, two, stream_id)
        )

    assert first == second
    assert first[-1][1] == "[DONE]"
    assert text_of([d for _, d in first]).endswith("".join(CONT))
    assert len(upstream.calls_for("cont")) == 1
    assert [e["event"] for e in logs].count("stream_taken_over") == 1
    continued = [
        value(gw, "gateway_continuations_total", route=MODEL, result="ok") for gw in (one, two)
    ]
    assert sorted(continued) == [0, 1]
