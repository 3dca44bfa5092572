"""Anthropic token counting (`POST /v1/messages/count_tokens`): the `anthropic` SDK's
`messages.count_tokens`, which coding agents call before every turn. Never streams; the answer
(`{"input_tokens": N}`) is relayed as the upstream wrote it; it has no usage object (nothing
was generated), so no tokens are recorded."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.apis.anthropic_messages.dialect import AnthropicDialect
from gateway.apis.anthropic_messages.request import forwarded_anthropic_headers
from gateway.apis.base import Api
from gateway.apis.mock_wire import MockWire, dumps, text_of
from gateway.apis.request import WholeAnswerRequest

__all__ = ["ANTHROPIC_COUNT_TOKENS", "CountTokensMockWire", "CountTokensRequest"]


class CountTokensRequest(WholeAnswerRequest):
    """The fields of a token count the gateway reads: `model` and a non-empty `messages`."""

    messages: list[Any] = Field(min_length=1)


class CountTokensMockWire(MockWire):
    """The mock's count: the words of the system prompt and of every message, plus one per
    message (deterministic, in the order of magnitude of a real count)."""

    garbage = b""

    def completion(self, text: str) -> bytes:
        system = self.body.get("system")
        words = len(text_of(system).split()) if system is not None else 0
        messages = self.body.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if isinstance(message, dict):
                words += 1 + len(text_of(message.get("content")).split())
        return dumps({"input_tokens": words})


ANTHROPIC_COUNT_TOKENS = Api(
    name="count_tokens",
    path="/v1/messages/count_tokens",
    upstream_path="/v1/messages/count_tokens",
    dialect=AnthropicDialect(),
    request=CountTokensRequest,
    mock_wire=CountTokensMockWire,
    forwarded_headers=forwarded_anthropic_headers,
)
