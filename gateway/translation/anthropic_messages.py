"""The Anthropic Messages codec (`CODEC`): a Messages client served by another API's upstream,
or another API's client served by an Anthropic upstream.

Requests: `anthropic_messages_request` (what is mapped, kept as extras, refused or left out).
Streams: `anthropic_messages_stream`. Whole answers (here): the `message` JSON, its content
blocks in order - `text`, `thinking` (with its `signature`; "" for reasoning of another API),
`tool_use` (its `input` the call's arguments parsed) - its `stop_reason` and `stop_sequence`,
and `usage` with the cache fields, read and written as the stream side reads and writes them.
A `redacted_thinking` block and Anthropic's server-tool blocks carry nothing another API can
use and are not read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.apis import ANTHROPIC_MESSAGES, Api
from gateway.translation.answer import (
    AnswerEvent,
    End,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.anthropic_messages_request import decode_request, encode_request
from gateway.translation.anthropic_messages_stream import (
    MessagesStreamDecoder,
    MessagesStreamEncoder,
)
from gateway.translation.anthropic_messages_terms import (
    arguments_text,
    merged_usage,
    message_id,
    stop_of,
    stop_reason_word,
    string_of,
    tool_input,
    usage_fields,
    usage_of,
)
from gateway.translation.codec import EncodeOptions
from gateway.translation.conversation import Conversation

__all__ = ["CODEC", "AnthropicMessagesCodec"]


def _block_events(block: object, part: int, tools: int) -> list[AnswerEvent]:
    """The events of one content block of a whole answer (none for a block not read)."""
    if not isinstance(block, dict):
        return []
    kind = block.get("type")
    if kind == "text":
        return [TextDelta(string_of(block.get("text")), part)]
    if kind == "thinking":
        signature = string_of(block.get("signature")) or None
        return [ReasoningDelta(string_of(block.get("thinking")), part, signature=signature)]
    if kind == "tool_use":
        start = ToolCallStart(tools, string_of(block.get("id")), string_of(block.get("name")), part)
        return [start, ToolCallDelta(tools, arguments_text(block.get("input", {})), part)]
    return []


class AnthropicMessagesCodec:
    """Anthropic Messages (`Codec`)."""

    @property
    def api(self) -> Api:
        return ANTHROPIC_MESSAGES

    def decode_request(self, body: Mapping[str, Any]) -> Conversation:
        return decode_request(body)

    def encode_request(
        self, conversation: Conversation, *, model: str, options: EncodeOptions
    ) -> dict[str, Any]:
        return encode_request(conversation, model=model, options=options)

    def stream_decoder(self) -> MessagesStreamDecoder:
        return MessagesStreamDecoder()

    def stream_encoder(self, conversation: Conversation) -> MessagesStreamEncoder:
        return MessagesStreamEncoder(conversation.model)

    def decode_answer(self, answer: Mapping[str, Any]) -> list[AnswerEvent]:
        events: list[AnswerEvent] = [
            Start(id=string_of(answer.get("id")), model=string_of(answer.get("model")))
        ]
        content = answer.get("content")
        parts = tools = 0
        for block in content if isinstance(content, list) else []:
            said = _block_events(block, parts, tools)
            parts += bool(said)
            tools += isinstance(said[0], ToolCallStart) if said else 0
            events += said
        usage = usage_of(answer.get("usage"))
        if usage is not None:
            events.append(usage)
        stop = stop_of(answer.get("stop_reason"), answer.get("stop_sequence"))
        events += [stop or Stop(StopReason.END_TURN), End()]
        return events

    def encode_answer(
        self, events: Sequence[AnswerEvent], conversation: Conversation
    ) -> dict[str, Any]:
        """The `message` the events make (a `Failure` among them is the relay's to answer:
        it is not read here). A tool call whose arguments are not a whole JSON object (an
        answer cut by its limit mid-call) has `input: {}`: a `tool_use` block holds objects."""
        start: Start | None = None
        usage: Usage | None = None
        stop: Stop | None = None
        blocks: dict[tuple[str, int], dict[str, Any]] = {}
        arguments: dict[int, list[str]] = {}
        for event in events:
            if isinstance(event, Start):
                start = start or event
            elif isinstance(event, TextDelta):
                block = blocks.setdefault(("text", event.part), {"type": "text", "text": ""})
                block["text"] += event.text
            elif isinstance(event, ReasoningDelta):
                thinking = {"type": "thinking", "thinking": "", "signature": ""}
                block = blocks.setdefault(("thinking", event.part), thinking)
                block["thinking"] += event.text
                block["signature"] = event.signature or block["signature"]
            elif isinstance(event, ToolCallStart):
                call = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
                blocks.setdefault(("tool", event.index), call)
            elif isinstance(event, ToolCallDelta):
                arguments.setdefault(event.index, []).append(event.arguments)
            elif isinstance(event, Usage):
                usage = merged_usage(usage, event)
            elif isinstance(event, Stop):
                stop = event
        for (kind, index), block in blocks.items():
            if kind == "tool":
                block["input"] = tool_input("".join(arguments.get(index, []))) or {}
        called = any(kind == "tool" for kind, _ in blocks)
        stop = stop or Stop(StopReason.TOOL_USE if called else StopReason.END_TURN)
        return {
            "id": message_id(start.id if start else ""),
            "type": "message",
            "role": "assistant",
            "model": conversation.model,
            "content": list(blocks.values()),
            "stop_reason": stop_reason_word(stop),
            "stop_sequence": stop.stop_sequence
            if stop.reason is StopReason.STOP_SEQUENCE
            else None,
            "usage": {"input_tokens": 0, **usage_fields(usage or Usage())},
        }


CODEC = AnthropicMessagesCodec()
