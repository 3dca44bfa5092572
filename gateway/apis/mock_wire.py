"""What the built-in mock writes: one API's rendering of the mock's answer (`MockWire`).

`gateway.providers.mock` decides *what happens* (words, pauses, cuts, errors); a `MockWire`
decides *how it looks on the wire* in the API of the request (each API's subclass is in its
package: `gateway.apis.<api>.mock_wire`). Each wire renders:

- `opening()`: the events before the first word (OpenAI: the `role` chunk; Anthropic:
  `message_start`, `content_block_start` and a `ping`, as Anthropic's API sends them);
- `text(word)`: one event carrying a piece of the answer;
- `closing()`: the events that say the answer is complete (`finish_reason` / `message_delta`
  with `stop_reason`), and `terminal()`, the marker that ends the stream;
- `garbage`: one event whose data is not JSON (for `mock-garbage`), and `oversized(size)`, one
  event larger than `size` bytes (for `mock-huge`), both outside the answer;
- `completion(text)`: the whole answer as the non-streaming JSON body.

`input_field` names the request field that holds what the model reads (the `param` of the
mock's `mock-400` error, as the API's own errors name it).

Every event is compact single-line JSON, so the gateway relays it byte-exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = ["PROMPT_TOKENS", "MockWire", "dumps", "text_of"]

#: The prompt tokens every mock answer reports.
PROMPT_TOKENS = 8


#: The content parts whose text a user's message holds, across the APIs.
_TEXT_PARTS = frozenset({"text", "input_text"})


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def text_of(content: object) -> str:
    """The text of a message's content: a string, or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [part for part in content if isinstance(part, dict) and part.get("type") in _TEXT_PARTS]
    return " ".join(part["text"] for part in parts if isinstance(part.get("text"), str))


class MockWire:
    """One answer's framing in one API; one instance per answer."""

    garbage: ClassVar[bytes]
    #: The request field holding the model's input (`messages`, `input`, `prompt`).
    input_field: ClassVar[str] = "messages"

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        self.model = model
        self.body = body  # the request's JSON
        self.words = 0  # pieces of text written so far (the completion token count)

    def said(self) -> str:
        """What the user said last in the request (the mock echoes it): the last user message
        of `messages`, its text parts joined."""
        messages = self.body.get("messages")
        if isinstance(messages, list):
            for message in reversed(messages):
                if isinstance(message, dict) and message.get("role") == "user":
                    return text_of(message.get("content"))
        return ""

    def opening(self) -> list[bytes]:
        raise NotImplementedError

    def text(self, text: str) -> bytes:
        raise NotImplementedError

    def oversized(self, size: int) -> bytes:
        """One event of this API's framing larger than `size` bytes."""
        return self.text("x" * (size + 1))

    def closing(self) -> list[bytes]:
        raise NotImplementedError

    def terminal(self) -> bytes:
        """The event that ends the stream (after `closing()`)."""
        raise NotImplementedError

    def completion(self, text: str) -> bytes:
        raise NotImplementedError
