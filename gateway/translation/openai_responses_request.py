"""A Responses request body (`POST /v1/responses`) decoded into a `Conversation`.

`input` is a string (one user message) or a list of items: messages (`{"role", "content"}`,
with or without `"type": "message"`) of the roles `user`, `assistant`, `system` and
`developer`; `function_call` items (an assistant's tool calls: adjacent assistant items make one
assistant turn, as the API's own output lists reasoning, message and calls of one turn);
`function_call_output` items (tool results: adjacent ones make one user turn); `reasoning` items
(an assistant turn's reasoning, kept by `id` and `encrypted_content`). `instructions` and the
system and developer messages make the system prompt, in that order, joined by blank lines.

Everything a `Conversation` cannot carry is kept in `extras` under the name an error should
give it: a top-level field by its name (`previous_response_id`, `background`, `conversation`,
`prompt`, `metadata`, `truncation`, `include`, ...), a built-in tool by its place
(`tools[2]`), an input item or content part it cannot read by its path (`input[3]`,
`input[0].content[1]` - e.g. an image by `file_id`, a file, audio). Another API's encoder
refuses them (unless the route drops what its target cannot honour).

A field at its API default says nothing and is not kept: `include: []`, `metadata: {}`,
`truncation: "disabled"`, `background: false`, `store` either way. `store: true` (the API's
default) is accepted on a translated target although nothing is stored there: the request
is answered in full, its response object says `store: false`, and only a later follow-up
(`previous_response_id`, which is refused, or `GET /v1/responses/{id}`) could tell. Also left
out as harmless: `reasoning.summary` (whether summaries are shown: a translated target shows
the reasoning it has), `stream_options` (obfuscation padding), and the `include` entries that
only concern built-in tools (refused on their own) or encrypted reasoning (given when the
target has it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from gateway.errors import InvalidRequest
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

__all__ = ["decode_request"]

#: Fields read into the `Conversation` itself (or said nothing: `model`, `stream`).
_READ = frozenset(
    {
        "model",
        "stream",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "user",
        "safety_identifier",
        "store",
        "stream_options",
    }
)
#: Fields whose value, when it is this, asks for nothing (the API's own default).
_DEFAULTS: dict[str, object] = {
    "include": [],
    "metadata": {},
    "truncation": "disabled",
    "background": False,
}
#: `include` entries a translated answer cannot honour (the rest are no-ops there).
_INCLUDE_REFUSED = frozenset({"message.output_text.logprobs"})
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)
_SYSTEM_ROLES = frozenset({"system", "developer"})

Role = Literal["user", "assistant"]
Joins = Literal["assistant", "results"]
T = TypeVar("T")


def decode_request(body: Mapping[str, Any]) -> Conversation:
    """The `Conversation` a Responses body asks for; `InvalidRequest` (naming the field) for
    a body the API itself would refuse."""
    extras = _extras(body)
    system = _texts_of_instructions(body.get("instructions"))
    turns = _Turns(extras)
    given = body.get("input")
    if isinstance(given, str):
        turns.add("user", TextPart(given))
    elif isinstance(given, list):
        for index, item in enumerate(given):
            system += turns.read(item, f"input[{index}]")
    elif given is not None:
        raise _invalid("input must be a string or a list of items", "input")
    text = _object(body.get("text"), "text")
    reasoning = _object(body.get("reasoning"), "reasoning")
    stream = body.get("stream") is True
    return Conversation(
        model=str(body.get("model", "")),
        messages=tuple(turns.messages),
        system="\n\n".join(system) if system else None,
        stream=stream,
        stream_usage=stream,  # a Responses stream always ends with its usage
        tools=_tools(body.get("tools"), extras),
        tool_choice=_tool_choice(body.get("tool_choice"), extras),
        parallel_tool_calls=_optional(body, "parallel_tool_calls", bool),
        response_format=_response_format(text, extras),
        max_tokens=_optional(body, "max_output_tokens", int),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        reasoning_effort=_optional(reasoning, "effort", str, "reasoning.effort"),
        user=_optional(body, "safety_identifier", str) or _optional(body, "user", str),
        extras=extras,
    )


def _extras(body: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level fields a `Conversation` does not carry, unless they ask for nothing."""
    extras: dict[str, Any] = {}
    for name, value in body.items():
        if name in _READ or value is None or _DEFAULTS.get(name, ...) == value:
            continue
        if name == "include" and isinstance(value, list) and not _refused_includes(value):
            continue
        extras[name] = value
    return extras


def _refused_includes(include: list[Any]) -> bool:
    return any(entry in _INCLUDE_REFUSED for entry in include if isinstance(entry, str))


class _Turns:
    """The turns of `input`, built item by item (adjacent assistant items are one turn, and
    so are adjacent tool results)."""

    def __init__(self, extras: dict[str, Any]) -> None:
        self.messages: list[Message] = []
        self._extras = extras
        self._open: Joins | None = None  # what the last turn may take

    def add(self, role: Role, *parts: Part, joins: Joins | None = None) -> None:
        """Append `parts` as a turn, or to the last turn when it takes more of their kind."""
        if joins is not None and self._open == joins and self.messages:
            last = self.messages[-1]
            self.messages[-1] = Message(last.role, last.content + parts)
        else:
            self.messages.append(Message(role, parts))
        self._open = joins

    def read(self, item: object, path: str) -> list[str]:
        """Read one input item; return the system text it holds (a system/developer message)."""
        if not isinstance(item, dict):
            raise _invalid("each input item must be an object", path)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            return self._message(item, path)
        if kind == "function_call":
            call = ToolCallPart(
                id=_string(item, "call_id", path),
                name=_string(item, "name", path),
                arguments=_string(item, "arguments", path),
            )
            self.add("assistant", call, joins="assistant")
        elif kind == "function_call_output":
            output = item.get("output")
            content = self._contents(output, f"{path}.output") if output is not None else ()
            result = ToolResultPart(call_id=_string(item, "call_id", path), content=content)
            self.add("user", result, joins="results")
        elif kind == "reasoning":
            self.add("assistant", _reasoning(item), joins="assistant")
        else:
            self._extras[path] = item  # item_reference, built-in tool calls and their outputs
            self._open = None
        return []

    def _message(self, item: Mapping[str, Any], path: str) -> list[str]:
        role = item.get("role")
        content = item.get("content")
        if role in _SYSTEM_ROLES:
            texts = [
                part.text
                for part in self._contents(content, f"{path}.content")
                if isinstance(part, TextPart)
            ]
            return ["".join(texts)] if texts else []
        if role == "user":
            self.add("user", *self._contents(content, f"{path}.content"))
        elif role == "assistant":
            self.add("assistant", *self._contents(content, f"{path}.content"), joins="assistant")
        else:
            raise _invalid("a message's role must be user, assistant, system or developer", path)
        return []

    def _contents(self, content: object, path: str) -> tuple[TextPart | ImagePart, ...]:
        """A content string or list of parts; a part it cannot carry goes to `extras`."""
        if isinstance(content, str):
            return (TextPart(content),)
        if not isinstance(content, list):
            raise _invalid("content must be a string or a list of parts", path)
        parts: list[TextPart | ImagePart] = []
        for index, part in enumerate(content):
            where = f"{path}[{index}]"
            read = _content_part(part, where)
            if read is None:
                self._extras[where] = part
            else:
                parts.append(read)
        return tuple(parts)


def _content_part(part: object, path: str) -> TextPart | ImagePart | None:
    """One content part, or None for a part a `Conversation` cannot carry (a file, audio, an
    image by `file_id`)."""
    if not isinstance(part, dict):
        raise _invalid("each content part must be an object", path)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(_string(part, "text", path))
    if kind == "refusal":
        return TextPart(_string(part, "refusal", path))
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        detail = part.get("detail") if isinstance(part.get("detail"), str) else None
        url: str = part["image_url"]
        inline = _DATA_URL.fullmatch(url)
        if inline is None:
            return ImagePart(url=url, detail=detail)
        return ImagePart(data=inline["data"], media_type=inline["type"], detail=detail)
    return None


def _reasoning(item: Mapping[str, Any]) -> ReasoningPart:
    """A `reasoning` item: its summaries' text (else its reasoning text), id and encrypted
    content."""
    texts = [
        entry["text"]
        for key in ("summary", "content")
        for entry in (item.get(key) or [])
        if isinstance(entry, dict)
        and isinstance(entry.get("text"), str)
        and (key == "summary" or not item.get("summary"))
    ]
    identity = item.get("id")
    encrypted = item.get("encrypted_content")
    return ReasoningPart(
        text="\n\n".join(texts),
        id=identity if isinstance(identity, str) else None,
        encrypted=encrypted if isinstance(encrypted, str) else None,
    )


def _texts_of_instructions(instructions: object) -> list[str]:
    if instructions is None or instructions == "":
        return []
    if not isinstance(instructions, str):
        raise _invalid("instructions must be a string", "instructions")
    return [instructions]


def _tools(given: object, extras: dict[str, Any]) -> tuple[Tool, ...]:
    if given is None:
        return ()
    if not isinstance(given, list):
        raise _invalid("tools must be a list", "tools")
    tools: list[Tool] = []
    for index, tool in enumerate(given):
        path = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _invalid("each tool must be an object", path)
        if tool.get("type") != "function":
            extras[path] = tool  # a built-in tool (web_search, file_search, computer_use...)
            continue
        parameters = tool.get("parameters")
        description = tool.get("description")
        strict = tool.get("strict")
        tools.append(
            Tool(
                name=_string(tool, "name", path),
                description=description if isinstance(description, str) else None,
                parameters=parameters if isinstance(parameters, dict) else {"type": "object"},
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    return tuple(tools)


def _tool_choice(given: object, extras: dict[str, Any]) -> ToolChoice | None:
    if given is None:
        return None
    if given in ("auto", "none", "required"):
        return ToolChoice(given)
    if isinstance(given, dict) and given.get("type") == "function":
        return ToolChoice("tool", _string(given, "name", "tool_choice"))
    extras["tool_choice"] = given  # allowed_tools, a built-in tool, mcp...
    return None


def _response_format(text: Mapping[str, Any], extras: dict[str, Any]) -> JsonSchemaFormat | None:
    for key, value in text.items():
        if key != "format" and value is not None:
            extras[f"text.{key}"] = value  # verbosity
    given = _object(text.get("format"), "text.format")
    kind = given.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return JsonSchemaFormat()
    if kind == "json_schema":
        schema = given.get("schema")
        if not isinstance(schema, dict):
            raise _invalid("a json_schema format needs its schema", "text.format.schema")
        name = given.get("name")
        strict = given.get("strict")
        return JsonSchemaFormat(
            schema=schema,
            name=name if isinstance(name, str) else None,
            strict=strict if isinstance(strict, bool) else None,
        )
    raise _invalid("text.format.type must be text, json_object or json_schema", "text.format")


def _object(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{path} must be an object", path)
    return value


def _string(item: Mapping[str, Any], key: str, path: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string", f"{path}.{key}")
    return value


def _optional(
    item: Mapping[str, Any], key: str, kind: type[T], path: str | None = None
) -> T | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _invalid(f"{path or key} must be a {kind.__name__}", path or key)
    return value


def _number(item: Mapping[str, Any], key: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{key} must be a number", key)
    return float(value)


def _invalid(message: str, param: str) -> InvalidRequest:
    error = InvalidRequest(message)
    error.param = param
    return error
