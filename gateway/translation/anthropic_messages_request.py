"""A Messages request body read into a `Conversation`, and a `Conversation` written as one.

Reading (`decode_request`) maps every field a `Conversation` carries: `system` (a string, or
text blocks joined by a blank line), the turns and their blocks (`text`, `image` by base64 or
URL, `tool_use`, `tool_result`, `thinking`, `redacted_thinking`), `tools`, `tool_choice`
(with `disable_parallel_tool_use`), `max_tokens`, `temperature`, `top_p`, `stop_sequences`,
`thinking` (a budget, or `adaptive`: the effort of `output_config`, `high` by default),
`output_config` (`effort`, and `format`: a JSON schema), `metadata.user_id` and `stream`.
`cache_control` markers (top level and on blocks) and a thinking config's `display` are
left out: they are hints about Anthropic's own cache and display, harmless to lose on
another API. Everything else - `top_k`, `service_tier`, `container`, `mcp_servers`, the
server tools (`web_search_...`) as `tools[i]`, blocks no other API has (`document`, server
tool results...) as `messages[i].content[j]` - is kept in `extras` by name, for the other
API's encoder to refuse.

Writing (`encode_request`) is for a `Conversation` of another API; see its docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import InvalidRequest, UntranslatableParameter
from gateway.translation.anthropic_messages_terms import arguments_text, tool_input
from gateway.translation.codec import EncodeOptions
from gateway.translation.conversation import (
    Conversation,
    ImagePart,
    JsonSchemaFormat,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)

__all__ = ["EFFORT_BUDGETS", "MIN_THINKING_BUDGET", "decode_request", "encode_request"]

#: The thinking budget an effort asks for (`minimal` is Anthropic's least, `none` no thinking).
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
    "xhigh": 32768,
    "max": 32768,
}

#: Anthropic refuses a thinking budget below this.
MIN_THINKING_BUDGET = 1024

#: Body fields `decode_request` maps (or leaves out as harmless); the rest are extras.
_READ = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "output_config",
        "cache_control",
    }
)

_TOOL_CHOICES = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}
_CHOICE_WORDS = {mode: word for word, mode in _TOOL_CHOICES.items()}

#: The first characters of base64 image data, by media type (for inline images whose
#: type the client's API did not say).
_MAGIC = (
    ("/9j/", "image/jpeg"),
    ("iVBOR", "image/png"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
)


# --- decoding ----------------------------------------------------------------------------------


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{where} must be a string")
    return value


def _system(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for index, block in enumerate(value):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _invalid(f"system[{index}] must be a text block")
            texts.append(_text(block.get("text"), f"system[{index}].text"))
        return "\n\n".join(texts)
    raise _invalid("system must be a string or a list of text blocks")


def _image(block: dict[str, Any], where: str) -> ImagePart | None:
    """An `image` block's part, or None for a source no other API has (a file id)."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{where}.source must be an object")
    kind = source.get("type")
    if kind == "base64":
        return ImagePart(
            data=_text(source.get("data"), f"{where}.source.data"),
            media_type=_text(source.get("media_type"), f"{where}.source.media_type"),
        )
    if kind == "url":
        return ImagePart(url=_text(source.get("url"), f"{where}.source.url"))
    return None


def _result_content(
    value: object, where: str, extras: dict[str, Any]
) -> tuple[TextPart | ImagePart, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (TextPart(value),)
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a string or a list of blocks")
    parts: list[TextPart | ImagePart] = []
    for index, block in enumerate(value):
        path = f"{where}[{index}]"
        if not isinstance(block, dict):
            raise _invalid(f"{path} must be an object")
        kind = block.get("type")
        image = _image(block, path) if kind == "image" else None
        if kind == "text":
            parts.append(TextPart(_text(block.get("text"), f"{path}.text")))
        elif image is not None:
            parts.append(image)
        else:
            extras[path] = block
    return tuple(parts)


#: The block types each role's turn may hold.
_ROLE_BLOCKS = {
    "user": frozenset({"text", "image", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
}


def _block(block: object, role: str, where: str, extras: dict[str, Any]) -> Part | None:
    """The part a content block is, or None (kept in `extras` under `where`, or harmless)."""
    if not isinstance(block, dict):
        raise _invalid(f"{where} must be an object")
    kind = block.get("type")
    if kind in _ROLE_BLOCKS["user"] | _ROLE_BLOCKS["assistant"] and kind not in _ROLE_BLOCKS[role]:
        raise _invalid(f"{where}: a {role} turn cannot hold a {kind} block")
    if kind == "text":
        return TextPart(_text(block.get("text"), f"{where}.text"))
    if kind == "image":
        image = _image(block, where)
        if image is not None:
            return image
    elif kind == "tool_use":
        return ToolCallPart(
            id=_text(block.get("id"), f"{where}.id"),
            name=_text(block.get("name"), f"{where}.name"),
            arguments=arguments_text(block.get("input", {})),
        )
    elif kind == "tool_result":
        return ToolResultPart(
            call_id=_text(block.get("tool_use_id"), f"{where}.tool_use_id"),
            content=_result_content(block.get("content"), f"{where}.content", extras),
            is_error=block.get("is_error") is True,
        )
    elif kind == "thinking":
        signature = block.get("signature")
        return ReasoningPart(
            text=_text(block.get("thinking"), f"{where}.thinking"),
            signature=signature if isinstance(signature, str) else None,
        )
    elif kind == "redacted_thinking":
        return ReasoningPart(text="", redacted=_text(block.get("data"), f"{where}.data"))
    extras[where] = block
    return None


def _messages(value: Sequence[Any], extras: dict[str, Any]) -> tuple[Message, ...]:
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLE_BLOCKS:
            raise _invalid(f"{where} must be a user or assistant turn")
        role = message["role"]
        content = message.get("content")
        if isinstance(content, str):
            parts: tuple[Part, ...] = (TextPart(content),)
        elif isinstance(content, list):
            found = (
                _block(block, role, f"{where}.content[{j}]", extras)
                for j, block in enumerate(content)
            )
            parts = tuple(part for part in found if part is not None)
        else:
            raise _invalid(f"{where}.content must be a string or a list of blocks")
        messages.append(Message(role=role, content=parts))
    return tuple(messages)


def _tools(value: object, extras: dict[str, Any]) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid("tools must be a list")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise _invalid(f"tools[{index}] must be an object")
        if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            extras[f"tools[{index}]"] = tool  # a server tool (web search, code execution...)
            continue
        schema, description, strict = (
            tool["input_schema"],
            tool.get("description"),
            tool.get("strict"),
        )
        if not isinstance(schema, dict):
            raise _invalid(f"tools[{index}].input_schema must be an object")
        tools.append(
            Tool(
                name=_text(tool.get("name"), f"tools[{index}].name"),
                description=description if isinstance(description, str) else None,
                parameters=schema,
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    return tuple(tools)


def _tool_choice(value: object) -> tuple[ToolChoice | None, bool | None]:
    """The choice and `parallel_tool_calls` (False when `disable_parallel_tool_use`)."""
    if value is None:
        return None, None
    if not isinstance(value, dict) or value.get("type") not in _TOOL_CHOICES:
        raise _invalid("tool_choice must be an auto, any, tool or none choice")
    mode = _TOOL_CHOICES[value["type"]]
    name = _text(value.get("name"), "tool_choice.name") if mode == "tool" else None
    parallel = False if value.get("disable_parallel_tool_use") is True else None
    return ToolChoice(mode=mode, name=name), parallel  # type: ignore[arg-type]


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} must be a number")
    return float(value)


def _rest(value: object, read: set[str]) -> dict[str, Any]:
    """The fields of an object `decode_request` did not read."""
    return (
        {key: item for key, item in value.items() if key not in read}
        if isinstance(value, dict)
        else {}
    )


def decode_request(body: Mapping[str, Any]) -> Conversation:
    """A Messages body (validated by `MessagesRequest`) as a `Conversation` (module
    docstring); `InvalidRequest` for a body Anthropic would refuse."""
    extras: dict[str, Any] = {key: value for key, value in body.items() if key not in _READ}
    messages = _messages(body.get("messages") or [], extras)
    tool_choice, parallel = _tool_choice(body.get("tool_choice"))
    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise _invalid("stop_sequences must be a list of strings")

    output = body.get("output_config")
    output = output if isinstance(output, dict) else {}
    effort = output.get("effort") if isinstance(output.get("effort"), str) else None
    schema_format = output.get("format")
    response_format = None
    if isinstance(schema_format, dict) and schema_format.get("type") == "json_schema":
        schema = schema_format.get("schema")
        response_format = JsonSchemaFormat(schema=schema if isinstance(schema, dict) else None)
    if left := _rest(output, {"effort", "format"} if response_format else {"effort"}):
        extras["output_config"] = left

    thinking, budget = body.get("thinking"), None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled" and isinstance(thinking, dict):
        raw = thinking.get("budget_tokens")
        budget = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    elif kind == "adaptive":
        effort = effort or "high"  # Anthropic's default effort
    elif thinking is not None and kind != "disabled":
        extras["thinking"] = thinking

    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    if left := _rest(metadata, {"user_id"}):
        extras["metadata"] = left

    max_tokens = body.get("max_tokens")
    return Conversation(
        # A final assistant turn is Anthropic's prefill: the answer continues it.
        continue_final=bool(messages) and messages[-1].role == "assistant",
        model=str(body.get("model", "")),
        messages=messages,
        system=_system(body.get("system")),
        stream=body.get("stream") is True,
        tools=_tools(body.get("tools"), extras),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        temperature=_number(body.get("temperature"), "temperature"),
        top_p=_number(body.get("top_p"), "top_p"),
        stop=tuple(stop),
        reasoning_effort=effort,
        reasoning_budget=budget,
        user=user if isinstance(user, str) else None,
        extras=extras,
    )


# --- encoding ----------------------------------------------------------------------------------


def _refuse(param: str, options: EncodeOptions, message: str | None = None) -> None:
    """Refuse what the target cannot honour - unless the route drops it (then return)."""
    if not options.drop_params:
        raise UntranslatableParameter(message, param=param)


def _media_type(data: str) -> str:
    for prefix, media_type in _MAGIC:
        if data.startswith(prefix):
            return media_type
    return "image/png"


def _image_block(image: ImagePart) -> dict[str, Any]:
    """An `image` block: base64 for inline data (and `data:` URLs), a URL source else. The
    `detail` hint has no equivalent and is left out."""
    data, media_type = image.data, image.media_type
    url = image.url or ""
    if data is None and url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        media_type = media_type or head or None
    if data is not None:
        source = {"type": "base64", "media_type": media_type or _media_type(data), "data": data}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _result_block(result: ToolResultPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": result.call_id}
    if len(result.content) == 1 and isinstance(result.content[0], TextPart):
        block["content"] = result.content[0].text
    elif result.content:
        block["content"] = [
            {"type": "text", "text": part.text}
            if isinstance(part, TextPart)
            else _image_block(part)
            for part in result.content
        ]
    if result.is_error:
        block["is_error"] = True
    return block


def _call_block(call: ToolCallPart, where: str) -> dict[str, Any]:
    arguments = tool_input(call.arguments)
    if arguments is None:
        raise UntranslatableParameter(
            f"the arguments of the tool call {call.id!r} in {where} are not a JSON object, "
            "which the target's API requires of a tool call",
            param="messages",
        )
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _reasoning_block(reasoning: ReasoningPart) -> dict[str, Any] | None:
    """Anthropic's own thinking, replayed; another API's reasoning cannot be, and is left out."""
    if reasoning.redacted is not None:
        return {"type": "redacted_thinking", "data": reasoning.redacted}
    if reasoning.signature:
        return {"type": "thinking", "thinking": reasoning.text, "signature": reasoning.signature}
    return None


def _content(message: Message, where: str, options: EncodeOptions) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    user = message.role == "user"
    for part in message.content:
        block: dict[str, Any] | None = None
        if isinstance(part, TextPart):
            block = {"type": "text", "text": part.text} if part.text else None  # none may be empty
        elif isinstance(part, ImagePart) and user:
            block = _image_block(part)
        elif isinstance(part, ToolResultPart) and user:
            block = _result_block(part)
        elif isinstance(part, ToolCallPart) and not user:
            block = _call_block(part, where)
        elif isinstance(part, ReasoningPart) and not user:
            block = _reasoning_block(part)
        else:
            kind = type(part).__name__
            _refuse(
                "messages",
                options,
                f"{where}: a {message.role} turn cannot hold a {kind} on the target's API",
            )
        if block is not None:
            blocks.append(block)
    return blocks


def _turns(conversation: Conversation, options: EncodeOptions) -> list[dict[str, Any]]:
    """The turns, consecutive turns of one role merged (Anthropic alternates them), a user
    turn's tool results first (Anthropic wants them so), turns left empty left out."""
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(conversation.messages):
        blocks = _content(message, f"messages[{index}]", options)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return turns


def _tool_choice_field(conversation: Conversation) -> dict[str, Any] | None:
    choice = conversation.tool_choice
    serial = conversation.parallel_tool_calls is False
    if choice is None and not serial:
        return None
    field: dict[str, Any] = {"type": _CHOICE_WORDS[choice.mode] if choice else "auto"}
    if choice is not None and choice.mode == "tool":
        field["name"] = choice.name
    if serial and field["type"] != "none":
        field["disable_parallel_tool_use"] = True
    return field


def _thinking(conversation: Conversation, options: EncodeOptions) -> tuple[int | None, int]:
    """The thinking budget (None: no thinking) and `max_tokens` (see `encode_request`)."""
    budget = conversation.reasoning_budget
    effort = conversation.reasoning_effort
    if budget is None and effort is not None and effort != "none":
        budget = EFFORT_BUDGETS.get(effort)
        if budget is None:
            _refuse("reasoning_effort", options)
    limit = conversation.max_tokens
    if budget is None:
        return None, limit if limit is not None else options.default_max_tokens
    budget = max(budget, MIN_THINKING_BUDGET)
    if limit is None:
        limit = options.default_max_tokens
        return budget, limit if budget < limit else budget + limit
    budget = min(budget, limit - 1)
    return (budget if budget >= MIN_THINKING_BUDGET else None), limit


def encode_request(
    conversation: Conversation, *, model: str, options: EncodeOptions
) -> dict[str, Any]:
    """A Messages body for `conversation`, from another API.

    - `max_tokens` is the client's or the target's default (Anthropic requires one).
    - Reasoning is a `thinking` budget: the client's, or its effort's (`EFFORT_BUDGETS`; an
      effort of `none` asks none). A budget must be at least 1024 and below `max_tokens`: with
      no client limit, `max_tokens` is the default plus the budget when the default is not
      above it; under the client's limit, the budget shrinks to fit, and thinking is left out
      when the limit leaves less than 1024 tokens for it.
    - A `temperature` above 1 (Anthropic's range is 0..1) is refused; with `drop_params` it is
      1, Anthropic's default, which is what dropping it gives. With thinking on, what Anthropic
      refuses beside it is refused here (`_fit_thinking`). A `response_format` (a JSON
      schema, or any JSON object) is refused, or dropped with `drop_params`; so is every
      extra of the client's API.
    - Reasoning of another API (no Anthropic signature) is left out of the history: only the
      API that made it can replay it. An image's `detail` and `stream_usage` have no
      equivalent and are left out (Anthropic always reports usage).
    - A tool call whose arguments are not a JSON object is refused (`messages`): a `tool_use`
      block holds an object. Empty text parts are left out (Anthropic refuses them).
    """
    for name in conversation.extras:
        _refuse(name, options)
    budget, max_tokens = _thinking(conversation, options)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if conversation.system:
        body["system"] = conversation.system
    body["messages"] = _turns(conversation, options)
    if conversation.tools:
        body["tools"] = [_tool_field(tool) for tool in conversation.tools]
        choice = _tool_choice_field(conversation)
        if choice is not None:
            body["tool_choice"] = choice
    if conversation.stop:
        body["stop_sequences"] = list(conversation.stop)
    temperature = conversation.temperature
    if temperature is not None and temperature > 1:
        _refuse("temperature", options, "temperature must be between 0 and 1 on the target's API")
        temperature = 1.0
    if temperature is not None:
        body["temperature"] = temperature
    if conversation.top_p is not None:
        body["top_p"] = conversation.top_p
    if conversation.response_format is not None:
        _refuse("response_format", options)
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        _fit_thinking(body, options)
    if conversation.user is not None:
        body["metadata"] = {"user_id": conversation.user}
    if conversation.stream:
        body["stream"] = True
    return body


def _fit_thinking(body: dict[str, Any], options: EncodeOptions) -> None:
    """What Anthropic refuses beside thinking - a temperature other than 1, a top_p below 0.95,
    a tool choice that forces a tool - refused by name, or left out (the choice: `auto`)."""
    if body.get("temperature", 1) != 1:
        _refuse("temperature", options, "temperature cannot be set with reasoning on the target")
        del body["temperature"]
    if body.get("top_p", 1) < 0.95:
        _refuse("top_p", options, "top_p must be at least 0.95 with reasoning on the target")
        del body["top_p"]
    choice = body.get("tool_choice")
    if choice is not None and choice["type"] in ("any", "tool"):
        _refuse("tool_choice", options, "a tool cannot be forced with reasoning on the target")
        choice.pop("name", None)
        choice["type"] = "auto"


def _tool_field(tool: Tool) -> dict[str, Any]:
    field: dict[str, Any] = {"name": tool.name}
    if tool.description:
        field["description"] = tool.description
    field["input_schema"] = tool.parameters
    if tool.strict:
        field["strict"] = True
    return field
