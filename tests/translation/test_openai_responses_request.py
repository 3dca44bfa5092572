"""The Responses codec's requests: a Responses body decoded into a `Conversation`, and a
`Conversation` from another API encoded as a Responses body (refusing what it cannot honour)."""

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
from gateway.translation.openai_responses import CODEC

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}


def decode(**body: Any) -> Conversation:
    return CODEC.decode_request({"model": "m", **body})


def test_a_string_input_is_one_user_message() -> None:
    conversation = decode(input="Hello", stream=True)
    assert conversation.messages == (Message("user", (TextPart("Hello"),)),)
    assert conversation.model == "m"
    assert conversation.stream
    assert conversation.stream_usage


def test_instructions_then_system_and_developer_messages_make_the_system_prompt() -> None:
    conversation = decode(
        instructions="Be brief.",
        input=[
            {"role": "system", "content": "You are terse."},
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "No emoji."}],
            },
            {"role": "user", "content": "hi"},
        ],
    )
    assert conversation.system == "Be brief.\n\nYou are terse.\n\nNo emoji."
    assert conversation.messages == (Message("user", (TextPart("hi"),)),)


def test_multi_turn_history_with_tool_calls_and_results() -> None:
    conversation = decode(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "id": "rs_1",
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "Two calls."}],
                "encrypted_content": "enc",
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "weather",
                "arguments": '{"city":"Rome"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "21C"}],
            },
            {"role": "user", "content": "Thanks"},
        ]
    )
    assert conversation.messages == (
        Message("user", (TextPart("Weather in Paris and Rome?"),)),
        Message(
            "assistant",
            (
                ReasoningPart("Two calls.", id="rs_1", encrypted="enc"),
                TextPart("Checking."),
                ToolCallPart("c1", "weather", '{"city":"Paris"}'),
                ToolCallPart("c2", "weather", '{"city":"Rome"}'),
            ),
        ),
        Message(
            "user",
            (ToolResultPart("c1", (TextPart("18C"),)), ToolResultPart("c2", (TextPart("21C"),))),
        ),
        Message("user", (TextPart("Thanks"),)),
    )


def test_images_by_url_and_inline_and_by_file_id() -> None:
    conversation = decode(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,QUJD"},
                    {"type": "input_image", "file_id": "file-1"},
                ],
            }
        ]
    )
    assert conversation.messages[0].content == (
        TextPart("What is this?"),
        ImagePart(url="https://x.test/a.png", detail="low"),
        ImagePart(data="QUJD", media_type="image/jpeg"),
    )
    assert conversation.extras == {
        "input[0].content[3]": {"type": "input_image", "file_id": "file-1"}
    }


def test_function_tools_and_built_in_tools() -> None:
    conversation = decode(
        input="hi",
        tools=[
            {
                "type": "function",
                "name": "f",
                "description": "F.",
                "parameters": SCHEMA,
                "strict": True,
            },
            {"type": "web_search"},
        ],
        parallel_tool_calls=False,
    )
    assert conversation.tools == (Tool("f", "F.", SCHEMA, strict=True),)
    assert conversation.extras == {"tools[1]": {"type": "web_search"}}
    assert conversation.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("given", "choice"),
    [
        ("auto", ToolChoice("auto")),
        ("none", ToolChoice("none")),
        ("required", ToolChoice("required")),
        ({"type": "function", "name": "f"}, ToolChoice("tool", "f")),
    ],
)
def test_tool_choice(given: Any, choice: ToolChoice) -> None:
    assert decode(input="hi", tool_choice=given).tool_choice == choice


def test_a_tool_choice_of_a_built_in_tool_is_kept_in_extras() -> None:
    conversation = decode(input="hi", tool_choice={"type": "web_search_preview"})
    assert conversation.tool_choice is None
    assert conversation.extras == {"tool_choice": {"type": "web_search_preview"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "text"}}, None),
        ({"format": {"type": "json_object"}}, JsonSchemaFormat()),
        (
            {"format": {"type": "json_schema", "name": "a", "schema": SCHEMA, "strict": True}},
            JsonSchemaFormat(SCHEMA, "a", True),
        ),
    ],
)
def test_text_format(text: dict[str, Any], expected: JsonSchemaFormat | None) -> None:
    assert decode(input="hi", text=text).response_format == expected


def test_limits_sampling_reasoning_and_user() -> None:
    conversation = decode(
        input="hi",
        max_output_tokens=300,
        temperature=0.2,
        top_p=0.9,
        reasoning={"effort": "high", "summary": "auto"},
        safety_identifier="user-1",
    )
    assert conversation.max_tokens == 300
    assert (conversation.temperature, conversation.top_p) == (0.2, 0.9)
    assert conversation.reasoning_effort == "high"
    assert conversation.user == "user-1"
    assert conversation.extras == {}
    assert decode(input="hi", user="legacy").user == "legacy"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("previous_response_id", "resp_1"),
        ("background", True),
        ("conversation", "conv_1"),
        ("prompt", {"id": "pmpt_1"}),
        ("metadata", {"k": "v"}),
        ("truncation", "auto"),
        ("include", ["message.output_text.logprobs"]),
        ("service_tier", "flex"),
        ("top_logprobs", 3),
    ],
)
def test_what_a_conversation_cannot_carry_is_kept_in_extras(name: str, value: Any) -> None:
    assert decode(input="hi", **{name: value}).extras == {name: value}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("include", []),
        ("include", ["reasoning.encrypted_content"]),
        ("metadata", {}),
        ("truncation", "disabled"),
        ("background", False),
        ("store", True),
        ("store", False),
        ("stream_options", {"include_obfuscation": False}),
    ],
)
def test_fields_at_their_default_ask_for_nothing(name: str, value: Any) -> None:
    assert decode(input="hi", **{name: value}).extras == {}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 3}, "input"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0]"),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format"),
        ({"input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
    ],
)
def test_a_body_the_api_refuses_is_invalid_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode(**body)
    assert caught.value.param == param


# -- encoding for a Responses target ---------------------------------------------------------

OPTIONS = EncodeOptions()


def encode(conversation: Conversation, options: EncodeOptions = OPTIONS) -> dict[str, Any]:
    return CODEC.encode_request(conversation, model="gpt-target", options=options)


def test_a_conversation_becomes_a_responses_body() -> None:
    conversation = Conversation(
        model="claude-client",
        system="Be brief.",
        stream=True,
        stream_usage=True,
        messages=(
            Message(
                "user",
                (
                    TextPart("Look:"),
                    ImagePart(url="https://x.test/a.png"),
                    ImagePart(data="QUJD", media_type="image/png", detail="high"),
                ),
            ),
            Message(
                "assistant",
                (
                    ReasoningPart("thinking", signature="sig"),
                    TextPart("Calling."),
                    ToolCallPart("c1", "f", '{"a":"b"}'),
                ),
            ),
            Message(
                "user",
                (
                    ToolResultPart("c1", (TextPart("done"),), is_error=True),
                    ToolResultPart("c2", (ImagePart(url="https://x.test/b.png"),)),
                    TextPart("Go on"),
                ),
            ),
        ),
        tools=(Tool("f", "F.", SCHEMA),),
        tool_choice=ToolChoice("tool", "f"),
        parallel_tool_calls=True,
        response_format=JsonSchemaFormat(SCHEMA, "out", True),
        max_tokens=1024,
        temperature=0.7,
        top_p=0.5,
        reasoning_budget=4000,
        user="u-1",
    )
    assert encode(conversation) == {
        "model": "gpt-target",
        "instructions": "Be brief.",
        "stream": True,
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look:"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "auto"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,QUJD",
                        "detail": "high",
                    },
                ],
            },
            {"role": "assistant", "content": "Calling."},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":"b"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [
                    {"type": "input_image", "image_url": "https://x.test/b.png", "detail": "auto"}
                ],
            },
            {"role": "user", "content": [{"type": "input_text", "text": "Go on"}]},
        ],
        "tools": [
            {
                "type": "function",
                "name": "f",
                "description": "F.",
                "parameters": SCHEMA,
                "strict": False,
            }
        ],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": True,
        "text": {
            "format": {"type": "json_schema", "name": "out", "schema": SCHEMA, "strict": True}
        },
        "max_output_tokens": 1024,
        "temperature": 0.7,
        "top_p": 0.5,
        "reasoning": {"effort": "medium"},
        "safety_identifier": "u-1",
        "store": False,
    }


@pytest.mark.parametrize(
    ("conversation", "param"),
    [
        (Conversation("m", (), stop=("END",)), "stop"),
        (Conversation("m", (), max_tokens=8), "max_tokens"),
        (Conversation("m", (), extras={"frequency_penalty": 0.5}), "frequency_penalty"),
        (Conversation("m", (), extras={"top_k": 5}), "top_k"),
    ],
)
def test_what_responses_cannot_honour_is_refused_or_dropped(
    conversation: Conversation, param: str
) -> None:
    with pytest.raises(UntranslatableParameter) as caught:
        encode(conversation)
    assert caught.value.param == param
    dropped = encode(conversation, EncodeOptions(drop_params=True))
    assert dropped == {"model": "gpt-target", "input": [], "store": False}


def test_json_mode_and_named_tool_choices() -> None:
    body = encode(
        Conversation(
            "m", (), response_format=JsonSchemaFormat(), tool_choice=ToolChoice("required")
        )
    )
    assert body["text"] == {"format": {"type": "json_object"}}
    assert body["tool_choice"] == "required"


def test_a_responses_request_survives_decode_encode_decode() -> None:
    body = {
        "model": "m",
        "instructions": "sys",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"role": "assistant", "content": "calling"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": SCHEMA, "strict": False}],
        "max_output_tokens": 64,
        "reasoning": {"effort": "low"},
        "store": False,
    }
    conversation = CODEC.decode_request(body)
    again = CODEC.decode_request(CODEC.encode_request(conversation, model="m", options=OPTIONS))
    assert again == conversation
