"""Chat Completions request bodies read into a `Conversation`, and written from one."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest, UntranslatableParameter
from gateway.translation import (
    Conversation,
    EncodeOptions,
    ImagePart,
    JsonSchemaFormat,
    Message,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from gateway.translation.openai_chat import CODEC

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
WEATHER_TOOL = Tool(
    name="get_weather",
    description="The weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    strict=True,
)
HI = {"role": "user", "content": "hi"}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [HI], **fields}


def conversation(**fields: Any) -> Conversation:
    values: dict[str, Any] = {"model": "gpt-4o", "messages": (Message("user", (TextPart("hi"),)),)}
    values.update(fields)
    return Conversation(**values)


# -- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        pytest.param(body(), conversation(), id="minimal"),
        pytest.param(
            {
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
                    HI,
                ],
            },
            conversation(system="Be brief.\n\nBe kind."),
            id="system-and-developer",
        ),
        pytest.param(
            {
                "model": "gpt-4o",
                "messages": [
                    HI,
                    {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "And?"},
                ],
            },
            conversation(
                messages=(
                    Message("user", (TextPart("hi"),)),
                    Message("assistant", (TextPart("Hello!"),)),
                    Message("user", (TextPart("And?"),)),
                )
            ),
            id="multi-turn",
        ),
        pytest.param(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is it?"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                            },
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"},
                            },
                        ],
                    }
                ]
            ),
            conversation(
                messages=(
                    Message(
                        "user",
                        (
                            TextPart("What is it?"),
                            ImagePart(url="https://x.test/a.png", detail="low"),
                            ImagePart(data="/9j/4AAQ", media_type="image/jpeg"),
                        ),
                    ),
                )
            ),
            id="images-url-and-base64",
        ),
        pytest.param(
            body(
                messages=[
                    HI,
                    {
                        "role": "assistant",
                        "content": None,
                        "reasoning_content": "They want weather.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"P"}'},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"L"}'},
                            },
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                    {
                        "role": "tool",
                        "tool_call_id": "call_2",
                        "content": [{"type": "text", "text": "rain"}],
                    },
                    {"role": "user", "content": "Thanks"},
                ],
                tools=[WEATHER],
                tool_choice="required",
                parallel_tool_calls=True,
            ),
            conversation(
                messages=(
                    Message("user", (TextPart("hi"),)),
                    Message(
                        "assistant",
                        (
                            ReasoningPart("They want weather."),
                            ToolCallPart("call_1", "get_weather", '{"city":"P"}'),
                            ToolCallPart("call_2", "get_weather", '{"city":"L"}'),
                        ),
                    ),
                    Message(
                        "user",
                        (
                            ToolResultPart("call_1", (TextPart("sunny"),)),
                            ToolResultPart("call_2", (TextPart("rain"),)),
                        ),
                    ),
                    Message("user", (TextPart("Thanks"),)),
                ),
                tools=(WEATHER_TOOL,),
                tool_choice=ToolChoice("required"),
                parallel_tool_calls=True,
            ),
            id="tools-calls-and-results",
        ),
        pytest.param(
            body(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
            conversation(tool_choice=ToolChoice("tool", "get_weather")),
            id="tool-choice-named",
        ),
        pytest.param(
            body(
                messages=[
                    HI,
                    {
                        "role": "assistant",
                        "content": [{"type": "refusal", "refusal": "I can't."}],
                    },
                ]
            ),
            conversation(
                messages=(
                    Message("user", (TextPart("hi"),)),
                    Message("assistant", (TextPart("I can't."),)),
                )
            ),
            id="assistant-refusal-part",
        ),
        pytest.param(
            body(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
                }
            ),
            conversation(
                response_format=JsonSchemaFormat(
                    schema={"type": "object"}, name="answer", strict=True
                )
            ),
            id="json-schema",
        ),
        pytest.param(
            body(response_format={"type": "json_object"}),
            conversation(response_format=JsonSchemaFormat()),
            id="json-object",
        ),
        pytest.param(body(response_format={"type": "text"}), conversation(), id="text-format"),
        pytest.param(
            body(
                max_tokens=100,
                max_completion_tokens=200,
                temperature=1,
                top_p=0.5,
                stop="END",
                reasoning_effort="high",
                user="u-1",
                stream=True,
                stream_options={"include_usage": True},
            ),
            conversation(
                max_tokens=200,
                temperature=1.0,
                top_p=0.5,
                stop=("END",),
                reasoning_effort="high",
                user="u-1",
                stream=True,
                stream_usage=True,
            ),
            id="limits-sampling-stop-reasoning-stream",
        ),
        pytest.param(
            body(max_tokens=64, stop=["a", "b"]),
            conversation(max_tokens=64, stop=("a", "b")),
            id="max-tokens-stop-list",
        ),
        pytest.param(
            body(n=1, logprobs=False, presence_penalty=0, store=False, seed=None, stream=False),
            conversation(),
            id="defaults-ask-nothing",
        ),
        pytest.param(
            body(
                n=2,
                logprobs=True,
                top_logprobs=3,
                seed=7,
                frequency_penalty=0.5,
                logit_bias={"50256": -100},
                metadata={"k": "v"},
                service_tier="flex",
            ),
            conversation(
                extras={
                    "n": 2,
                    "logprobs": True,
                    "top_logprobs": 3,
                    "seed": 7,
                    "frequency_penalty": 0.5,
                    "logit_bias": {"50256": -100},
                    "metadata": {"k": "v"},
                    "service_tier": "flex",
                }
            ),
            id="extras-by-name",
        ),
        pytest.param(
            body(tools=[{"type": "custom", "custom": {"name": "grammar"}}, WEATHER]),
            conversation(
                extras={"tools": [{"type": "custom", "custom": {"name": "grammar"}}, WEATHER]}
            ),
            id="custom-tool-keeps-the-field",
        ),
        pytest.param(
            body(tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}),
            conversation(
                extras={"tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto"}}}
            ),
            id="allowed-tools-keeps-the-field",
        ),
    ],
)
def test_a_request_decodes_into_its_conversation(
    request_body: dict[str, Any], expected: Conversation
) -> None:
    assert CODEC.decode_request(request_body) == expected


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]},
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]},
            "messages[0].content[0]",
        ),
        ({"role": "function", "name": "f", "content": "x"}, "messages[0]"),
        (
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            "messages[0].function_call",
        ),
    ],
)
def test_content_no_other_api_can_carry_is_refused_by_name(
    message: dict[str, Any], param: str
) -> None:
    with pytest.raises(UntranslatableParameter) as raised:
        CODEC.decode_request(body(messages=[message]))
    assert raised.value.param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": True}, "max_tokens"),
        ({"stop": [1]}, "stop"),
    ],
)
def test_a_body_the_api_would_refuse_is_an_invalid_request(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        CODEC.decode_request(body(**fields))
    assert not isinstance(raised.value, UntranslatableParameter)
    assert raised.value.param == param


# -- encoding ---------------------------------------------------------------------------------

OPTIONS = EncodeOptions()
DROP = EncodeOptions(drop_params=True)


def encode(conv: Conversation, options: EncodeOptions = OPTIONS) -> dict[str, Any]:
    return CODEC.encode_request(conv, model="llama-3", options=options)


def test_a_conversation_from_another_api_encodes_into_a_chat_body() -> None:
    conv = conversation(
        system="Be brief.",
        messages=(
            Message(
                "user",
                (
                    TextPart("Weather here?"),
                    ImagePart(data="iVBOR", media_type="image/png"),
                    ImagePart(url="https://x.test/a.png", detail="high"),
                ),
            ),
            Message(
                "assistant",
                (
                    ReasoningPart("think", signature="sig"),
                    TextPart("Checking."),
                    ToolCallPart("toolu_1", "get_weather", '{"city":"P"}'),
                ),
            ),
            Message(
                "user",
                (ToolResultPart("toolu_1", (TextPart("sunny"), TextPart("22C"))), TextPart("ok?")),
            ),
        ),
        tools=(WEATHER_TOOL, Tool(name="noop")),
        tool_choice=ToolChoice("tool", "get_weather"),
        parallel_tool_calls=False,
        response_format=JsonSchemaFormat(schema={"type": "object"}, strict=True),
        max_tokens=1024,
        temperature=0.2,
        top_p=0.9,
        stop=("END", "STOP"),
        reasoning_effort="low",
        user="u-1",
        stream=True,
    )
    assert encode(conv) == {
        "model": "llama-3",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png", "detail": "high"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"P"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny\n22C"},
            {"role": "user", "content": "ok?"},
        ],
        "tools": [
            WEATHER,
            {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": True},
        },
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "reasoning_effort": "low",
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_a_minimal_conversation_encodes_into_a_minimal_body() -> None:
    assert encode(conversation()) == {"model": "llama-3", "messages": [HI]}


@pytest.mark.parametrize(
    ("choice", "written"),
    [
        (ToolChoice("auto"), "auto"),
        (ToolChoice("none"), "none"),
        (ToolChoice("required"), "required"),
        (ToolChoice("tool", "f"), {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_each_tool_choice_is_written(choice: ToolChoice, written: Any) -> None:
    assert encode(conversation(tool_choice=choice))["tool_choice"] == written


def test_json_mode_is_json_object() -> None:
    form = encode(conversation(response_format=JsonSchemaFormat()))["response_format"]
    assert form == {"type": "json_object"}


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (2048, "medium"), (5000, "medium"), (16000, "high")]
)
def test_a_thinking_budget_is_the_nearest_effort(budget: int, effort: str) -> None:
    assert encode(conversation(reasoning_budget=budget))["reasoning_effort"] == effort


def test_an_effort_given_wins_over_a_budget() -> None:
    conv = conversation(reasoning_budget=16000, reasoning_effort="minimal")
    assert encode(conv)["reasoning_effort"] == "minimal"


def test_another_apis_parameter_is_refused_by_name_unless_dropped() -> None:
    conv = conversation(extras={"top_k": 5, "metadata": {"user_id": "u"}})
    with pytest.raises(UntranslatableParameter) as raised:
        encode(conv)
    assert raised.value.param == "metadata"
    assert raised.value.http_status == 400
    assert encode(conv, DROP) == {"model": "llama-3", "messages": [HI]}


def test_an_image_in_a_tool_result_is_refused_unless_dropped() -> None:
    result = ToolResultPart("t1", (TextPart("see"), ImagePart(url="https://x.test/p.png")))
    conv = conversation(messages=(Message("user", (result,)),))
    with pytest.raises(UntranslatableParameter) as raised:
        encode(conv)
    assert raised.value.param == "messages"
    assert encode(conv, DROP)["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "see"}
    ]


def test_a_chat_body_survives_decoding_and_encoding() -> None:
    original = body(
        messages=[
            {"role": "system", "content": "S"},
            HI,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        max_tokens=5,
        temperature=0.5,
        stop=["x"],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert encode(CODEC.decode_request(original)) == {**original, "model": "llama-3"}
