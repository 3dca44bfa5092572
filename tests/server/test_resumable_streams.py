"""Resumable streams on real sockets: each event numbered with an `id:` line, a stream that
outlives its client's connection, `GET /v1/streams/{id}` after `Last-Event-ID`, cancel, and a
stream that is its key's alone. The fake upstream streams scripted chunks; the clients are
aiohttp and openai-python."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import openai
import pytest

from gateway.server.app_state import STORE
from tests.conftest import RunningGateway, StartGateway
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.support.openai_wire import openai_chunks

MODEL = "m"
KEY, OTHER_KEY = "gw-key-resume-owner", "gw-key-resume-other"
WORDS = [f"w{i} " for i in range(30)]
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
RESUMABLE = {"x-gateway-resumable": "true", "Authorization": f"Bearer {KEY}"}
AUTH = {"keys": [KEY, OTHER_KEY]}


def events_of(body: bytes) -> list[tuple[int | None, str]]:
    """(id, data) of each event of an SSE body (comments ignored)."""
    found = []
    for block in re.split(rb"\n\n", body):
        event_id, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                event_id = int(line[4:])
            elif line.startswith(b"data: "):
                data.append(line[6:].decode())
        if data:
            found.append((event_id, "\n".join(data)))
    return found


def text_of(datas: list[str]) -> str:
    text = ""
    for data in datas:
        if data != "[DONE]":
            for choice in json.loads(data).get("choices", []):
                text += choice["delta"].get("content") or ""
    return text


async def start(
    start_gateway: StartGateway, upstream: FakeUpstream, *, delay: float = 0.0, **overrides: object
) -> RunningGateway:
    upstream.script(MODEL, fake.sse_stream(openai_chunks(WORDS), delay=delay))
    return await start_gateway(upstream, (MODEL,), auth=AUTH, **overrides)


async def test_each_event_of_a_resumable_stream_gets_an_id_line_and_nothing_else_changes(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start(start_gateway, upstream)
    url = f"{gw.url}/v1/chat/completions"
    async with client.post(url, json=CHAT, headers=RESUMABLE) as reply:
        numbered = await reply.read()
        stream_id = reply.headers["x-gateway-stream-id"]
    async with client.post(url, json=CHAT, headers={"Authorization": f"Bearer {KEY}"}) as reply:
        plain = await reply.read()
        assert "x-gateway-stream-id" not in reply.headers

    assert len(stream_id) >= 32
    assert re.sub(rb"id: \d+\n", b"", numbered) == plain  # byte-exact but for the id lines
    ids = [event_id for event_id, _ in events_of(numbered)]
    assert ids == list(range(1, len(WORDS) + 3))  # the chunks, the finish chunk, [DONE]
    assert b"\n\n\n" not in numbered


async def test_a_heartbeat_in_a_resumable_stream_is_a_comment_line_without_a_blank_line(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.sse_stream(openai_chunks(["a", "b"]), delay=0.25))
    gw = await start_gateway(upstream, (MODEL,), auth=AUTH, heartbeat=0.1)
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=RESUMABLE) as r:
        body = await r.read()

    assert b": ping\n" in body
    assert b": ping\n\n" not in body
    assert not re.search(rb"(^|\n)\n\n", body)  # no bare blank line but the events' own
    assert [i for i, _ in events_of(body)] == [1, 2, 3, 4]


async def test_a_dropped_client_resumes_with_last_event_id_and_gets_the_rest_byte_exact(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start(start_gateway, upstream, delay=0.02)
    sdk = openai.AsyncOpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)
    whole = await sdk.chat.completions.create(model=MODEL, messages=CHAT["messages"], stream=True)
    uninterrupted = "".join([c.choices[0].delta.content or "" async for c in whole if c.choices])

    raw = await sdk.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=CHAT["messages"],
        stream=True,
        extra_headers={"x-gateway-resumable": "true"},
    )
    stream_id = raw.headers["x-gateway-stream-id"]
    stream = raw.parse()
    first, read = "", 0
    async for chunk in stream:
        first += chunk.choices[0].delta.content or ""
        read += 1
        if read == 5:
            break
    await stream.close()  # the connection dropped mid-stream
    await sdk.close()

    headers = {"Authorization": f"Bearer {KEY}", "Last-Event-ID": str(read)}
    async with client.get(f"{gw.url}/v1/streams/{stream_id}", headers=headers) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        rest = events_of(await reply.read())

    assert rest[0][0] == read + 1
    assert rest[-1][1] == "[DONE]"
    assert first + text_of([data for _, data in rest]) == uninterrupted


async def test_a_resumable_stream_runs_on_after_its_client_left(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start(start_gateway, upstream, delay=0.02)
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=RESUMABLE) as r:
        stream_id = r.headers["x-gateway-stream-id"]
        await r.content.readuntil(b"\n\n")
    call = upstream.calls_for(MODEL)[0]
    async with asyncio.timeout(10):
        await call.finished.wait()
    assert not call.closed_by_peer.is_set()  # the upstream was read to its end

    async with client.get(f"{gw.url}/v1/streams/{stream_id}", headers=RESUMABLE) as reply:
        whole = events_of(await reply.read())  # no Last-Event-ID: from the start
    assert text_of([data for _, data in whole]) == "".join(WORDS)


async def test_another_key_or_no_key_or_an_unknown_id_finds_no_stream(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start(start_gateway, upstream)
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=RESUMABLE) as r:
        stream_id = r.headers["x-gateway-stream-id"]
        await r.read()
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    for method in ("GET", "DELETE"):
        async with client.request(method, f"{gw.url}/v1/streams/{stream_id}", headers=other) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "not_found"
        async with client.request(method, f"{gw.url}/v1/streams/nope", headers=RESUMABLE) as r:
            assert r.status == 404
    async with client.get(f"{gw.url}/v1/streams/{stream_id}") as r:
        assert r.status == 401


async def test_deleting_a_stream_closes_its_upstream_and_ends_it_with_one_error_event(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    gw = await start(start_gateway, upstream, delay=0.2)
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=RESUMABLE) as r:
        stream_id = r.headers["x-gateway-stream-id"]
        await r.content.readuntil(b"\n\n")
        async with client.delete(f"{gw.url}/v1/streams/{stream_id}", headers=RESUMABLE) as d:
            assert d.status == 200
            assert (await d.json())["status"] == "cancelled"
        rest = events_of(await r.read())
    call = upstream.calls_for(MODEL)[0]
    async with asyncio.timeout(10):
        await call.closed_by_peer.wait()
    error = json.loads(rest[-1][1])
    assert error["error"]["code"] == "stream_cancelled"
    assert [data for _, data in rest].count("[DONE]") == 0


async def test_a_route_with_resumable_true_numbers_every_stream(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.sse_stream(openai_chunks(["a"])))
    route = {"model": MODEL, "targets": [{"upstream": "fake"}], "resumable": True}
    gw = await start_gateway(upstream, (), routes=[route])
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT) as reply:
        stream_id = reply.headers["x-gateway-stream-id"]
        body = await reply.read()
    assert [i for i, _ in events_of(body)] == [1, 2, 3]
    async with client.get(f"{gw.url}/v1/streams/{stream_id}?last_event_id=2") as reply:
        assert events_of(await reply.read()) == [(3, "[DONE]")]


async def test_an_error_before_the_first_event_is_still_a_status_for_its_client(
    start_gateway: StartGateway, upstream: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    upstream.script(MODEL, fake.status(500))
    gw = await start_gateway(upstream, (MODEL,), auth=AUTH)
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=RESUMABLE) as r:
        assert r.status == 502
        assert (await r.json())["error"]["code"] == "upstream_status_5xx"


@pytest.mark.parametrize("cap", [{"max_resume_events": 5}, {"max_resume_bytes": 600}])
async def test_a_resume_from_before_the_kept_events_ends_with_stream_lost(
    start_gateway: StartGateway,
    upstream: FakeUpstream,
    client: aiohttp.ClientSession,
    cap: dict[str, int],
) -> None:
    gw = await start(start_gateway, upstream, limits=cap)
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=RESUMABLE) as r:
        stream_id = r.headers["x-gateway-stream-id"]
        await r.read()
    headers = {**RESUMABLE, "Last-Event-ID": "1"}
    async with client.get(f"{gw.url}/v1/streams/{stream_id}", headers=headers) as reply:
        events = events_of(await reply.read())
    assert len(events) == 1
    assert json.loads(events[0][1])["error"]["code"] == "stream_lost"
    assert len(gw.app[STORE].streams) == 1
