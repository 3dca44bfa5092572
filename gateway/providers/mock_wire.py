"""What the built-in mock writes, per dialect: the same answer as OpenAI chunks or Anthropic events.

`mock.py` decides *what happens* (words, pauses, cuts, errors); a `MockWire` decides *how it
looks on the wire* for the dialect of the request. Each wire renders:

- `opening()`: the events before the first word (OpenAI: the `role` chunk; Anthropic:
  `message_start`, `content_block_start` and a `ping`, as Anthropic's API sends them);
- `text(word)`: one event carrying a piece of the answer;
- `closing()`: the events that say the answer is complete (`finish_reason` / `message_delta`
  with `stop_reason`), and `terminal`, the marker that ends the stream;
- `garbage`: one event whose data is not JSON (for `mock-garbage`);
- `completion(text)`: the whole answer as the non-streaming JSON body.

Every event is compact single-line JSON, so the gateway relays it byte-exact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["MOCK_WIRES", "AnthropicMockWire", "MockWire", "OpenAIMockWire"]

_PROMPT_TOKENS = 8


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class MockWire:
    """One answer's framing in one dialect; one instance per answer."""

    terminal: ClassVar[bytes]
    garbage: ClassVar[bytes]

    def __init__(self, model: str) -> None:
        self.model = model
        self.words = 0  # pieces of text written so far (the completion token count)

    def opening(self) -> list[bytes]:
        raise NotImplementedError

    def text(self, text: str) -> bytes:
        raise NotImplementedError

    def closing(self) -> list[bytes]:
        raise NotImplementedError

    def completion(self, text: str) -> bytes:
        raise NotImplementedError


class OpenAIMockWire(MockWire):
    """`chat.completion.chunk` events sharing one id and timestamp; `data: [DONE]`."""

    terminal = b"data: [DONE]\n\n"
    garbage = b"data: {this is not json\n\n"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._head = {
            "id": f"chatcmpl-mock-{time.monotonic_ns():x}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def _chunk(self, delta: dict[str, str], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return b"data: " + _dumps({**self._head, "choices": [choice]}) + b"\n\n"

    def opening(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def text(self, text: str) -> bytes:
        self.words += 1
        return self._chunk({"content": text})

    def closing(self) -> list[bytes]:
        return [self._chunk({}, finish_reason="stop")]

    def completion(self, text: str) -> bytes:
        words = len(text.split())
        return _dumps(
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
                "usage": {
                    "prompt_tokens": _PROMPT_TOKENS,
                    "completion_tokens": words,
                    "total_tokens": _PROMPT_TOKENS + words,
                },
            }
        )


class AnthropicMockWire(MockWire):
    """Anthropic Messages events (`event:` + `data:`), one text block; `message_stop`."""

    terminal = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    garbage = b"event: content_block_delta\ndata: {this is not json\n\n"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._id = f"msg_mock_{time.monotonic_ns():x}"

    @staticmethod
    def _event(payload: dict[str, Any]) -> bytes:
        return f"event: {payload['type']}\ndata: ".encode() + _dumps(payload) + b"\n\n"

    def _message(self, content: list[dict[str, Any]], stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": _PROMPT_TOKENS, "output_tokens": max(1, self.words)},
        }

    def opening(self) -> list[bytes]:
        return [
            self._event({"type": "message_start", "message": self._message([], None)}),
            self._event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                }
            ),
            self._event({"type": "ping"}),
        ]

    def text(self, text: str) -> bytes:
        self.words += 1
        delta = {"type": "text_delta", "text": text}
        return self._event({"type": "content_block_delta", "index": 0, "delta": delta})

    def closing(self) -> list[bytes]:
        return [
            self._event({"type": "content_block_stop", "index": 0}),
            self._event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": self.words},
                }
            ),
        ]

    def completion(self, text: str) -> bytes:
        self.words = len(text.split())
        return _dumps(self._message([{"type": "text", "text": text}], "end_turn"))


#: The mock's wire per `Dialect.name`.
MOCK_WIRES: dict[str, Callable[[str], MockWire]] = {
    "openai": OpenAIMockWire,
    "anthropic": AnthropicMockWire,
}
