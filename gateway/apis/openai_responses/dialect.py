"""The OpenAI Responses dialect: typed events (`event: response.output_text.delta` / `data:
{"type": ..., "sequence_number": N, ...}`), ended by one terminal `response.*` event.

The tracker judges each event by its name (the `event:` field, or its JSON's `type` when an
upstream leaves the field out):

- `response.completed` and `response.incomplete` end the stream: the response is over (an
  incomplete one ran out of output tokens or was filtered: still the upstream's last word);
- `response.failed` and `error` are the upstream's own failure: relayed, then the stream ends;
- every other event is forwarded when its data is a JSON object, skipped when it is not.

An answer begins (`opening`) at its first event that carries something: text, a tool call,
reasoning, a terminal event. `response.created`, `response.queued`, `response.in_progress`, the
`output_item.added` of a message or reasoning item still empty, a `*part.added` of an empty
part and empty deltas are its preamble; `error` and `response.failed` are the upstream's own
failure.

There is no "complete without its marker" in this API: only a terminal event says a response
is over, so a stream that ends without one has been cut (contract section 2), whatever it sent.
Usage comes in the terminal event's `response.usage` (`input_tokens`, `output_tokens`, their
`input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`). The
gateway's own error event after the first byte (contract section 5) numbers itself after the
last `sequence_number` relayed and nests the OpenAI error object, so that openai-python raises
`APIError` on it; before the first byte errors are OpenAI's JSON body, as on chat.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.apis.openai_chat.dialect import OpenAIDialect
from gateway.streaming import (
    Opening,
    SSEEvent,
    StreamError,
    StreamTracker,
    Verdict,
    compact_json,
    loads_object,
    shape_reader,
)

__all__ = ["ResponsesDialect", "ResponsesTracker"]

#: The events that end a Responses stream, and what each means for the relay.
_TERMINAL = {
    "response.completed": Verdict.END,
    "response.incomplete": Verdict.END,
    "response.failed": Verdict.END_WITH_ERROR,
    "error": Verdict.END_WITH_ERROR,
}


#: Events that never carry any of the answer.
_PREAMBLE = frozenset({"response.created", "response.queued", "response.in_progress"})
#: The items whose `output_item.added` carries nothing yet (a function call names its tool).
_EMPTY_ITEMS = frozenset({"message", "reasoning"})


def _opening_of(kind: object, payload: dict[str, Any]) -> Opening:
    """What a Responses event of type `kind` is to an answer that has not begun."""
    if kind in _TERMINAL:
        return Opening.CONTENT if _TERMINAL[kind] is Verdict.END else Opening.ERROR
    if kind in _PREAMBLE:
        return Opening.PREAMBLE
    if not isinstance(kind, str):
        return Opening.CONTENT
    if kind == "response.output_item.added":
        item = payload.get("item")
        empty = (
            isinstance(item, dict)
            and item.get("type") in _EMPTY_ITEMS
            and not item.get("content")
            and not item.get("summary")
        )
    elif kind.endswith("part.added"):  # content_part, reasoning_summary_part
        part = payload.get("part")
        empty = isinstance(part, dict) and not part.get("text")
    elif kind.endswith(".delta"):
        empty = not payload.get("delta")
    else:
        empty = False
    return Opening.PREAMBLE if empty else Opening.CONTENT


class _Event(msgspec.Struct):
    """What the tracker reads of an event (`shape_reader`): the rest is checked, not built."""

    type: Any = None
    sequence_number: Any = None
    response: Any = None


_read_event = shape_reader(_Event)


class ResponsesTracker(StreamTracker):
    """One Responses stream's state: its usage and the last `sequence_number` relayed."""

    __slots__ = ("sequence_number",)

    def __init__(self) -> None:
        super().__init__()
        self.sequence_number = -1  # none relayed yet

    def inspect(self, event: SSEEvent) -> Verdict:
        data = event.data
        if data is None:
            return Verdict.SKIP
        shape = _read_event(data)
        if shape is not None:
            kind, number, response = shape.type, shape.sequence_number, shape.response
        else:  # not of the usual shape: the judge reads it whole
            payload = loads_object(data)
            if payload is None:
                self.skipped += 1
                return Verdict.SKIP
            kind = payload.get("type")
            number, response = payload.get("sequence_number"), payload.get("response")
        kind = event.event or kind
        if isinstance(number, int) and not isinstance(number, bool):
            self.sequence_number = max(self.sequence_number, number)
        verdict = _TERMINAL.get(kind) if isinstance(kind, str) else None
        if verdict is None:
            if kind == "response.created":
                self.answer_id = _response_id(response)
            return Verdict.FORWARD
        if isinstance(response, dict) and isinstance(response.get("usage"), dict):
            self.usage = response["usage"]
        self.complete = verdict is Verdict.END
        return verdict


class ResponsesDialect(OpenAIDialect):
    name = "openai"
    completion_trailer = b""  # never written: only a terminal event completes a response
    usage_paths = {
        "input": ("input_tokens",),
        "output": ("output_tokens",),
        "cached": ("input_tokens_details", "cached_tokens"),
        "reasoning": ("output_tokens_details", "reasoning_tokens"),
    }

    def tracker(self) -> StreamTracker:
        return ResponsesTracker()

    def opening(self, event: SSEEvent) -> Opening:
        data = event.data
        payload = None if data is None else loads_object(data)
        if payload is None:
            return Opening.PREAMBLE  # skipped by the tracker: the client never sees it
        return _opening_of(event.event or payload.get("type"), payload)

    def answer_id(self, answer: Any) -> str | None:
        return _response_id(answer)

    def error_event(self, error: StreamError, tracker: StreamTracker | None = None) -> bytes:
        number = tracker.sequence_number + 1 if isinstance(tracker, ResponsesTracker) else 0
        nested = self._error_object(error)
        data: dict[str, Any] = {
            "type": "error",
            "code": nested["code"],
            "message": error.message,
            "param": error.param,
            "sequence_number": number,
            "error": nested,
        }
        return b"event: error\ndata: " + compact_json(data) + b"\n\n"


def _response_id(response: object) -> str | None:
    """The id of a Responses response object (`{"object": "response", "id": ...}`), if sane."""
    if not isinstance(response, dict) or response.get("object") != "response":
        return None
    if response.get("deleted"):
        return None  # a `DELETE`'s answer names what is gone
    found = response.get("id")
    return found if isinstance(found, str) and 0 < len(found) <= 256 else None
