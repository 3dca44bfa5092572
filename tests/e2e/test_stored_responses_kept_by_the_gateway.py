"""A Responses `background: true` stream whose target cannot keep it (a chat-only upstream,
answered translated) is kept by the gateway itself: openai-python's background-mode resume
(`responses.retrieve(id, stream=True, starting_after=N)`) reads the rest from the gateway's
buffer after its first connection dropped, and `responses.cancel(id)` stops it. Another key
finds no such response."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY, RunningGateway, StartGateway
from tests.support.fake_upstream import FakeUpstream, sse_stream
from tests.support.openai_wire import openai_chunks

KEY, OTHER = "gw-key-background-owner", "gw-key-background-other"
WORDS = [f"t{i} " for i in range(20)]


@pytest.fixture
async def gateway(upstream: FakeUpstream, start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(
        None,
        upstreams={
            "chatonly": {
                "kind": "openai",
                "base_url": upstream.base_url,
                "api_key": UPSTREAM_KEY,
                "apis": ["chat_completions"],
            }
        },
        routes=[{"model": "gpt-x", "targets": [{"upstream": "chatonly"}]}],
        auth={"keys": [KEY, OTHER]},
        retry={"attempts": 1},
    )


@pytest.fixture
async def oai(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
        yield c


def deltas(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


async def test_a_translated_background_stream_is_resumed_after_starting_after_from_the_gateway(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream, gateway: RunningGateway
) -> None:
    upstream.script("gpt-x", sse_stream(openai_chunks(WORDS, model="gpt-x"), delay=0.02))
    stream = await oai.responses.create(model="gpt-x", input="hi", background=True, stream=True)
    first: list[Any] = []
    async for event in stream:
        first.append(event)
        if len(first) == 6:
            break
    await stream.close()  # the connection dropped
    response_id = first[0].response.id
    assert "background" not in upstream.calls_for("gpt-x")[0].body

    rest = [
        event
        async for event in await oai.responses.retrieve(
            response_id, stream=True, starting_after=first[-1].sequence_number
        )
    ]

    assert rest[0].sequence_number == first[-1].sequence_number + 1
    assert rest[-1].type == "response.completed"
    assert deltas(first) + deltas(rest) == "".join(WORDS)
    assert rest[-1].response.output_text == "".join(WORDS)

    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=OTHER, max_retries=0) as o:
        with pytest.raises(openai.NotFoundError):
            await o.responses.retrieve(response_id, stream=True, starting_after=0)


async def test_cancelling_a_translated_background_response_closes_its_upstream(
    oai: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.script("gpt-x", sse_stream(openai_chunks(WORDS, model="gpt-x"), delay=0.2))
    stream = await oai.responses.create(model="gpt-x", input="hi", background=True, stream=True)
    created = await stream.__anext__()
    await stream.close()

    cancelled = await oai.responses.cancel(created.response.id)

    assert cancelled.status == "cancelled"
    async with asyncio.timeout(10):
        await upstream.calls_for("gpt-x")[0].closed_by_peer.wait()
    with pytest.raises(openai.APIError) as raised:
        async for _ in await oai.responses.retrieve(
            created.response.id, stream=True, starting_after=0
        ):
            pass
    assert raised.value.code == "stream_cancelled"  # type: ignore[attr-defined]
