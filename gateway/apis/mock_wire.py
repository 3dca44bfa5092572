"""What the built-in mock writes: one API's rendering of the mock's answer (`MockWire`).

`gateway.providers.mock` decides *what happens* (words, pauses, cuts, errors); a `MockWire`
decides *how it looks on the wire* in the API of the request (each API's subclass is in its
package: `gateway.apis.<api>.mock_wire`). Each wire renders:

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
from typing import ClassVar

__all__ = ["PROMPT_TOKENS", "MockWire", "dumps"]

#: The prompt tokens every mock answer reports.
PROMPT_TOKENS = 8


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class MockWire:
    """One answer's framing in one API; one instance per answer."""

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
