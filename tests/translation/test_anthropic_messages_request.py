"""The Messages codec's requests: Messages bodies read into a `Conversation`, and
conversations of other APIs written as Messages bodies (refused and dropped parameters)."""

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
from gateway.translation.anthropic_messages import CODEC

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5Erk"
    "Jggg=="
)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
STRICT = EncodeOptions()
LENIENT = EncodeOptions(drop_params=True)


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hi"}],
        **fields,
    }


def conversation(*messages: Message, **fields: Any) -> Conversation:
    return Conversation(
        model="client-model", messages=messages or (Message("user", (TextPart("Hi"),)),), **fields
    )


# --- decoding ------------------------------------------------------------------------------


def test_a_whole_request_is_read() -> None:
    decoded = CODEC.decode_request(
        body(
            system=[
                {"type": "text", "text": "Be brief."},
                {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}},
            ],
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "https://example.com/a.jpg"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Look closely.", "signature": "sig1"},
                        {"type": "redacted_thinking", "data": "opaque"},
                        {"type": "text", "text": "Let me check."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": "Sunny",
                            "is_error": False,
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": [
                                {"type": "text", "text": "failed"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://example.com/e.png"},
                                },
                            ],
                            "is_error": True,
                        },
                    ],
                },
            ],
            tools=[
                {
                    "name": "get_weather",
                    "description": "Weather by city",
                    "input_schema": WEATHER_SCHEMA,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            temperature=0.2,
            top_p=0.9,
            stop_sequences=["END"],
            thinking={"type": "enabled", "budget_tokens": 2048},
            metadata={"user_id": "user-42"},
            stream=True,
        )
    )
    assert decoded == Conversation(
        model="claude-sonnet-4-5",
        system="Be brief.\n\nBe kind.",
        messages=(
            Message(
                "user",
                (
                    TextPart("What is in these?"),
                    ImagePart(data=PNG, media_type="image/png"),
                    ImagePart(url="https://example.com/a.jpg"),
                ),
            ),
            Message(
                "assistant",
                (
                    ReasoningPart("Look closely.", signature="sig1"),
                    ReasoningPart("", redacted="opaque"),
                    TextPart("Let me check."),
                    ToolCallPart("toolu_1", "get_weather", '{"city":"Paris"}'),
                ),
            ),
            Message(
                "user",
                (
                    ToolResultPart("toolu_1", (TextPart("Sunny"),)),
                    ToolResultPart(
                        "toolu_2",
                        (TextPart("failed"), ImagePart(url="https://example.com/e.png")),
                        is_error=True,
                    ),
                ),
            ),
        ),
        stream=True,
        tools=(Tool("get_weather", "Weather by city", WEATHER_SCHEMA),),
        tool_choice=ToolChoice("required"),
        parallel_tool_calls=False,
        max_tokens=1024,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        reasoning_budget=2048,
        user="user-42",
    )


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, ToolChoice("auto")),
        ({"type": "any"}, ToolChoice("required")),
        ({"type": "tool", "name": "get_weather"}, ToolChoice("tool", "get_weather")),
        ({"type": "none"}, ToolChoice("none")),
    ],
)
def test_tool_choices_are_read(choice: dict[str, Any], expected: ToolChoice) -> None:
    decoded = CODEC.decode_request(body(tool_choice=choice))
    assert (decoded.tool_choice, decoded.parallel_tool_calls) == (expected, None)


def test_what_a_conversation_cannot_carry_is_kept_as_extras_by_name() -> None:
    search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "x"},
    }
    file_image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    decoded = CODEC.decode_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Read"}, document, file_image],
                }
            ],
            tools=[search, {"name": "f", "input_schema": {"type": "object"}}],
            top_k=5,
            service_tier="auto",
            container="container_1",
            mcp_servers=[{"type": "url", "url": "https://mcp.example.com", "name": "m"}],
            metadata={"user_id": "u", "other": 1},
            cache_control={"type": "ephemeral"},
        )
    )
    assert decoded.extras == {
        "top_k": 5,
        "service_tier": "auto",
        "container": "container_1",
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "m"}],
        "messages[0].content[1]": document,
        "messages[0].content[2]": file_image,
        "tools[0]": search,
        "metadata": {"other": 1},
    }
    assert decoded.messages == (Message("user", (TextPart("Read"),)),)
    assert decoded.tools == (Tool("f", None, {"type": "object"}),)


def test_adaptive_thinking_and_output_config_are_read() -> None:
    decoded = CODEC.decode_request(
        body(
            thinking={"type": "adaptive"},
            output_config={
                "effort": "low",
                "format": {"type": "json_schema", "schema": WEATHER_SCHEMA},
            },
        )
    )
    assert decoded.reasoning_effort == "low"
    assert decoded.response_format == JsonSchemaFormat(schema=WEATHER_SCHEMA)
    assert decoded.extras == {}
    assert CODEC.decode_request(body(thinking={"type": "adaptive"})).reasoning_effort == "high"
    disabled = CODEC.decode_request(body(thinking={"type": "disabled"}))
    assert (disabled.reasoning_budget, disabled.reasoning_effort, disabled.extras) == (
        None,
        None,
        {},
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"messages": [{"role": "system", "content": "x"}]},
        {"messages": [{"role": "user", "content": 3}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "a"}]}
            ]
        },
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        {"system": [{"type": "image"}]},
        {"tool_choice": {"type": "sometimes"}},
        {"tools": [{"name": "f", "input_schema": "object"}]},
        {"stop_sequences": "END"},
        {"temperature": "hot"},
    ],
)
def test_a_body_anthropic_would_refuse_is_invalid(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        CODEC.decode_request(body(**fields))


# --- encoding ------------------------------------------------------------------------------


def test_a_conversation_of_another_api_is_written_as_a_messages_body() -> None:
    encoded = CODEC.encode_request(
        conversation(
            Message(
                "user",
                (
                    TextPart("Look"),
                    ImagePart(url="https://example.com/a.jpg", detail="high"),
                    ImagePart(data=PNG),
                ),
            ),
            Message(
                "assistant",
                (
                    ReasoningPart("OpenAI's own", id="rs_1", encrypted="enc"),
                    TextPart(""),
                    ToolCallPart("call_1", "get_weather", '{"city": "Paris"}'),
                    ToolCallPart("call_2", "get_weather", ""),
                ),
            ),
            Message("user", (ToolResultPart("call_1", (TextPart("Sunny"),)),)),
            Message("user", (ToolResultPart("call_2", (), is_error=True), TextPart("And now?"))),
            system="Be brief.",
            tools=(Tool("get_weather", "Weather", WEATHER_SCHEMA, strict=True),),
            tool_choice=ToolChoice("tool", "get_weather"),
            parallel_tool_calls=False,
            temperature=0.5,
            top_p=0.8,
            stop=("END", "STOP"),
            user="user-7",
            stream=True,
            stream_usage=True,
        ),
        model="claude-haiku-4-5",
        options=EncodeOptions(default_max_tokens=2000),
    )
    assert encoded == {
        "model": "claude-haiku-4-5",
        "max_tokens": 2000,
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "is_error": True},
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather",
                "input_schema": WEATHER_SCHEMA,
                "strict": True,
            }
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "stop_sequences": ["END", "STOP"],
        "temperature": 0.5,
        "top_p": 0.8,
        "metadata": {"user_id": "user-7"},
        "stream": True,
    }


def test_a_tool_results_images_and_a_data_url_are_written_as_blocks() -> None:
    encoded = CODEC.encode_request(
        conversation(
            Message(
                "user",
                (
                    TextPart("first"),
                    ToolResultPart(
                        "c", (TextPart("a"), ImagePart(url=f"data:image/png;base64,{PNG}"))
                    ),
                ),
            ),
            Message("user", (ImagePart(data="/9j/4AAQSkZJRg"),)),
        ),
        model="m",
        options=STRICT,
    )
    assert encoded["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "c",
                    "content": [
                        {"type": "text", "text": "a"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                },
                {"type": "text", "text": "first"},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/jpeg",
                        "data": "/9j/4AAQSkZJRg",
                    },
                },
            ],
        }
    ]


def test_anthropic_thinking_in_the_history_is_replayed() -> None:
    encoded = CODEC.encode_request(
        conversation(
            Message("user", (TextPart("q"),)),
            Message(
                "assistant",
                (
                    ReasoningPart("hm", signature="sig"),
                    ReasoningPart("", redacted="opaque"),
                    TextPart("a"),
                ),
            ),
        ),
        model="m",
        options=STRICT,
    )
    assert encoded["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "hm", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "a"},
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (ToolChoice("auto"), None, {"type": "auto"}),
        (ToolChoice("required"), None, {"type": "any"}),
        (ToolChoice("none"), False, {"type": "none"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_tool_choices_are_written(
    choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any] | None
) -> None:
    encoded = CODEC.encode_request(
        conversation(tools=(Tool("f"),), tool_choice=choice, parallel_tool_calls=parallel),
        model="m",
        options=STRICT,
    )
    assert encoded.get("tool_choice") == expected
    assert encoded["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("fields", "default", "thinking", "max_tokens"),
    [
        ({}, 4096, None, 4096),
        ({"max_tokens": 300}, 4096, None, 300),
        ({"reasoning_effort": "low"}, 4096, 1024, 4096),
        ({"reasoning_effort": "medium"}, 4096, 4096, 8192),
        ({"reasoning_effort": "high"}, 4096, 16384, 20480),
        ({"reasoning_effort": "high", "max_tokens": 10000}, 4096, 9999, 10000),
        ({"reasoning_effort": "low", "max_tokens": 1000}, 4096, None, 1000),
        ({"reasoning_effort": "none"}, 4096, None, 4096),
        ({"reasoning_budget": 5000, "max_tokens": 8000}, 4096, 5000, 8000),
        ({"reasoning_budget": 100}, 4096, 1024, 4096),
    ],
)
def test_reasoning_is_a_thinking_budget_below_max_tokens(
    fields: dict[str, Any], default: int, thinking: int | None, max_tokens: int
) -> None:
    encoded = CODEC.encode_request(
        conversation(**fields), model="m", options=EncodeOptions(default_max_tokens=default)
    )
    assert encoded["max_tokens"] == max_tokens
    expected = {"type": "enabled", "budget_tokens": thinking} if thinking is not None else None
    assert encoded.get("thinking") == expected


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 1.5}, "temperature"),
        ({"response_format": JsonSchemaFormat(schema=WEATHER_SCHEMA, name="w")}, "response_format"),
        ({"response_format": JsonSchemaFormat()}, "response_format"),
        ({"reasoning_effort": "enormous"}, "reasoning_effort"),
        ({"extras": {"logprobs": True}}, "logprobs"),
        ({"extras": {"seed": 7, "n": 2}}, "seed"),
    ],
)
def test_what_anthropic_cannot_honour_is_refused_by_name_unless_dropped(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(UntranslatableParameter) as refused:
        CODEC.encode_request(conversation(**fields), model="m", options=STRICT)
    assert refused.value.param == param
    assert param in refused.value.message
    dropped = CODEC.encode_request(conversation(**fields), model="m", options=LENIENT)
    assert set(dropped) <= {"model", "max_tokens", "messages", "temperature"}
    assert dropped.get("temperature", 1.0) == 1.0


@pytest.mark.parametrize(
    ("fields", "param", "kept"),
    [
        ({"temperature": 0.2}, "temperature", {}),
        ({"top_p": 0.5}, "top_p", {}),
        (
            {"tools": (Tool("f"),), "tool_choice": ToolChoice("tool", "f")},
            "tool_choice",
            {"tool_choice": {"type": "auto"}},
        ),
        (
            {
                "tools": (Tool("f"),),
                "tool_choice": ToolChoice("required"),
                "parallel_tool_calls": False,
            },
            "tool_choice",
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        ),
    ],
)
def test_what_anthropic_refuses_beside_thinking_is_refused_unless_dropped(
    fields: dict[str, Any], param: str, kept: dict[str, Any]
) -> None:
    asked = conversation(reasoning_effort="medium", **fields)
    with pytest.raises(UntranslatableParameter) as refused:
        CODEC.encode_request(asked, model="m", options=STRICT)
    assert refused.value.param == param
    dropped = CODEC.encode_request(asked, model="m", options=LENIENT)
    assert {
        key: dropped[key] for key in ("temperature", "top_p", "tool_choice") if key in dropped
    } == kept
    assert dropped["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    allowed = conversation(reasoning_effort="medium", temperature=1.0, top_p=0.95)
    assert CODEC.encode_request(allowed, model="m", options=STRICT)["top_p"] == 0.95


def test_a_tool_call_whose_arguments_are_not_an_object_is_refused_naming_it() -> None:
    history = (
        Message("user", (TextPart("q"),)),
        Message("assistant", (ToolCallPart("call_9", "f", '{"a": '),)),
    )
    for options in (STRICT, LENIENT):
        with pytest.raises(UntranslatableParameter) as refused:
            CODEC.encode_request(conversation(*history), model="m", options=options)
        assert refused.value.param == "messages"
        assert "call_9" in refused.value.message


def test_a_part_a_turn_of_its_role_cannot_hold_is_refused_unless_dropped() -> None:
    history = (
        Message("user", (TextPart("q"),)),
        Message("assistant", (TextPart("see"), ImagePart(url="https://example.com/x.png"))),
    )
    with pytest.raises(UntranslatableParameter) as refused:
        CODEC.encode_request(conversation(*history), model="m", options=STRICT)
    assert refused.value.param == "messages"
    dropped = CODEC.encode_request(conversation(*history), model="m", options=LENIENT)
    assert dropped["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "see"}],
    }


def test_a_messages_request_survives_decoding_and_encoding() -> None:
    original = body(
        max_tokens=4000,
        system="S",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"x": [1, 2]}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}],
            },
        ],
        tools=[{"name": "f", "input_schema": WEATHER_SCHEMA}],
        tool_choice={"type": "auto"},
        stop_sequences=["Z"],
        top_p=0.96,
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "u"},
        stream=True,
    )
    encoded = CODEC.encode_request(
        CODEC.decode_request(original), model=original["model"], options=STRICT
    )
    assert encoded == original
