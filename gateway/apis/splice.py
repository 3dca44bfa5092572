"""`Splice`: what it takes to continue a stream that died after its first byte, per API.

A continuation asks a target that supports assistant prefill for the same conversation with the
text streamed so far as a final assistant message, and splices its answer into the client's
stream, so that the client reads one answer. A `Splice` (one per stream) does the API's part
of that (each API's subclass is in its package: `gateway.apis.<api>.splice`):

- `observe(events)`: read every event relayed to the client, keeping the assistant text so far
  and whether continuing it is *sound*: only plain text from one choice / one text block can be
  continued by prefill (a tool call, a reasoning or thinking part, a refusal, several choices
  cannot, nor a text block already closed); and whether the answer is *complete* (a
  `finish_reason` / `stop_reason`: nothing to continue).
- `body(request)`: the continuation request - the client's own, with the text so far as the
  final assistant message (appended to the client's own prefill if it ended with one). Trailing
  whitespace is taken off the prefill (Anthropic rejects it) and remembered.
- `rewrite(events)`: the continuation's events as the client's stream needs them. OpenAI: every
  chunk gets the first stream's `id` and `created`, the repeated `role` goes, everything else
  is kept (the `model` says who wrote those tokens). Anthropic: the text block's
  `content_block_start` is dropped (the client's block is still open); the deltas,
  `content_block_stop`, `message_delta` and `message_stop` pass, and so does the second
  `message_start`, for the relay's tracker: it counts that call's usage and drops the event
  (the client's message is still open). In both,
  the whitespace taken off the prefill is not sent twice: the continuation's leading text is
  matched against it and the repeated part dropped.

Events a splice does not change are passed on as they came, byte-exact; a changed one is
re-encoded as one `data:` line of compact JSON (no raw line break can get in).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.streaming import SSEEvent, loads_object

__all__ = ["Splice", "event_of", "is_text_block", "loads_data", "text_of"]


def loads_data(data: str | None) -> dict[str, Any] | None:
    return None if data is None else loads_object(data)


def event_of(payload: dict[str, Any], name: str | None = None) -> SSEEvent:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return SSEEvent(raw=f"{head}data: {data}\n\n".encode(), data=data, event=name)


def text_of(content: object) -> str | None:
    """The text of a message's content (a string, or text blocks only); None otherwise."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(is_text_block(block) for block in content):
        return "".join(block["text"] for block in content)
    return None


def is_text_block(block: object) -> bool:
    return (
        isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


class Splice:
    """One stream's continuation state; the API's subclass reads and writes its events."""

    #: Fields a continuation request adds to the client's body (the API's prefill switch).
    prefill_fields: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, request: Mapping[str, Any]) -> None:
        self.text = ""  # the assistant text the client has received
        self.sound = self._request_sound(request)  # it can be continued by prefill
        self.complete = False  # the answer said it is complete: nothing to continue
        self.diverged = False  # a continuation did not continue the text: stop there
        self._pending = ""  # whitespace taken off the prefill, not yet matched

    def _request_sound(self, request: Mapping[str, Any]) -> bool:
        return isinstance(request.get("messages"), list)

    def observe(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """Note what `events` tell the client (they are relayed as they are); returns them."""
        raise NotImplementedError

    def rewrite(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """A continuation's events as the client's stream needs them (then observed)."""
        raise NotImplementedError

    def body(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The continuation request: `request` with the text so far as the assistant's."""
        body = copy.deepcopy(dict(request))
        messages: list[Any] = body["messages"]
        prefill = self.text
        if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
            prefill = (text_of(messages.pop().get("content")) or "") + prefill
        stripped = prefill.rstrip()
        self._pending = prefill[len(stripped) :]
        if stripped:
            messages.append({"role": "assistant", "content": stripped})
            body.update(self.prefill_fields)
        return body

    def _dedupe(self, text: str) -> str:
        """`text` without the leading whitespace the client already has."""
        pending = self._pending
        if not pending:
            return text
        same = 0
        while same < min(len(pending), len(text)) and pending[same] == text[same]:
            same += 1
        if same < len(text) or same == len(pending):
            self._pending = ""  # matched all it could: the rest is new
        else:
            self._pending = pending[same:]
        return text[same:]
