"""OpenAI Responses payloads as an upstream sends them, for the fake upstream.

Deterministic builders (fixed ids and `created_at`, compact JSON) so tests can compare bytes
exactly. Each event is framed as OpenAI frames it: an `event:` line naming the type, then one
`data:` line whose JSON carries the same `type` and the event's `sequence_number`. A whole
stream (`responses_events`) numbers its events from 0, as OpenAI does.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CREATED_AT",
    "ITEM_ID",
    "RESPONSE_ID",
    "failed_event",
    "response_object",
    "responses_completion",
    "responses_error_event",
    "responses_event",
    "responses_events",
    "usage",
]

CREATED_AT = 1700000000
RESPONSE_ID = "resp_fake"
ITEM_ID = "msg_fake"
INPUT_TOKENS = 9


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def responses_event(kind: str, sequence_number: int, *, named: bool = True, **fields: Any) -> bytes:
    """One Responses event: `event: <kind>` (left out when not `named`) and one `data:` line."""
    payload = {"type": kind, "sequence_number": sequence_number, **fields}
    head = f"event: {kind}\n".encode() if named else b""
    return head + b"data: " + _dumps(payload) + b"\n\n"


def usage(output_tokens: int, input_tokens: int = INPUT_TOKENS) -> dict[str, Any]:
    """A Responses `usage` object."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _message(text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    return {
        "id": ITEM_ID,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def response_object(
    status: str,
    text: str | None = None,
    *,
    model: str = "fake-model",
    output_tokens: int | None = None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """A `response` object: `output` holds one message with `text` (none when `text` is None),
    `usage` is set when `output_tokens` is."""
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED_AT,
        "status": status,
        "error": error,
        "incomplete_details": (
            None if incomplete_reason is None else {"reason": incomplete_reason}
        ),
        "instructions": None,
        "model": model,
        "output": [] if text is None else [_message(text, "completed")],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None if output_tokens is None else usage(output_tokens),
    }


def failed_event(
    sequence_number: int,
    message: str = "The model had a server error.",
    *,
    code: str = "server_error",
    model: str = "fake-model",
) -> bytes:
    """The upstream's own failure: `response.failed` with the response's `error`."""
    error = {"code": code, "message": message}
    response = response_object("failed", model=model, error=error)
    return responses_event("response.failed", sequence_number, response=response)


def responses_error_event(
    sequence_number: int, message: str = "Upstream overloaded", *, code: str = "server_error"
) -> bytes:
    """The upstream's own `error` event (as OpenAI sends it mid-stream)."""
    return responses_event("error", sequence_number, code=code, message=message, param=None)


def responses_events(
    texts: list[str],
    *,
    terminal: str | None = "response.completed",
    model: str = "fake-model",
    named: bool = True,
) -> list[bytes]:
    """A whole Responses stream of one message with one `output_text` part: `response.created`,
    `response.in_progress`, `response.output_item.added`, `response.content_part.added`, one
    `response.output_text.delta` per text, the three `.done` events, then `terminal`
    (`response.completed`, `response.incomplete` or `response.failed`; none when None) with
    usage `output_tokens = len(texts)`. `named=False` leaves every `event:` line out."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": response_object("in_progress", model=model)}),
        ("response.in_progress", {"response": response_object("in_progress", model=model)}),
        ("response.output_item.added", {"output_index": 0, "item": _message(None, "in_progress")}),
    ]
    where = {"item_id": ITEM_ID, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    events.append(("response.content_part.added", {**where, "part": part}))
    events += [
        ("response.output_text.delta", {**where, "delta": text, "logprobs": []}) for text in texts
    ]
    whole = "".join(texts)
    events += [
        ("response.output_text.done", {**where, "text": whole, "logprobs": []}),
        ("response.content_part.done", {**where, "part": {**part, "text": whole}}),
        ("response.output_item.done", {"output_index": 0, "item": _message(whole, "completed")}),
    ]
    if terminal is not None:
        status = terminal.removeprefix("response.")
        final = response_object(
            status,
            whole,
            model=model,
            output_tokens=len(texts),
            error={"code": "server_error", "message": "failed"} if status == "failed" else None,
            incomplete_reason="max_output_tokens" if status == "incomplete" else None,
        )
        events.append((terminal, {"response": final}))
    return [
        responses_event(kind, number, named=named, **fields)
        for number, (kind, fields) in enumerate(events)
    ]


def responses_completion(text: str = "Hello!", *, model: str = "fake-model") -> bytes:
    """A non-streaming Responses answer (the completed response object, with usage)."""
    return _dumps(
        response_object("completed", text, model=model, output_tokens=max(1, len(text.split())))
    )
