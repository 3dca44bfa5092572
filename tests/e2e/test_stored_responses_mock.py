"""Stateful Responses on the built-in mock through the gateway, with the official `openai` SDK:
the zero-configuration gateway serves every follow-up (the mock is the one upstream, and it
keeps what it answered).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import RunningGateway, StartGateway

FAST_MOCK = {"mock": {"kind": "mock", "mock": {"chunk_delay": 0.01}}}


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(None, upstreams=FAST_MOCK)


@pytest.fixture
async def sdk(gateway: RunningGateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url, api_key="unused", max_retries=0
    ) as client:
        yield client


async def test_a_conversation_continues_and_its_follow_ups_answer(
    sdk: openai.AsyncOpenAI,
) -> None:
    first = await sdk.responses.create(model="mock", input="hello")
    second = await sdk.responses.create(
        model="mock", input="and then?", previous_response_id=first.id
    )
    assert "turn 2 of our conversation" in second.output_text
    assert second.previous_response_id == first.id
    assert (await sdk.responses.retrieve(second.id)).output_text == second.output_text
    items = await sdk.responses.input_items.list(second.id)
    assert len(items.data) == 1
    await sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.responses.create(model="mock", input="x", previous_response_id=first.id)
    assert raised.value.code == "previous_response_not_found"


async def test_a_background_response_resumes_after_a_dropped_stream(
    sdk: openai.AsyncOpenAI,
) -> None:
    stream = await sdk.responses.create(
        model="mock", input="a long task", stream=True, background=True
    )
    seen: list[Any] = []
    async with stream:
        async for event in stream:
            seen.append(event)
            if len(seen) == 5:
                break  # the connection drops
    answer_id = seen[0].response.id
    resumed = await sdk.responses.retrieve(
        answer_id, stream=True, starting_after=seen[-1].sequence_number
    )
    rest: list[Any] = []
    async with resumed:
        async for event in resumed:
            rest.append(event)
    numbers = [event.sequence_number for event in seen + rest]
    assert numbers == list(range(len(numbers)))
    assert rest[-1].type == "response.completed"
    final = await sdk.responses.retrieve(answer_id)
    assert final.status == "completed"
    assert "a long task" in final.output_text


async def test_a_background_response_can_be_cancelled(sdk: openai.AsyncOpenAI) -> None:
    made = await sdk.responses.create(model="mock-slow", input="slowly", background=True)
    assert made.status == "queued"
    cancelled = await sdk.responses.cancel(made.id)
    assert cancelled.status == "cancelled"
    plain = await sdk.responses.create(model="mock", input="now")
    with pytest.raises(openai.BadRequestError):
        await sdk.responses.cancel(plain.id)
