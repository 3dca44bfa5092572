"""Anthropic Messages payloads as an upstream sends them, for the fake upstream.

Deterministic builders (compact JSON, fixed ids) so tests can compare bytes exactly. Each event
is framed as Anthropic frames it: an `event:` line naming the type, then one `data:` line.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MESSAGE_STOP",
    "PING",
    "anthropic_error",
    "anthropic_events",
    "anthropic_message",
    "content_block_start",
    "content_block_stop",
    "error_event",
    "event",
    "message_delta",
    "message_start",
    "text_delta",
]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def event(payload: dict[str, Any], name: str | None = None) -> bytes:
    """One SSE event: `event: <name or payload type>` and the payload as one `data:` line."""
    kind = name if name is not None else payload["type"]
    return f"event: {kind}\ndata: ".encode() + _dumps(payload) + b"\n\n"


def message_start(
    *, model: str = "fake-claude", id: str = "msg_fake", input_tokens: int = 25
) -> bytes:
    message = {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    return event({"type": "message_start", "message": message})


def content_block_start(index: int = 0) -> bytes:
    block = {"type": "text", "text": ""}
    return event({"type": "content_block_start", "index": index, "content_block": block})


def text_delta(text: str, index: int = 0) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return event({"type": "content_block_delta", "index": index, "delta": delta})


def content_block_stop(index: int = 0) -> bytes:
    return event({"type": "content_block_stop", "index": index})


def message_delta(stop_reason: str | None = "end_turn", *, output_tokens: int = 15) -> bytes:
    return event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )


PING = event({"type": "ping"})
MESSAGE_STOP = event({"type": "message_stop"})


def error_event(type: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    """Anthropic's own mid-stream error: `event: error`."""
    return event(anthropic_error(type, message))


def anthropic_events(
    texts: list[str],
    *,
    stop_reason: str | None = "end_turn",
    ping: bool = True,
    stop: bool = True,
    model: str = "fake-claude",
) -> list[bytes]:
    """A whole Messages stream with one text block: `message_start`, `content_block_start`,
    a `ping` (as Anthropic sends one early), a delta per text, `content_block_stop`,
    `message_delta` (when `stop_reason` is not None; with that reason) and `message_stop`
    (when `stop`)."""
    events = [message_start(model=model), content_block_start()]
    if ping:
        events.append(PING)
    events += [text_delta(text) for text in texts]
    events.append(content_block_stop())
    if stop_reason is not None:
        events.append(message_delta(stop_reason, output_tokens=len(texts)))
    if stop:
        events.append(MESSAGE_STOP)
    return events


def anthropic_error(type: str, message: str) -> dict[str, Any]:
    """Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`."""
    return {"type": "error", "error": {"type": type, "message": message}}


def anthropic_message(text: str = "Hello!", *, model: str = "fake-claude") -> bytes:
    """A non-streaming Messages answer with `usage`."""
    return _dumps(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": max(1, len(text.split()))},
        }
    )
