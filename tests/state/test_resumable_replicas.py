"""Resumable streams across two gateways sharing one real Redis: a stream started on one
replica is resumed on the other after `Last-Event-ID`, byte-exact, and cancelled from it; a
stream whose replica was SIGKILLed, on a route that cannot continue it (no target with
`prefill`), is replayed on the survivor and ends with one `stream_lost` event there (its
continuation: `tests/state/test_replica_takeover.py`)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.server.test_resumable_streams import CHAT, WORDS, events_of, text_of
from tests.state.redis_gateways import Replicas, gateway_process
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.openai_wire import openai_chunks
from tests.support.redis_server import RedisServer

MODEL = "m"
KEY = "gw-key-resumed-elsewhere"
HEADERS = {"Authorization": f"Bearer {KEY}", "x-gateway-resumable": "true"}


async def test_a_stream_started_on_one_replica_is_resumed_on_the_other_byte_exact(
    replicas: Replicas, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.sse_stream(openai_chunks(WORDS), delay=0.02))
    one, two = await replicas(2, (MODEL,), auth={"keys": [KEY]})
    async with client.post(f"{one.url}/v1/chat/completions", json=CHAT, headers=HEADERS) as r:
        stream_id = r.headers["x-gateway-stream-id"]
        first = b""
        while first.count(b"\n\n") < 4:
            first += await r.content.readany()
    seen = events_of(first[: first.rindex(b"\n\n") + 2])
    last_id = seen[-1][0]
    assert last_id is not None

    resume = {**HEADERS, "Last-Event-ID": str(last_id)}
    async with client.get(f"{two.url}/v1/streams/{stream_id}", headers=resume) as reply:
        assert reply.status == 200
        rest = events_of(await reply.read())  # the live tail, followed through Redis

    assert rest[0][0] == last_id + 1
    assert rest[-1][1] == "[DONE]"
    assert text_of([d for _, d in seen] + [d for _, d in rest]) == "".join(WORDS)
    assert len(upstream.calls_for(MODEL)) == 1


async def test_a_stream_is_cancelled_from_the_other_replica(
    replicas: Replicas, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.sse_stream(openai_chunks(WORDS), delay=0.2))
    one, two = await replicas(2, (MODEL,), auth={"keys": [KEY]})
    async with client.post(f"{one.url}/v1/chat/completions", json=CHAT, headers=HEADERS) as r:
        stream_id = r.headers["x-gateway-stream-id"]
        await r.content.readuntil(b"\n\n")
        async with client.delete(f"{two.url}/v1/streams/{stream_id}", headers=HEADERS) as d:
            assert (await d.json())["status"] == "cancelled"
        rest = events_of(await r.read())
    assert json.loads(rest[-1][1])["error"]["code"] == "stream_cancelled"
    async with asyncio.timeout(10):
        await upstream.calls_for(MODEL)[0].closed_by_peer.wait()


@pytest.mark.timeout(60)
async def test_a_sigkilled_replicas_stream_without_a_prefill_target_is_replayed_then_ends_lost(
    replicas: Replicas,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    redis: RedisServer,
    tmp_path: Path,
) -> None:
    upstream.script(MODEL, fake.sse_stream(openai_chunks(WORDS), delay=0.2))
    (survivor,) = await replicas(1, (MODEL,))
    prefix = survivor.settings.state.redis_prefix
    config = {
        "upstreams": {"fake": {"kind": "openai", "base_url": upstream.base_url}},
        "routes": [{"model": MODEL, "targets": [{"upstream": "fake"}]}],
        "state": {"redis_prefix": prefix},
    }
    async with gateway_process(config, redis.url, tmp_path) as (url, process):
        resumable = {"x-gateway-resumable": "true"}
        async with client.post(f"{url}/v1/chat/completions", json=CHAT, headers=resumable) as r:
            stream_id = r.headers["x-gateway-stream-id"]
            first = b"".join([await r.content.readuntil(b"\n\n") for _ in range(3)])
            process.send_signal(signal.SIGKILL)
            await process.wait()

    async with asyncio.timeout(30), client.get(f"{survivor.url}/v1/streams/{stream_id}") as reply:
        events = events_of(await reply.read())  # waits for the dead replica's lease to expire
    # What reached Redis before the kill is replayed: the events before the last one sent
    # (each batch reaches the client and, pipelined, Redis: the last may be lost with the
    # replica), without a hole, then one error event.
    kept, seen = events[:-1], events_of(first)
    assert len(kept) >= len(seen) - 1
    assert kept == seen[: len(kept)]
    assert [i for i, _ in events] == list(range(1, len(events) + 1))
    assert json.loads(events[-1][1])["error"]["code"] == "stream_lost"
    assert "[DONE]" not in [d for _, d in events]
