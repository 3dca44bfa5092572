"""What the built-in mock writes on the Responses API (see `gateway.apis.mock_wire`): the event
sequence OpenAI sends for one text answer, numbered by `sequence_number`:

`response.created`, `response.in_progress`, `response.output_item.added` (a message),
`response.content_part.added` (an `output_text` part), one `response.output_text.delta` per
word, then `response.output_text.done`, `response.content_part.done`,
`response.output_item.done` and, as the terminal event, `response.completed` with the whole
response and its usage. The non-streaming answer is that response object.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.apis.mock_wire import PROMPT_TOKENS, MockWire, dumps, text_of

__all__ = ["ResponsesMockWire"]


class ResponsesMockWire(MockWire):
    """One Responses answer: one message item with one `output_text` part."""

    garbage = b"event: response.output_text.delta\ndata: {this is not json\n\n"

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        super().__init__(model, body)
        stamp = f"{time.monotonic_ns():x}"
        self._id = f"resp_mock_{stamp}"
        self._item_id = f"msg_mock_{stamp}"
        self._created_at = int(time.time())
        self._sequence = 0
        self._text = ""

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

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: ".encode() + dumps(payload) + b"\n\n"

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
        done = status == "completed"
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "metadata": {},
            "usage": self._usage() if done else None,
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

    def opening(self) -> list[bytes]:
        return [
            self._event("response.created", response=self._response("in_progress", [])),
            self._event("response.in_progress", response=self._response("in_progress", [])),
            self._event(
                "response.output_item.added",
                output_index=0,
                item=self._item("in_progress", None),
            ),
            self._event("response.content_part.added", **self._where(), part=self._part("")),
        ]

    def text(self, text: str) -> bytes:
        self.words += 1
        self._text += text
        return self._event("response.output_text.delta", **self._where(), delta=text, logprobs=[])

    def closing(self) -> list[bytes]:
        text = self._text
        return [
            self._event("response.output_text.done", **self._where(), text=text, logprobs=[]),
            self._event("response.content_part.done", **self._where(), part=self._part(text)),
            self._event(
                "response.output_item.done", output_index=0, item=self._item("completed", text)
            ),
        ]

    def terminal(self) -> bytes:
        output = [self._item("completed", self._text)]
        return self._event("response.completed", response=self._response("completed", output))

    def completion(self, text: str) -> bytes:
        self.words = len(text.split())
        self._text = text
        return dumps(self._response("completed", [self._item("completed", text)]))
