"""What the built-in mock writes on the Responses API (see `gateway.apis.mock_wire`): the event
sequence OpenAI sends for one text answer, numbered by `sequence_number`:

`response.created`, (a background response: `response.queued`), `response.in_progress`,
`response.output_item.added` (a message), `response.content_part.added` (an `output_text`
part), one `response.output_text.delta` per word, then `response.output_text.done`,
`response.content_part.done`, `response.output_item.done` and, as the terminal event,
`response.completed` with the whole response and its usage. The non-streaming answer is that
response object.

The wire also keeps the response's state, so that the mock can store it (see
`gateway.providers.mock_responses`): `status` (`queued` for a background response until it
starts, `in_progress`, `completed`, `cancelled`), `snapshot()` (the response object as it is
now) and `input_items()` (the request's input as OpenAI lists it). The response object says
what the request asked: `store` (default true), `background`, `previous_response_id`,
`instructions`. A cancelled response ends with `response.incomplete` carrying the response
with status `cancelled` and the usage of what was generated: the Responses stream has no
event of its own for a cancellation, and without a terminal event a stream reads as cut.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.apis.mock_wire import PROMPT_TOKENS, MockWire, dumps, text_of

__all__ = ["ResponsesMockWire"]

#: The statuses after which a response changes no more.
_FINAL = frozenset({"completed", "cancelled"})


class ResponsesMockWire(MockWire):
    """One Responses answer: one message item with one `output_text` part."""

    garbage = b"event: response.output_text.delta\ndata: {this is not json\n\n"
    input_field = "input"

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        super().__init__(model, body)
        stamp = f"{time.monotonic_ns():x}"
        self.id = f"resp_mock_{stamp}"
        self._item_id = f"msg_mock_{stamp}"
        self._created_at = int(time.time())
        self._sequence = 0
        self._text = ""
        self.background = body.get("background") is True
        self.store = body.get("store") is not False
        #: `queued` (background, not started), `in_progress`, `completed` or `cancelled`.
        self.status = "queued" if self.background else "in_progress"
        self._item_status: str | None = None  # None until the output item is added
        self._announced = False

    @property
    def final(self) -> bool:
        """Whether the response is over (completed or cancelled)."""
        return self.status in _FINAL

    def said(self) -> str:
        """The request's `input`: a string, or the last user message among its items."""
        given = self.body.get("input")
        if isinstance(given, str):
            return given
        if isinstance(given, list):
            for item in reversed(given):
                if isinstance(item, dict) and item.get("role") == "user":
                    return text_of(item.get("content"))
        return ""

    def input_items(self) -> list[dict[str, Any]]:
        """The request's input items as OpenAI lists them: each with an id, a message's text
        content as `input_text` parts; a string input is one user message."""
        given = self.body.get("input")
        items = [{"role": "user", "content": given}] if isinstance(given, str) else given
        listed: list[dict[str, Any]] = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            entry = dict(item)
            if "role" in entry:
                entry.setdefault("type", "message")
                entry.setdefault("status", "completed")
                content = entry.get("content")
                if isinstance(content, str):
                    entry["content"] = [{"type": "input_text", "text": content}]
            entry.setdefault("id", f"{self._item_id}_in{index}")
            listed.append(entry)
        return listed

    def snapshot(self) -> dict[str, Any]:
        """The response object as it is now (what `GET /responses/{id}` answers)."""
        output = [] if self._item_status is None else [self._item(self._item_status, self._text)]
        return self._response(self.status, output)

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return _frame(kind, payload)

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": []}

    def _item(self, status: str, text: str | None) -> dict[str, Any]:
        return {
            "id": self._item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [] if text is None else [self._part(text)],
        }

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "background": self.background,
            "error": None,
            "incomplete_details": None,
            "instructions": self.body.get("instructions"),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": self.body.get("previous_response_id"),
            "store": self.store,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "metadata": {},
            "usage": self._usage() if status in _FINAL else None,
        }

    def _usage(self) -> dict[str, Any]:
        return {
            "input_tokens": PROMPT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.words,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": PROMPT_TOKENS + self.words,
        }

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._item_id, "output_index": 0, "content_index": 0}

    def announce(self) -> list[bytes]:
        """The events that say the response exists (`response.created`, and `response.queued`
        for a background one), written once: `opening()` leaves out what was announced."""
        if self._announced:
            return []
        self._announced = True
        events = [self._event("response.created", response=self.snapshot())]
        if self.background:
            events.append(self._event("response.queued", response=self.snapshot()))
        return events

    def opening(self) -> list[bytes]:
        events = self.announce()
        self.status = "in_progress"
        events.append(self._event("response.in_progress", response=self.snapshot()))
        self._item_status = "in_progress"
        item = self._item("in_progress", None)
        events.append(self._event("response.output_item.added", output_index=0, item=item))
        part = self._part("")
        events.append(self._event("response.content_part.added", **self._where(), part=part))
        return events

    def text(self, text: str) -> bytes:
        self.words += 1
        self._text += text
        return self._event("response.output_text.delta", **self._where(), delta=text, logprobs=[])

    def oversized(self, size: int) -> bytes:
        """A delta outside the answer: not numbered, not part of the response's text."""
        kind = "response.output_text.delta"
        payload = {"type": kind, "sequence_number": self._sequence, "delta": "x" * (size + 1)}
        return _frame(kind, payload)

    def closing(self) -> list[bytes]:
        text = self._text
        events = [
            self._event("response.output_text.done", **self._where(), text=text, logprobs=[]),
            self._event("response.content_part.done", **self._where(), part=self._part(text)),
        ]
        self._item_status = "completed"
        item = self._item("completed", text)
        events.append(self._event("response.output_item.done", output_index=0, item=item))
        return events

    def terminal(self) -> bytes:
        self.status = "completed"
        return self._event("response.completed", response=self.snapshot())

    def stop(self) -> None:
        """Generation stopped before the end: the response is `cancelled` (no event says so;
        `cancel()` writes the one that does)."""
        if not self.final:
            self.status = "cancelled"
            if self._item_status == "in_progress":
                self._item_status = "incomplete"

    def cancel(self) -> bytes:
        """Cancel the response (not over yet): it becomes `cancelled`; returns the event that
        ends its stream."""
        self.stop()
        return self._event("response.incomplete", response=self.snapshot())

    def completion(self, text: str) -> bytes:
        self.words = len(text.split())
        self._text = text
        self._item_status = "completed"
        self.status = "completed"
        return dumps(self.snapshot())


def _frame(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + dumps(payload) + b"\n\n"
