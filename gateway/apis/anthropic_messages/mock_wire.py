"""What the built-in mock writes on Messages (see `gateway.apis.mock_wire`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.apis.mock_wire import PROMPT_TOKENS, MockWire, dumps

__all__ = ["AnthropicMockWire"]


class AnthropicMockWire(MockWire):
    """Anthropic Messages events (`event:` + `data:`), one text block; `message_stop`."""

    garbage = b"event: content_block_delta\ndata: {this is not json\n\n"

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        super().__init__(model, body)
        self._id = f"msg_mock_{time.monotonic_ns():x}"

    @staticmethod
    def _event(payload: dict[str, Any]) -> bytes:
        return f"event: {payload['type']}\ndata: ".encode() + dumps(payload) + b"\n\n"

    def _message(self, content: list[dict[str, Any]], stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": max(1, self.words)},
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

    def terminal(self) -> bytes:
        return b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

    def completion(self, text: str) -> bytes:
        self.words = len(text.split())
        return dumps(self._message([{"type": "text", "text": text}], "end_turn"))
