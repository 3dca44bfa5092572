"""What the built-in mock writes on Chat Completions (see `gateway.apis.mock_wire`).

As OpenAI does, a stream reports its usage only when the request asks for it
(`stream_options.include_usage`): in one more chunk after the `finish_reason` chunk, with
`"choices": []`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.apis.mock_wire import PROMPT_TOKENS, MockWire, dumps

__all__ = ["OpenAIMockWire", "usage_of"]


class OpenAIMockWire(MockWire):
    """`chat.completion.chunk` events sharing one id and timestamp; `data: [DONE]`."""

    garbage = b"data: {this is not json\n\n"

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        super().__init__(model, body)
        self._head = {
            "id": f"chatcmpl-mock-{time.monotonic_ns():x}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def _chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return b"data: " + dumps({**self._head, "choices": [choice]}) + b"\n\n"

    def opening(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def text(self, text: str) -> bytes:
        self.words += 1
        return self._chunk({"content": text})

    def closing(self) -> list[bytes]:
        closing = [self._chunk({}, finish_reason="stop")]
        options = self.body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage") is True:
            usage = {**self._head, "choices": [], "usage": usage_of(self.words)}
            closing.append(b"data: " + dumps(usage) + b"\n\n")
        return closing

    def terminal(self) -> bytes:
        return b"data: [DONE]\n\n"

    def completion(self, text: str) -> bytes:
        words = len(text.split())
        return dumps(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage_of(words),
            }
        )


def usage_of(words: int) -> dict[str, Any]:
    """The usage of a mock answer of `words` pieces, in OpenAI's shape (no cache, no
    reasoning: the mock reports them as zero)."""
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": words,
        "total_tokens": PROMPT_TOKENS + words,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
