"""The judge of the Messages codec's output: the real `anthropic` SDK.

A tiny aiohttp server on 127.0.0.1 answers `POST /v1/messages` with what the codec wrote for
answer events of another API (an OpenAI-like upstream: reasoning without a signature, text,
parallel tool calls with interleaved argument deltas, usage at the end) - as a stream, read by
`messages.stream(...).get_final_message()`, and whole, read by `messages.create(...)`. Whole
answers are also tested here against recorded Messages JSON, both ways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from aiohttp import web

from gateway.translation import (
    AnswerEvent,
    Conversation,
    End,
    Failure,
    Message,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.anthropic_messages import CODEC

CLIENT_MODEL = "claude-via-gateway"
CONVERSATION = Conversation(model=CLIENT_MODEL, messages=(Message("user", ()),), stream=True)

TOOL_ANSWER: list[AnswerEvent] = [
    Start("chatcmpl-abc123", "gpt-4o"),
    ReasoningDelta("The user wants ", 0),
    ReasoningDelta("two lookups.", 0),
    TextDelta("Looking ", 1),
    TextDelta("both up.", 1),
    ToolCallStart(0, "call_w", "get_weather", 2),
    ToolCallDelta(0, '{"city": "Pa', 2),
    ToolCallStart(1, "call_t", "get_time", 3),
    ToolCallDelta(1, '{"tz": ', 3),
    ToolCallDelta(0, 'ris", "unit": "C"}', 2),
    ToolCallDelta(1, '"CET"}', 3),
    Stop(StopReason.TOOL_USE),
    Usage(input=250, output=60, cached=200, reasoning=12),
    End(),
]

TEXT_ANSWER: list[AnswerEvent] = [
    Start("resp_1", "gpt-4.1"),
    Usage(input=30, output=0),
    TextDelta("Counting: 1, 2, 3", 0),
    Usage(input=30, output=9),
    Stop(StopReason.STOP_SEQUENCE, "4"),
    End(),
]

Served = tuple[list[list[AnswerEvent]], anthropic.AsyncAnthropic]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """A server answering each call with the codec's encoding of the events in the list's
    first slot (a stream when the client asked for one), and an SDK client pointed at it."""
    answer: list[list[AnswerEvent]] = [[]]
    bodies: list[dict[str, Any]] = []

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        bodies.append(body)
        if not body.get("stream"):
            return web.json_response(CODEC.encode_answer(answer[0], CONVERSATION))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        encoder = CODEC.stream_encoder(CONVERSATION)
        for event in answer[0]:
            for frame in encoder.encode(event):
                await response.write(frame)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = anthropic.AsyncAnthropic(
        base_url=f"http://127.0.0.1:{port}", api_key="k", max_retries=0
    )
    try:
        yield answer, client
    finally:
        await client.close()
        await runner.cleanup()


ASK: dict[str, Any] = {
    "model": CLIENT_MODEL,
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Weather and time in Paris?"}],
}


def assert_tool_message(message: anthropic.types.Message) -> None:
    assert message.id == "msg_chatcmplabc123"
    assert message.model == CLIENT_MODEL
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, weather, time = message.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == ("The user wants two lookups.", "")
    assert isinstance(text, anthropic.types.TextBlock)
    assert text.text == "Looking both up."
    assert isinstance(weather, anthropic.types.ToolUseBlock)
    assert (weather.id, weather.name, weather.input) == (
        "call_w",
        "get_weather",
        {"city": "Paris", "unit": "C"},
    )
    assert isinstance(time, anthropic.types.ToolUseBlock)
    assert (time.id, time.name, time.input) == ("call_t", "get_time", {"tz": "CET"})
    assert message.stop_reason == "tool_use"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == 50
    assert message.usage.cache_read_input_tokens == 200
    assert message.usage.output_tokens == 60


async def test_the_sdk_accumulates_a_translated_stream_with_tool_use_blocks(served: Served) -> None:
    answer, client = served
    answer[0] = TOOL_ANSWER
    async with client.messages.stream(**ASK) as stream:
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert_tool_message(message)
    assert kinds.count("input_json") == 4  # each argument fragment reached the client as it came
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 12


async def test_the_sdk_reads_a_translated_whole_answer(served: Served) -> None:
    answer, client = served
    answer[0] = TOOL_ANSWER
    message = await client.messages.create(**ASK)
    assert_tool_message(message)


async def test_the_sdk_reads_a_stop_sequence_and_the_final_usage(served: Served) -> None:
    answer, client = served
    answer[0] = TEXT_ANSWER
    async with client.messages.stream(**ASK) as stream:
        text = "".join([chunk async for chunk in stream.text_stream])
        message = await stream.get_final_message()
    assert text == "Counting: 1, 2, 3"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "4")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 9)
    whole = await client.messages.create(**ASK)
    assert whole.content[0].type == "text"
    assert (whole.stop_reason, whole.stop_sequence, whole.usage.output_tokens) == (
        "stop_sequence",
        "4",
        9,
    )


async def test_the_sdk_raises_the_error_event_of_a_failed_stream(served: Served) -> None:
    answer, client = served
    answer[0] = [
        Start("x", "y"),
        TextDelta("Par"),
        Failure("upstream overloaded", category="rate_limit"),
    ]
    with pytest.raises(anthropic.APIStatusError, match="upstream overloaded") as raised:
        async with client.messages.stream(**ASK) as stream:
            await stream.get_final_message()
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "upstream overloaded"},
    }


# --- whole answers both ways ---------------------------------------------------------------

RECORDED_MESSAGE: dict[str, Any] = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Weather first.", "signature": "EqQBCg"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 500,
        "output_tokens": 77,
    },
}

RECORDED_EVENTS: list[AnswerEvent] = [
    Start("msg_01Aq9w938a90dw8q", "claude-sonnet-4-5-20250929"),
    ReasoningDelta("Weather first.", 0, signature="EqQBCg"),
    TextDelta("I'll check.", 1),
    ToolCallStart(0, "toolu_01", "get_weather", 2),
    ToolCallDelta(0, '{"city":"Paris"}', 2),
    Usage(input=542, output=77, cached=500, cache_write=30),
    Stop(StopReason.TOOL_USE),
    End(),
]


def test_a_recorded_whole_answer_decodes_as_its_stream_would() -> None:
    assert CODEC.decode_answer(RECORDED_MESSAGE) == RECORDED_EVENTS


def test_a_whole_answer_is_written_back_as_it_came_but_its_redacted_thinking() -> None:
    conversation = Conversation(model="claude-sonnet-4-5-20250929", messages=())
    written = CODEC.encode_answer(RECORDED_EVENTS, conversation)
    expected = {
        **RECORDED_MESSAGE,
        "content": [b for b in RECORDED_MESSAGE["content"] if b["type"] != "redacted_thinking"],
    }
    assert written == expected
    assert CODEC.decode_answer(written) == RECORDED_EVENTS


def test_a_whole_answer_of_another_api_is_a_message() -> None:
    events: list[AnswerEvent] = [
        Start("chatcmpl-1", "gpt-4o"),
        TextDelta("Cut mid-call", 0),
        ToolCallStart(0, "call_1", "f", 1),
        ToolCallDelta(0, '{"a": ', 1),
        Stop(StopReason.MAX_TOKENS),
        End(),
    ]
    written = CODEC.encode_answer(events, Conversation(model="client", messages=()))
    assert written == {
        "id": "msg_chatcmpl1",
        "type": "message",
        "role": "assistant",
        "model": "client",
        "content": [
            {"type": "text", "text": "Cut mid-call"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {}},
        ],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
