"""The typed request every API's request is decoded into and encoded from: a `Conversation`.

What a client asked, in one vocabulary: the system prompt, the turns (text, images, tool calls
and their results, reasoning carried over), the tools and how to choose among them, the output
format, and the sampling and length limits. A codec decodes its API's JSON body into a
`Conversation` and encodes one into its API's body for a target (`gateway.translation.codec`).

A parameter of the client's body that a `Conversation` cannot carry is kept in `extras` by name
(with its value): an encoder refuses them - a 400 naming the parameter
(`UntranslatableParameter`) - unless the route says to drop what its target cannot honour
(`drop_params`). Never a silent loss. (A `Conversation` is only ever encoded for another API
than the one it came from: a call in the client's own API is relayed as it is.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Conversation",
    "ImagePart",
    "JsonSchemaFormat",
    "Message",
    "Part",
    "ReasoningPart",
    "TextPart",
    "Tool",
    "ToolCallPart",
    "ToolChoice",
    "ToolResultPart",
]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL, or inline as base64 `data` with its `media_type`."""

    url: str | None = None
    data: str | None = None  # base64, no `data:` prefix
    media_type: str | None = None  # e.g. image/png (inline images)
    detail: str | None = None  # OpenAI's `low`/`high`/`auto`, where given


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """An assistant's call of a tool; `arguments` is its JSON text, as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """A tool's answer to the call `call_id` (a `tool` message in OpenAI's terms)."""

    call_id: str
    content: tuple[TextPart | ImagePart, ...]
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ReasoningPart:
    """Reasoning an assistant turn carried (Anthropic thinking with its `signature`; OpenAI
    reasoning items by `id`/`encrypted`). Only the API that made it can replay it exactly: an
    encoder of another API leaves it out (reasoning is not part of what the model said)."""

    text: str
    signature: str | None = None  # Anthropic's
    id: str | None = None  # OpenAI's reasoning item id
    encrypted: str | None = None  # OpenAI's encrypted_content
    redacted: str | None = None  # Anthropic's redacted_thinking data


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ReasoningPart


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. `user` turns hold text, images and tool results (Anthropic's shape; an OpenAI
    `tool` message is a `user` turn of one `ToolResultPart`); `assistant` turns hold text, tool
    calls and reasoning."""

    role: Literal["user", "assistant"]
    content: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its JSON Schema `parameters`."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto`, `none`, `required` (any tool), or `tool` (the one named)."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class JsonSchemaFormat:
    """Structured output: the answer is JSON; with a `schema`, JSON of that schema."""

    schema: dict[str, Any] | None = None  # None: any JSON object (OpenAI's json_object)
    name: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """A client's request in one vocabulary (see the module docstring)."""

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    stream: bool = False
    #: The client asked its stream to report usage (OpenAI's `stream_options.include_usage`).
    stream_usage: bool = False
    #: The last message is the assistant's answer so far, to be continued, not answered (a
    #: prefill: Anthropic's final assistant turn, vLLM's `continue_final_message`; the
    #: gateway's own continuation of a cut stream asks so too).
    continue_final: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: JsonSchemaFormat | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    #: Reasoning asked for: an effort (`low`/`medium`/`high`) and/or a token budget.
    reasoning_effort: str | None = None
    reasoning_budget: int | None = None
    #: An end user's id for the provider's abuse monitoring (OpenAI `user`, Anthropic
    #: `metadata.user_id`).
    user: str | None = None
    #: The client's parameters a `Conversation` does not carry, by name (module docstring).
    extras: dict[str, Any] = field(default_factory=dict)
