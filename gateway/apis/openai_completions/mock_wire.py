"""What the built-in mock writes on legacy Completions: `text_completion` chunks, one word each,
a final chunk with `finish_reason`, a usage chunk (`"choices": []`) when the request asks for it
(`stream_options.include_usage`), `data: [DONE]`; or the whole `text_completion` object."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.apis.mock_wire import PROMPT_TOKENS, MockWire, dumps

__all__ = ["CompletionsMockWire"]


class CompletionsMockWire(MockWire):
    """`text_completion` chunks sharing one id and timestamp."""

    garbage = b"data: {this is not json\n\n"
    input_field = "prompt"

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        super().__init__(model, body)
        self._head = {
            "id": f"cmpl-mock-{time.monotonic_ns():x}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }

    def said(self) -> str:
        prompt = self.body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[-1], str):
            return prompt[-1]
        return prompt if isinstance(prompt, str) else ""

    def _chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + dumps({**self._head, "choices": [choice]}) + b"\n\n"

    def opening(self) -> list[bytes]:
        return []

    def text(self, text: str) -> bytes:
        self.words += 1
        return self._chunk(text)

    def closing(self) -> list[bytes]:
        closing = [self._chunk("", finish_reason="stop")]
        options = self.body.get("stream_options")
        if isinstance(options, Mapping) and options.get("include_usage") is True:
            usage = {**self._head, "choices": [], "usage": _usage(self.words)}
            closing.append(b"data: " + dumps(usage) + b"\n\n")
        return closing

    def terminal(self) -> bytes:
        return b"data: [DONE]\n\n"

    def completion(self, text: str) -> bytes:
        words = len(text.split())
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
        return dumps({**self._head, "choices": [choice], "usage": _usage(words)})


def _usage(words: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": words,
        "total_tokens": PROMPT_TOKENS + words,
    }
