"""A Chat Completions request body read into a `Conversation`, and one written from it.

Reading (`decode_request`):
- `system` and `developer` messages, wherever they are, make the system prompt (joined with
  blank lines); `user` content is a string or `text` and `image_url` parts (an `https:` URL,
  or a `data:<type>;base64,<data>` URL: an inline image); `assistant` messages hold their
  `reasoning_content` (DeepSeek, vLLM) or `reasoning`, their text (`text` and `refusal`
  parts), and `tool_calls`; `tool` messages are a `user` turn of tool results (consecutive
  ones: one turn). A message's `name` is left out (no other API has a place for it, and it is
  a hint only).
- A content part or message no other API can carry (`input_audio`, `file`, the deprecated
  `function` role and `function_call`) cannot be translated: `UntranslatableParameter`
  naming where it is (the request decoder has no `drop_params`).
- `tools` (type `function`), `tool_choice`, `parallel_tool_calls`, `response_format`,
  `max_completion_tokens` (or `max_tokens`), `temperature`, `top_p`, `stop`,
  `reasoning_effort`, `user`, `stream` and `stream_options.include_usage` are carried. A value
  of those a `Conversation` cannot hold (a `custom` tool, an `allowed_tools` choice) keeps the
  whole field in `extras`; so does every other parameter (`n` > 1, `logprobs`, `seed`,
  penalties, `logit_bias`, `modalities`, `audio`, `prediction`, `service_tier`, `store`,
  `metadata`, `web_search_options`...). A parameter left at its default (`null`, `n: 1`,
  `logprobs: false`, zero penalties, `store: false`) asks nothing and is left out.
  `stream_options.include_obfuscation` concerns the wire only and is left out; so is a
  `json_schema` format's `description`.

Writing (`encode_request`, for a Chat Completions target serving another API's client): the
reverse mapping, with `max_tokens` for the output limit (every OpenAI-compatible server reads
it; OpenAI's own reasoning models want `max_completion_tokens`, and refuse `max_tokens` loudly),
a thinking budget as the nearest `reasoning_effort`, and `stream_options.include_usage` on
every streaming call so that the usage can be translated. Refused (`UntranslatableParameter`,
or left out under `drop_params`): every `extras` entry (another API's parameter), and images
in tool results (a `tool` message holds text only). Reasoning carried in assistant turns is
left out (only the API that made it can replay it), as is a tool result's error flag (its
text says the error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from gateway.errors import InvalidRequest, UntranslatableParameter
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

__all__ = ["decode_request", "encode_request"]

_T = TypeVar("_T")

#: The fields `decode_request` reads itself (the rest go to `extras`).
_READ = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "reasoning_effort",
        "user",
        "continue_final_message",
        "add_generation_prompt",  # vLLM's, beside continue_final_message
    }
)

#: Parameters at these values ask for OpenAI's default: nothing to translate.
_DEFAULTS: dict[str, object] = {
    "n": 1,
    "logprobs": False,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "store": False,
}

#: The least thinking budget (Anthropic's `budget_tokens`) each effort stands for.
_EFFORT_BUDGETS = (("high", 8192), ("medium", 2048), ("low", 0))


def _invalid(message: str, param: str) -> InvalidRequest:
    error = InvalidRequest(message)
    error.param = param
    return error


def _untranslatable(what: str, param: str) -> UntranslatableParameter:
    return UntranslatableParameter(
        f"{what} ({param!r}) cannot be sent to this model's upstream, which speaks another API",
        param=param,
    )


def _is_default(name: str, value: object) -> bool:
    if value is None:
        return True
    if name not in _DEFAULTS or isinstance(value, bool) != isinstance(_DEFAULTS[name], bool):
        return False
    return value == _DEFAULTS[name]


# -- reading ------------------------------------------------------------------------------


def decode_request(body: Mapping[str, Any]) -> Conversation:
    """The `Conversation` a Chat Completions body asks (module docstring)."""
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list):
        raise _invalid("a request needs a model and a list of messages", "messages")
    system, turns = _read_messages(messages)
    extras = {k: v for k, v in body.items() if k not in _READ and not _is_default(k, v)}
    tools, tool_choice = _read_tools(body, extras)
    options = body.get("stream_options")
    return Conversation(
        model=model,
        messages=turns,
        system=system,
        stream=body.get("stream") is True,
        stream_usage=isinstance(options, Mapping) and options.get("include_usage") is True,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=_typed(body, "parallel_tool_calls", bool),
        response_format=_read_format(body, extras),
        max_tokens=_limit(body),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=_read_stop(body.get("stop")),
        reasoning_effort=_typed(body, "reasoning_effort", str),
        user=_typed(body, "user", str),
        continue_final=body.get("continue_final_message") is True,
        extras=extras,
    )


def _typed(body: Mapping[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _invalid(f"{name!r} must be of type {kind.__name__}", name)
    return value


def _limit(body: Mapping[str, Any]) -> int | None:
    """The output limit: `max_completion_tokens`, which replaced `max_tokens`, wins."""
    limit = _typed(body, "max_completion_tokens", int)
    return _typed(body, "max_tokens", int) if limit is None else limit


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name!r} must be a number", name)
    return float(value)


def _read_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(stop)
    raise _invalid("'stop' must be a string or a list of strings", "stop")


def _read_messages(messages: list[Any]) -> tuple[str | None, tuple[Message, ...]]:
    system: list[str] = []
    turns: list[Message] = []
    results: list[Part] = []  # consecutive tool messages: one user turn
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise _invalid("a message must be an object", param)
        role = message.get("role")
        if role != "tool" and results:
            turns.append(Message("user", tuple(results)))
            results = []
        if role in ("system", "developer"):
            system.append(_plain_text(message.get("content"), param))
        elif role == "user":
            turns.append(Message("user", _user_content(message.get("content"), param)))
        elif role == "assistant":
            turns.append(Message("assistant", _assistant_content(message, param)))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _invalid("a tool message needs its 'tool_call_id'", param)
            text = _plain_text(message.get("content"), param)
            results.append(ToolResultPart(call_id, (TextPart(text),) if text else ()))
        elif role == "function":
            raise _untranslatable("a message of the deprecated 'function' role", param)
        else:
            raise _invalid(f"unknown message role {role!r}", f"{param}.role")
    if results:
        turns.append(Message("user", tuple(results)))
    return ("\n\n".join(system) if system else None), tuple(turns)


def _plain_text(content: Any, param: str) -> str:
    """A system, developer or tool message's content: a string or text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise _invalid("only text parts are allowed here", f"{param}.content[{j}]")
            texts.append(_text_of(part, f"{param}.content[{j}]"))
        return "".join(texts)
    raise _invalid("'content' must be a string or a list of parts", f"{param}.content")


def _text_of(part: Mapping[str, Any], param: str) -> str:
    text = part.get("text")
    if not isinstance(text, str):
        raise _invalid("a text part needs its 'text'", param)
    return text


def _user_content(content: Any, param: str) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (TextPart(content),)
    if not isinstance(content, list):
        raise _invalid("'content' must be a string or a list of parts", f"{param}.content")
    return tuple(_parts_of(content, param, role="user"))


def _parts_of(content: list[Any], param: str, *, role: str) -> list[Part]:
    """A user's (text, images) or an assistant's (text, refusals) content parts."""
    parts: list[Part] = []
    for j, part in enumerate(content):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append(TextPart(_text_of(part, where)))
        elif kind == "image_url" and role == "user":
            parts.append(_image_of(part.get("image_url"), where))
        elif kind in ("input_audio", "file") and role == "user":
            raise _untranslatable(f"a content part of type {kind!r}", where)
        elif kind == "refusal" and role == "assistant":
            refusal = part.get("refusal")
            if not isinstance(refusal, str):
                raise _invalid("a refusal part needs its 'refusal'", where)
            parts.append(TextPart(refusal))
        else:
            raise _invalid(f"unknown {role} content part type {kind!r}", where)
    return parts


def _image_of(image: Any, param: str) -> ImagePart:
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise _invalid("an image_url part needs its 'url'", param)
    detail = image.get("detail") if isinstance(image, Mapping) else None
    detail = detail if isinstance(detail, str) else None
    if url.startswith("data:"):
        media_type, _, data = url[5:].partition(";base64,")
        if data:
            return ImagePart(data=data, media_type=media_type or None, detail=detail)
    return ImagePart(url=url, detail=detail)


def _assistant_content(message: Mapping[str, Any], param: str) -> tuple[Part, ...]:
    parts: list[Part] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ReasoningPart(reasoning))
    content = message.get("content")
    if isinstance(content, str):
        if content:
            parts.append(TextPart(content))
    elif isinstance(content, list):
        parts.extend(_parts_of(content, param, role="assistant"))
    elif content is not None:
        raise _invalid("'content' must be a string or a list of parts", f"{param}.content")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(TextPart(refusal))
    if message.get("function_call") is not None:
        raise _untranslatable("the deprecated 'function_call'", f"{param}.function_call")
    if message.get("audio") is not None:
        raise _untranslatable("a reference to an earlier audio answer", f"{param}.audio")
    calls = message.get("tool_calls")
    for k, call in enumerate(calls if isinstance(calls, list) else ()):
        parts.append(_tool_call_of(call, f"{param}.tool_calls[{k}]"))
    return tuple(parts)


def _tool_call_of(call: Any, param: str) -> ToolCallPart:
    if not isinstance(call, Mapping) or call.get("type", "function") != "function":
        raise _untranslatable("a tool call that is not a function's", param)
    function = call.get("function")
    call_id = call.get("id")
    if not isinstance(function, Mapping) or not isinstance(call_id, str):
        raise _invalid("a tool call needs its 'id' and 'function'", param)
    name, arguments = function.get("name"), function.get("arguments")
    if not isinstance(name, str):
        raise _invalid("a tool call needs its function's 'name'", f"{param}.function.name")
    return ToolCallPart(call_id, name, arguments if isinstance(arguments, str) else "{}")


def _read_tools(
    body: Mapping[str, Any], extras: dict[str, Any]
) -> tuple[tuple[Tool, ...], ToolChoice | None]:
    tools: list[Tool] = []
    raw_tools = body.get("tools")
    if raw_tools is not None:
        if not isinstance(raw_tools, list):
            raise _invalid("'tools' must be a list", "tools")
        for i, tool in enumerate(raw_tools):
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(function, Mapping) or tool.get("type") != "function":
                extras["tools"] = raw_tools  # a custom tool: the whole field stays as it is
                tools = []
                break
            name = function.get("name")
            if not isinstance(name, str):
                raise _invalid("a function tool needs its 'name'", f"tools[{i}].function.name")
            description = function.get("description")
            parameters = function.get("parameters")
            strict = function.get("strict")
            tools.append(
                Tool(
                    name=name,
                    description=description if isinstance(description, str) else None,
                    parameters=(
                        dict(parameters) if isinstance(parameters, Mapping) else {"type": "object"}
                    ),
                    strict=strict if isinstance(strict, bool) else None,
                )
            )
    choice = body.get("tool_choice")
    if choice is None:
        return tuple(tools), None
    if choice in ("auto", "none", "required"):
        return tuple(tools), ToolChoice(choice)
    function = choice.get("function") if isinstance(choice, Mapping) else None
    if (
        isinstance(choice, Mapping)
        and choice.get("type") == "function"
        and isinstance(function, Mapping)
        and isinstance(function.get("name"), str)
    ):
        return tuple(tools), ToolChoice("tool", function["name"])
    extras["tool_choice"] = choice  # allowed_tools, a custom tool: not a Conversation's
    return tuple(tools), None


def _read_format(body: Mapping[str, Any], extras: dict[str, Any]) -> JsonSchemaFormat | None:
    form = body.get("response_format")
    kind = form.get("type") if isinstance(form, Mapping) else None
    if form is None or kind == "text":
        return None
    if kind == "json_object":
        return JsonSchemaFormat()
    spec = form.get("json_schema") if isinstance(form, Mapping) else None
    if kind == "json_schema" and isinstance(spec, Mapping):
        schema, name, strict = spec.get("schema"), spec.get("name"), spec.get("strict")
        return JsonSchemaFormat(
            schema=dict(schema) if isinstance(schema, Mapping) else {},
            name=name if isinstance(name, str) else None,
            strict=strict if isinstance(strict, bool) else None,
        )
    extras["response_format"] = form
    return None


# -- writing ------------------------------------------------------------------------------


def encode_request(
    conversation: Conversation, *, model: str, options: EncodeOptions
) -> dict[str, Any]:
    """The Chat Completions body for `conversation` from another API (module docstring)."""
    for name in sorted(conversation.extras):
        if not options.drop_params:
            raise UntranslatableParameter(param=name)
    body: dict[str, Any] = {"model": model, "messages": _write_messages(conversation, options)}
    if conversation.tools:
        body["tools"] = [_tool_json(tool) for tool in conversation.tools]
    choice = conversation.tool_choice
    if choice is not None:
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool" and choice.name is not None
            else ("required" if choice.mode == "tool" else choice.mode)
        )
    if conversation.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = conversation.parallel_tool_calls
    if conversation.response_format is not None:
        body["response_format"] = _format_json(conversation.response_format)
    optional = {
        "max_tokens": conversation.max_tokens,
        "temperature": conversation.temperature,
        "top_p": conversation.top_p,
        "stop": list(conversation.stop) or None,
        "reasoning_effort": _effort(conversation),
        "user": conversation.user,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if conversation.continue_final:
        if options.prefill:
            body.update(continue_final_message=True, add_generation_prompt=False)
        elif not options.drop_params:
            raise UntranslatableParameter(
                "the last message is an assistant prefill to continue, which this model's "
                "upstream does not take (a target that does declares prefill: true)",
                param="messages",
            )
    if conversation.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _effort(conversation: Conversation) -> str | None:
    if conversation.reasoning_effort is not None or conversation.reasoning_budget is None:
        return conversation.reasoning_effort
    budget = conversation.reasoning_budget
    return next(effort for effort, least in _EFFORT_BUDGETS if budget >= least)


def _tool_json(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _format_json(form: JsonSchemaFormat) -> dict[str, Any]:
    if form.schema is None:
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": form.name or "response", "schema": form.schema}
    if form.strict is not None:
        spec["strict"] = form.strict
    return {"type": "json_schema", "json_schema": spec}


def _write_messages(conversation: Conversation, options: EncodeOptions) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if conversation.system:
        messages.append({"role": "system", "content": conversation.system})
    for turn in conversation.messages:
        if turn.role == "assistant":
            messages.append(_assistant_json(turn, options))
            continue
        others: list[dict[str, Any]] = []
        for part in turn.content:
            if isinstance(part, ToolResultPart):
                messages.append(_tool_message(part, options))
            elif isinstance(part, TextPart):
                others.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                others.append(_image_json(part))
            elif not options.drop_params:
                raise UntranslatableParameter(param="messages")  # not a user turn's part
        if len(others) == 1 and others[0]["type"] == "text":
            messages.append({"role": "user", "content": others[0]["text"]})
        elif others:
            messages.append({"role": "user", "content": others})
    return messages


def _image_json(image: ImagePart) -> dict[str, Any]:
    url = image.url
    if url is None:
        url = f"data:{image.media_type or 'image/png'};base64,{image.data or ''}"
    spec: dict[str, Any] = {"url": url}
    if image.detail is not None:
        spec["detail"] = image.detail
    return {"type": "image_url", "image_url": spec}


def _tool_message(result: ToolResultPart, options: EncodeOptions) -> dict[str, Any]:
    texts = []
    for part in result.content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif not options.drop_params:
            raise UntranslatableParameter(
                "an image in a tool result cannot be sent to this model's upstream: its tool "
                "messages hold text only (a route may drop what its target cannot honour: "
                "drop_params)",
                param="messages",
            )
    return {"role": "tool", "tool_call_id": result.call_id, "content": "\n".join(texts)}


def _assistant_json(turn: Message, options: EncodeOptions) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in turn.content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolCallPart):
            calls.append(
                {
                    "id": part.id,
                    "type": "function",
                    "function": {"name": part.name, "arguments": part.arguments},
                }
            )
        elif not isinstance(part, ReasoningPart) and not options.drop_params:
            raise UntranslatableParameter(param="messages")  # an image from the assistant
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message
