"""The OpenAI Responses codec (`CODEC`): a Responses client served by a target of another API
(Anthropic Messages, or an OpenAI-compatible server with only Chat Completions), and a
Responses-only target serving a client of another API.

Its parts, one module each: the request decoded (`openai_responses_request`) and encoded for a
Responses target (`openai_responses_target`), answer events written as a Responses stream and
whole response (`openai_responses_stream`), and a Responses upstream's stream and response read
as answer events (`openai_responses_reader`). A translated target cannot hold a conversation:
`previous_response_id`, `background`, `conversation` and `prompt` stay in `extras`, which the
target's encoder refuses; the response object says `store: false`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.apis import OPENAI_RESPONSES, Api
from gateway.streaming import SSEEvent
from gateway.translation.answer import AnswerEvent
from gateway.translation.codec import EncodeOptions, StreamEncoder
from gateway.translation.conversation import Conversation
from gateway.translation.openai_responses_reader import ResponsesReader, decode_response
from gateway.translation.openai_responses_request import decode_request
from gateway.translation.openai_responses_stream import ResponsesStream
from gateway.translation.openai_responses_target import encode_request

__all__ = ["CODEC", "ResponsesCodec", "ResponsesEncoder", "ResponsesReader"]


class ResponsesEncoder(StreamEncoder):
    """A client's Responses stream, written from answer events (a `StreamEncoder`)."""

    __slots__ = ("_stream",)

    def __init__(self, conversation: Conversation) -> None:
        self._stream = ResponsesStream(conversation)

    def events(self, event: AnswerEvent) -> list[SSEEvent]:
        return self._stream.events(event)


class ResponsesCodec:
    """The Responses API's `Codec`."""

    @property
    def api(self) -> Api:
        return OPENAI_RESPONSES

    def decode_request(self, body: Mapping[str, Any]) -> Conversation:
        return decode_request(body)

    def encode_request(
        self, conversation: Conversation, *, model: str, options: EncodeOptions
    ) -> dict[str, Any]:
        return encode_request(conversation, model=model, options=options)

    def stream_decoder(self) -> ResponsesReader:
        return ResponsesReader()

    def stream_encoder(self, conversation: Conversation) -> ResponsesEncoder:
        return ResponsesEncoder(conversation)

    def decode_answer(self, answer: Mapping[str, Any]) -> list[AnswerEvent]:
        return decode_response(answer)

    def encode_answer(
        self, events: Sequence[AnswerEvent], conversation: Conversation
    ) -> dict[str, Any]:
        """The response object the events make: every output item finished, `usage`,
        `status` (`incomplete` with its reason for an answer cut short, `failed` with the
        `error` for a `Failure`)."""
        stream = ResponsesStream(conversation)
        for event in events:
            stream.events(event)
        return stream.response()


CODEC = ResponsesCodec()
