"""The Chat Completions codec (`CODEC`): `POST /v1/chat/completions` bodies, streams and whole
answers, read into and written from the translation's typed values.

The request side is `openai_chat_request`, the stream side `openai_chat_stream`, the words
both share (finish reasons, usage, ids, errors) `openai_chat_wire`; their docstrings say what
maps to what and what is refused or left out. A whole answer (`chat.completion`) is read as
the one chunk its stream would have folded into, by the stream's own decoder, so both sides
read the same way; it is written from the events folded back: the message's `content`,
`reasoning_content` and `tool_calls`, its `finish_reason`, and the `usage`. As on the stream
side, a refusal from another API is text with `finish_reason: content_filter`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.apis import OPENAI_CHAT, Api
from gateway.translation.answer import (
    AnswerEvent,
    Failure,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.codec import EncodeOptions
from gateway.translation.conversation import Conversation
from gateway.translation.openai_chat_request import decode_request, encode_request
from gateway.translation.openai_chat_stream import ChatStreamDecoder, ChatStreamEncoder
from gateway.translation.openai_chat_wire import (
    chat_id,
    failure_of,
    finish_reason_of,
    stream_error_of,
    usage_json,
)

__all__ = ["CODEC", "OpenAIChatCodec"]


class OpenAIChatCodec:
    """Chat Completions as a `Codec` (module docstring)."""

    __slots__ = ()

    @property
    def api(self) -> Api:
        return OPENAI_CHAT

    def decode_request(self, body: Mapping[str, Any]) -> Conversation:
        return decode_request(body)

    def encode_request(
        self, conversation: Conversation, *, model: str, options: EncodeOptions
    ) -> dict[str, Any]:
        return encode_request(conversation, model=model, options=options)

    def stream_decoder(self) -> ChatStreamDecoder:
        return ChatStreamDecoder()

    def stream_encoder(self, conversation: Conversation) -> ChatStreamEncoder:
        return ChatStreamEncoder(conversation)

    def decode_answer(self, answer: Mapping[str, Any]) -> list[AnswerEvent]:
        if answer.get("error"):
            return [failure_of(answer)]
        choices = answer.get("choices")
        choice = next(
            (
                c
                for c in (choices if isinstance(choices, list) else ())
                if isinstance(c, dict) and c.get("index", 0) == 0
            ),
            {},
        )
        message = choice.get("message")
        delta = _delta_of(message if isinstance(message, dict) else {})
        chunk = {
            **{k: answer[k] for k in ("id", "model", "created", "usage") if k in answer},
            "choices": [{**choice, "index": 0, "delta": delta}],
        }
        decoder = ChatStreamDecoder()
        return [*decoder.read_chunk(chunk), *decoder.end()]

    def encode_answer(
        self, events: Sequence[AnswerEvent], conversation: Conversation
    ) -> dict[str, Any]:
        return _answer_json(events, conversation)


def _delta_of(message: dict[str, Any]) -> dict[str, Any]:
    """A whole answer's message as the one delta its stream would have folded into."""
    delta: dict[str, Any] = {
        k: message[k] for k in ("reasoning_content", "reasoning", "refusal") if k in message
    }
    content = message.get("content")
    if isinstance(content, list):  # servers that answer in parts
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        content = "".join(t for t in texts if isinstance(t, str))
    delta["content"] = content
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        delta["tool_calls"] = [
            {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
        ]
    return delta


def _answer_json(events: Sequence[AnswerEvent], conversation: Conversation) -> dict[str, Any]:
    """The `chat.completion` the events make (an error body for a `Failure`)."""
    start = Start(id="", model=conversation.model)
    texts: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Usage | None = None
    stop: Stop | None = None
    for event in events:
        if isinstance(event, TextDelta):
            texts.append(event.text)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            function = {"name": event.name, "arguments": ""}
            calls[event.index] = {"id": event.id, "type": "function", "function": function}
        elif isinstance(event, ToolCallDelta) and event.index in calls:
            calls[event.index]["function"]["arguments"] += event.arguments
        elif isinstance(event, Start):
            start = event
        elif isinstance(event, Usage):
            usage = event
        elif isinstance(event, Stop):
            stop = event
        elif isinstance(event, Failure):
            error: dict[str, Any] = json.loads(
                OPENAI_CHAT.dialect.error_body(stream_error_of(event))
            )
            return error
    if stop is None:
        stop = Stop(StopReason.TOOL_USE if calls else StopReason.END_TURN)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    answer: dict[str, Any] = {
        "id": chat_id(start.id),
        "object": "chat.completion",
        "created": start.created if start.created is not None else int(time.time()),
        "model": conversation.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_of(stop.reason),
            }
        ],
    }
    if usage is not None:
        answer["usage"] = usage_json(usage)
    return answer


CODEC = OpenAIChatCodec()
