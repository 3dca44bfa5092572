"""The judges of the Responses encoder: the real clients reading what it writes, served from a
real aiohttp server on 127.0.0.1 (the fake upstream, scripted with the encoded bytes).

openai-python's `responses.stream()` accumulator (`get_final_response`), `responses.create`
streamed and whole, and the OpenAI Agents SDK (`Runner.run_streamed`) calling a tool from a
translated stream and sending its result back - which the codec's request decoder reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool

from gateway.translation import (
    AnswerEvent,
    End,
    Failure,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from gateway.translation.openai_responses import CODEC
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream
from tests.translation.responses_frames import CONVERSATION, encode_all

MODEL = CONVERSATION.model
START = Start(id="msg_01XFDUDYJgAACzvnptvVoYEL", model="claude-upstream", created=1700000000)
TEXT: list[AnswerEvent] = [
    START,
    TextDelta("Hello", part=0),
    TextDelta(", world", part=0),
    Usage(input=10, output=3, cached=6),
    Stop(StopReason.END_TURN),
    End(),
]
PARALLEL: list[AnswerEvent] = [
    START,
    TextDelta("Checking both.", part=0),
    ToolCallStart(0, "call_paris", "weather", part=1),
    ToolCallDelta(0, '{"city"', part=1),
    ToolCallStart(1, "call_rome", "weather", part=2),
    ToolCallDelta(1, '{"city":"Rome"}', part=2),
    ToolCallDelta(0, ':"Paris"}', part=1),
    Usage(input=30, output=12),
    Stop(StopReason.TOOL_USE),
    End(),
]


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=upstream.base_url, api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


def serve(upstream: FakeUpstream, events: list[AnswerEvent]) -> None:
    upstream.script(MODEL, fake.sse_stream(encode_all(events, CONVERSATION), done=False))


async def final_response(client: openai.AsyncOpenAI) -> Any:
    async with client.responses.stream(model=MODEL, input="hi") as stream:
        return await stream.get_final_response()


async def test_stream_accumulator_gets_the_text_and_usage(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    serve(upstream, TEXT)
    final = await final_response(client)
    assert final.output_text == "Hello, world"
    assert final.status == "completed"
    assert final.model == MODEL
    assert final.id.startswith("resp_")
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 3)
    assert final.usage.input_tokens_details.cached_tokens == 6


async def test_stream_accumulator_gets_interleaved_parallel_calls(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    serve(upstream, PARALLEL)
    final = await final_response(client)
    assert final.output_text == "Checking both."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(call.call_id, call.name, json.loads(call.arguments)) for call in calls] == [
        ("call_paris", "weather", {"city": "Paris"}),
        ("call_rome", "weather", {"city": "Rome"}),
    ]


async def test_stream_events_carry_the_argument_snapshots(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    serve(upstream, PARALLEL)
    snapshots: list[str] = []
    async with client.responses.stream(model=MODEL, input="hi") as stream:
        async for event in stream:
            if event.type == "response.function_call_arguments.delta":
                snapshots.append(event.snapshot)
    assert snapshots == ['{"city"', '{"city":"Rome"}', '{"city":"Paris"}']


async def test_stream_accumulator_gets_reasoning(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    events = [
        START,
        ReasoningDelta("Let me think.", part=0),
        ReasoningDelta("", part=0, signature="EqQBCgIYAhIM"),
        TextDelta("42", part=1),
        Usage(input=5, output=40, reasoning=30),
        Stop(StopReason.END_TURN),
        End(),
    ]
    serve(upstream, events)
    final = await final_response(client)
    reasoning, message = final.output
    assert reasoning.type == "reasoning"
    assert [entry.text for entry in reasoning.summary] == ["Let me think."]
    assert reasoning.encrypted_content == "EqQBCgIYAhIM"
    assert message.type == "message"
    assert final.output_text == "42"
    assert final.usage is not None
    assert final.usage.output_tokens_details.reasoning_tokens == 30


async def test_create_stream_iterates_to_completed(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    serve(upstream, PARALLEL)
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    seen = [event async for event in stream]
    assert seen[0].type == "response.created"
    assert seen[-1].type == "response.completed"
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    assert len(seen[-1].response.output) == 3


async def test_create_stream_sees_an_incomplete_answer(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    serve(upstream, [START, TextDelta("Once"), Stop(StopReason.MAX_TOKENS), End()])
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    last = [event async for event in stream][-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"


async def test_a_failure_raises_the_sdks_api_error(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    serve(upstream, [START, TextDelta("Hi"), Failure("Overloaded", code="overloaded_error")])
    with pytest.raises(openai.APIError, match="Overloaded"):
        await final_response(client)


async def test_create_reads_the_whole_answer(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    answer = CODEC.encode_answer(PARALLEL, CONVERSATION)
    upstream.script(MODEL, fake.status(200, body=answer))
    response = await client.responses.create(model=MODEL, input="hi")
    assert response.output_text == "Checking both."
    assert [item.type for item in response.output] == ["message", "function_call", "function_call"]
    assert response.output[1].arguments == '{"city":"Paris"}'  # type: ignore[union-attr]
    assert response.usage is not None
    assert response.usage.total_tokens == 42


async def test_agents_sdk_calls_a_tool_from_a_translated_stream(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    asked: list[str] = []

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"Sunny in {city}"

    call = [
        START,
        ToolCallStart(0, "call_1", "weather", part=0),
        ToolCallDelta(0, '{"city":"Paris"}', part=0),
        Stop(StopReason.TOOL_USE),
        End(),
    ]
    upstream.script(
        MODEL,
        fake.sequence(
            fake.sse_stream(encode_all(call, CONVERSATION), done=False),
            fake.sse_stream(encode_all(TEXT, CONVERSATION), done=False),
        ),
    )
    agent = Agent(
        name="assistant",
        instructions="Answer briefly.",
        tools=[weather],
        model=OpenAIResponsesModel(model=MODEL, openai_client=client),
    )
    result = Runner.run_streamed(
        agent, "Weather in Paris?", run_config=RunConfig(tracing_disabled=True)
    )
    async for _ in result.stream_events():
        pass
    assert asked == ["Paris"]
    assert result.final_output == "Hello, world"
    follow_up = CODEC.decode_request(upstream.calls_for(MODEL)[1].body)
    results = [
        part
        for message in follow_up.messages
        for part in message.content
        if isinstance(part, ToolResultPart)
    ]
    assert [(result.call_id, result.content) for result in results] == [
        ("call_1", (TextPart("Sunny in Paris"),))
    ]
