"""A `Conversation` (from another API) written as a Responses request body, for a target that
speaks only the Responses API; and the request fields a response object echoes.

The system prompt is `instructions`; user turns are `message` items (text and images: a URL,
or base64 as a `data:` URL) and `function_call_output` items (a tool result's text, or its
parts when it holds images); assistant turns are `message` items and `function_call` items;
reasoning is carried only where it is OpenAI's own (a reasoning item `id`), else left out (only
the API that made it can replay it). Tools are `function` tools, `strict: false` unless the
client said (the Responses API's own default is strict, which other APIs' schemas rarely meet).
The call is `store: false`: the client, speaking another API, cannot ask about it later.

Refused (a 400 naming the parameter, or left out with `drop_params`): `stop` (the Responses
API has no stop sequences), a `max_tokens` below the API's minimum of 16, and every entry of
`extras` (parameters of the client's API that this one has no place for). A reasoning token
budget (Anthropic's thinking) with no effort becomes the nearest effort (`low` under 2048
tokens, `medium` under 8192, else `high`). Left out as harmless: a tool result's `is_error`
(its content says what failed), `stream_usage` (a Responses stream always reports usage).
"""

from __future__ import annotations

from typing import Any

from gateway.errors import UntranslatableParameter
from gateway.translation.codec import EncodeOptions
from gateway.translation.conversation import (
    Conversation,
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

__all__ = ["encode_request", "text_config", "tool_choice_field", "tools_field"]

#: The smallest `max_output_tokens` the Responses API takes.
MIN_OUTPUT_TOKENS = 16
#: Reasoning budgets (tokens) below which an effort is the nearest: else `high`.
_EFFORTS = ((2048, "low"), (8192, "medium"))


def encode_request(
    conversation: Conversation, *, model: str, options: EncodeOptions
) -> dict[str, Any]:
    """The Responses body for `conversation` on `model` (see the module docstring)."""
    refuse = _Refusals(options)
    for name in conversation.extras:
        refuse(name)
    if conversation.stop:
        refuse("stop")
    if conversation.continue_final:
        refuse("messages")  # the Responses API has no prefill to continue
    body: dict[str, Any] = {"model": model, "input": _input(conversation.messages)}
    if conversation.system:
        body["instructions"] = conversation.system
    if conversation.stream:
        body["stream"] = True
    if conversation.tools:
        body["tools"] = tools_field(conversation.tools)
    if conversation.tool_choice is not None:
        body["tool_choice"] = tool_choice_field(conversation.tool_choice)
    if conversation.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = conversation.parallel_tool_calls
    if conversation.response_format is not None:
        body["text"] = text_config(conversation.response_format)
    if conversation.max_tokens is not None:
        if conversation.max_tokens >= MIN_OUTPUT_TOKENS:
            body["max_output_tokens"] = conversation.max_tokens
        else:
            refuse("max_tokens")
    for name in ("temperature", "top_p"):
        value = getattr(conversation, name)
        if value is not None:
            body[name] = value
    effort = conversation.reasoning_effort or _effort(conversation.reasoning_budget)
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    if conversation.user is not None:
        body["safety_identifier"] = conversation.user
    body["store"] = False
    return body


class _Refusals:
    """Refuse a parameter (`UntranslatableParameter`), unless the route drops them."""

    def __init__(self, options: EncodeOptions) -> None:
        self._drop = options.drop_params

    def __call__(self, name: str) -> None:
        if not self._drop:
            raise UntranslatableParameter(param=name)


def tools_field(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """The `tools` of a Responses body (and of a response object's echo)."""
    written: list[dict[str, Any]] = []
    for tool in tools:
        entry: dict[str, Any] = {"type": "function", "name": tool.name}
        if tool.description is not None:
            entry["description"] = tool.description
        entry["parameters"] = tool.parameters
        entry["strict"] = bool(tool.strict)
        written.append(entry)
    return written


def tool_choice_field(choice: ToolChoice) -> str | dict[str, Any]:
    """`tool_choice` as the Responses API says it."""
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return choice.mode


def text_config(response_format: JsonSchemaFormat | None) -> dict[str, Any]:
    """`text` (its `format`) of a Responses body or response object."""
    if response_format is None:
        return {"format": {"type": "text"}}
    if response_format.schema is None:
        return {"format": {"type": "json_object"}}
    written: dict[str, Any] = {
        "type": "json_schema",
        "name": response_format.name or "response",
        "schema": response_format.schema,
    }
    if response_format.strict is not None:
        written["strict"] = response_format.strict
    return {"format": written}


def _effort(budget: int | None) -> str | None:
    if budget is None:
        return None
    return next((effort for limit, effort in _EFFORTS if budget < limit), "high")


def _input(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        contents: list[TextPart | ImagePart] = []
        for part in message.content:
            if isinstance(part, TextPart | ImagePart):
                contents.append(part)
                continue
            _flush(items, message.role, contents)
            item = _item(part)
            if item is not None:
                items.append(item)
        _flush(items, message.role, contents)
    return items


def _flush(items: list[dict[str, Any]], role: str, contents: list[TextPart | ImagePart]) -> None:
    """The message item of a turn's text and images so far (none when there are none)."""
    if not contents:
        return
    if role == "assistant":
        text = "".join(part.text for part in contents if isinstance(part, TextPart))
        items.append({"role": "assistant", "content": text})
    else:
        items.append({"role": "user", "content": [_content(part) for part in contents]})
    contents.clear()


def _item(part: ToolCallPart | ToolResultPart | ReasoningPart) -> dict[str, Any] | None:
    if isinstance(part, ToolCallPart):
        return {
            "type": "function_call",
            "call_id": part.id,
            "name": part.name,
            "arguments": part.arguments,
        }
    if isinstance(part, ToolResultPart):
        output: str | list[dict[str, Any]]
        if all(isinstance(entry, TextPart) for entry in part.content):
            output = "".join(entry.text for entry in part.content if isinstance(entry, TextPart))
        else:
            output = [_content(entry) for entry in part.content]
        return {"type": "function_call_output", "call_id": part.call_id, "output": output}
    if part.id is None:
        return None  # another API's reasoning: only that API can replay it
    reasoning: dict[str, Any] = {
        "type": "reasoning",
        "id": part.id,
        "summary": [{"type": "summary_text", "text": part.text}] if part.text else [],
    }
    if part.encrypted is not None:
        reasoning["encrypted_content"] = part.encrypted
    return reasoning


def _content(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    url = part.url if part.url is not None else f"data:{part.media_type};base64,{part.data}"
    return {"type": "input_image", "image_url": url, "detail": part.detail or "auto"}
