"""The judge: what the Chat Completions encoder writes, served on 127.0.0.1 and read by the
real `openai` SDK - `chat.completions.stream()` and its `get_final_completion()`, and
`chat.completions.create()` for whole answers - plus whole answers read and written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageFunctionToolCall as FunctionToolCall

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
    TextPart,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.openai_chat import CODEC

CLIENT_MODEL = "claude-alias"
CONVERSATION = Conversation(
    model=CLIENT_MODEL, messages=(Message("user", (TextPart("hi"),)),), stream=True
)
STRICT_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {key: {"type": "string"}},
                "required": [key],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    for name, key in (("get_weather", "city"), ("get_time", "zone"))
]


@dataclass
class Answerer:
    """A tiny server on 127.0.0.1 answering every chat call with `frames` (a stream) or
    `body` (a whole answer)."""

    frames: list[bytes] = field(default_factory=list)
    body: dict[str, Any] | None = None
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        if self.body is not None:
            return web.json_response(self.body)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in self.frames:
            await response.write(frame)
        await response.write_eof()
        return response


@pytest.fixture
async def answerer() -> AsyncIterator[Answerer]:
    answerer = Answerer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", answerer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        answerer.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        yield answerer
    finally:
        await runner.cleanup()


@pytest.fixture
async def sdk(answerer: Answerer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=answerer.base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


def encoded(events: list[AnswerEvent]) -> list[bytes]:
    encoder = CODEC.stream_encoder(CONVERSATION)
    return [frame for event in events for frame in encoder.encode(event)]


START = Start(id="msg_01XFDUDYJgAACzvnptvVoYEL", model="claude-sonnet-4-5", created=1700000000)
USAGE = Usage(input=120, output=30, cached=100, cache_write=10, reasoning=5)

#: Two parallel calls, as every upstream API streams them: one after the other.
PARALLEL_CALLS: list[AnswerEvent] = [
    START,
    ReasoningDelta("Two lookups.", part=0),
    TextDelta("Looking both up.", part=1),
    ToolCallStart(0, "toolu_01A", "get_weather", part=2),
    ToolCallDelta(0, '{"ci', part=2),
    ToolCallDelta(0, 'ty": "Paris"}', part=2),
    ToolCallStart(1, "toolu_01B", "get_time", part=3),
    ToolCallDelta(1, '{"zone": ', part=3),
    ToolCallDelta(1, '"CET"}', part=3),
    USAGE,
    Stop(StopReason.TOOL_USE),
    End(),
]


async def test_the_sdk_accumulates_a_translated_text_stream(
    answerer: Answerer, sdk: openai.AsyncOpenAI
) -> None:
    answerer.frames = encoded(
        [
            START,
            TextDelta("Hello", part=0),
            TextDelta(" world", part=0),
            USAGE,
            Stop(StopReason.END_TURN),
            End(),
        ]
    )
    async with sdk.chat.completions.stream(
        model=CLIENT_MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert deltas == ["", "Hello", " world"]  # the role chunk's empty content, as OpenAI sends it
    assert final.id == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert final.model == CLIENT_MODEL
    [choice] = final.choices
    assert (choice.message.content, choice.finish_reason) == ("Hello world", "stop")
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (120, 30)
    assert final.usage.total_tokens == 150
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 100


async def test_the_sdk_accumulates_parallel_tool_calls_with_parsed_arguments(
    answerer: Answerer, sdk: openai.AsyncOpenAI
) -> None:
    answerer.frames = encoded(PARALLEL_CALLS)
    async with sdk.chat.completions.stream(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}], tools=STRICT_TOOLS
    ) as stream:
        done = [e async for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = await stream.get_final_completion()
    assert [(e.index, e.name, e.parsed_arguments) for e in done] == [
        (0, "get_weather", {"city": "Paris"}),
        (1, "get_time", {"zone": "CET"}),
    ]
    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Looking both up."
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.parsed_arguments) for c in calls] == [
        ("toolu_01A", "get_weather", {"city": "Paris"}),
        ("toolu_01B", "get_time", {"zone": "CET"}),
    ]
    # The reasoning rides along as DeepSeek's field, which the SDK keeps.
    assert choice.message.model_extra == {"reasoning_content": "Two lookups."}


async def test_interleaved_argument_deltas_accumulate_into_whole_arguments(
    answerer: Answerer, sdk: openai.AsyncOpenAI
) -> None:
    """Deltas of parallel calls that interleave (an upstream may: answer.py) are written as
    they come, each with its call's index; the SDK's snapshot puts each in its call. (Its
    `.stream()` helper parses strict tools' arguments when the index changes, so it can only
    judge them with tools that are not strict.)"""
    answerer.frames = encoded(
        [
            START,
            ToolCallStart(0, "call_a", "get_weather"),
            ToolCallDelta(0, '{"city": '),
            ToolCallStart(1, "call_b", "get_time"),
            ToolCallDelta(1, '{"zone": "CET"}'),
            ToolCallDelta(0, '"Paris"}'),
            Stop(StopReason.TOOL_USE),
            End(),
        ]
    )
    async with sdk.chat.completions.stream(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, json.loads(c.function.arguments)) for c in calls] == [
        ("call_a", {"city": "Paris"}),
        ("call_b", {"zone": "CET"}),
    ]


async def test_a_translated_failure_raises_the_sdks_api_error(
    answerer: Answerer, sdk: openai.AsyncOpenAI
) -> None:
    answerer.frames = encoded(
        [
            START,
            TextDelta("Hel"),
            Failure("Overloaded", code="overloaded_error", category="api_error"),
        ]
    )

    async def read_all() -> None:
        async with sdk.chat.completions.stream(
            model=CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            async for _ in stream:
                pass

    with pytest.raises(openai.APIError) as raised:
        await read_all()
    assert raised.value.message == "Overloaded"
    assert raised.value.code == "overloaded_error"


# -- whole answers ----------------------------------------------------------------------------


async def test_the_sdk_reads_a_translated_whole_answer(
    answerer: Answerer, sdk: openai.AsyncOpenAI
) -> None:
    events: list[AnswerEvent] = [e for e in PARALLEL_CALLS if not isinstance(e, ToolCallDelta)]
    events[4:4] = [ToolCallDelta(0, '{"city": "Paris"}', part=2)]
    events[6:6] = [ToolCallDelta(1, '{"zone": "CET"}', part=3)]
    answerer.body = CODEC.encode_answer(events, CONVERSATION)
    completion = await sdk.chat.completions.create(
        model=CLIENT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=False
    )
    assert completion.object == "chat.completion"
    assert completion.model == CLIENT_MODEL
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Looking both up."
    assert choice.message.model_extra == {"reasoning_content": "Two lookups."}
    calls = [c for c in choice.message.tool_calls or () if isinstance(c, FunctionToolCall)]
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("toolu_01A", "function", "get_weather", '{"city": "Paris"}'),
        ("toolu_01B", "function", "get_time", '{"zone": "CET"}'),
    ]
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5


OPENAI_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
                    },
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}


def test_a_whole_answer_decodes_into_the_events_its_stream_would_have_had() -> None:
    assert CODEC.decode_answer(OPENAI_ANSWER) == [
        Start(
            id="chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
            model="gpt-4o-2024-08-06",
            created=1741570283,
        ),
        TextDelta("Checking.", part=0),
        ToolCallStart(0, "call_1", "get_weather", part=1),
        ToolCallDelta(0, '{"city":"Paris"}', part=1),
        ToolCallStart(1, "call_2", "get_time", part=2),
        ToolCallDelta(1, '{"zone":"CET"}', part=2),
        Usage(input=1117, output=46, cached=1024, reasoning=0),
        Stop(StopReason.TOOL_USE),
        End(),
    ]


@pytest.mark.parametrize(
    ("message", "finish_reason", "expected"),
    [
        (
            {"role": "assistant", "content": None, "refusal": "I can't help with that."},
            "stop",
            [TextDelta("I can't help with that."), Stop(StopReason.REFUSAL)],
        ),
        (
            {"role": "assistant", "content": "Hi", "reasoning_content": "Greet."},
            "length",
            [
                ReasoningDelta("Greet.", part=0),
                TextDelta("Hi", part=1),
                Stop(StopReason.MAX_TOKENS),
            ],
        ),
        (
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            },
            "content_filter",
            [TextDelta("AB"), Stop(StopReason.CONTENT_FILTER)],
        ),
    ],
)
def test_whole_answers_read_refusals_reasoning_and_stop_reasons(
    message: dict[str, Any], finish_reason: str, expected: list[AnswerEvent]
) -> None:
    answer = {
        "id": "chatcmpl-1",
        "model": "m",
        "created": 1,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    assert CODEC.decode_answer(answer) == [Start("chatcmpl-1", "m", 1), *expected, End()]


def test_an_error_body_decodes_into_a_failure() -> None:
    error = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    assert CODEC.decode_answer(error) == [Failure("boom", code="server_error")]


def test_a_whole_answer_round_trips_through_its_events() -> None:
    again = CODEC.encode_answer(CODEC.decode_answer(OPENAI_ANSWER), CONVERSATION)
    expected = json.loads(json.dumps(OPENAI_ANSWER))
    expected["model"] = CLIENT_MODEL
    for key in ("service_tier", "system_fingerprint"):
        del expected[key]
    del expected["choices"][0]["message"]["annotations"]
    expected["usage"]["prompt_tokens_details"] = {"cached_tokens": 1024}
    expected["usage"]["completion_tokens_details"] = {"reasoning_tokens": 0}
    assert again == expected


def test_a_failure_among_whole_answer_events_is_openais_error_body() -> None:
    body = CODEC.encode_answer(
        [START, Failure("slow down", code="rate_limited", category="rate_limit")], CONVERSATION
    )
    assert body["error"]["message"] == "slow down"
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["type"] == "rate_limit_error"
