"""Messages streams as Anthropic sends them, for the Messages codec's tests.

Each recording is the bytes of a real stream's shape: `event: <type>` and one compact `data:`
line per event, the fields in Anthropic's order. `TEXT` and `TOOLS` use the `message_delta`
usage of Anthropic's current API (the cumulative input and cache counts repeated there).
"""

from __future__ import annotations

from typing import Any

from gateway.streaming import SSEDecoder, SSEEvent
from tests.support.anthropic_wire import event

__all__ = [
    "CUT_AFTER_STOP",
    "CUT_MID_ANSWER",
    "ERROR",
    "MESSAGE_STOP",
    "REDACTED",
    "TEXT",
    "THINKING",
    "TOOLS",
    "block_start",
    "block_stop",
    "delta",
    "event",
    "json_delta",
    "message_delta",
    "message_start",
    "sse_events",
    "stop_stream",
    "text",
]


def sse_events(stream: bytes) -> list[SSEEvent]:
    """The stream framed as the relay frames it."""
    decoder = SSEDecoder()
    return decoder.feed(stream) + decoder.finish()


def message_start(
    usage: dict[str, Any],
    *,
    id: str = "msg_01XFDUDYJgAACzvnptvVoYEL",
    model: str = "claude-sonnet-4-5-20250929",
) -> bytes:
    message: dict[str, Any] = {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return event({"type": "message_start", "message": message})


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return event({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, fields: dict[str, Any]) -> bytes:
    return event({"type": "content_block_delta", "index": index, "delta": fields})


def text(index: int, words: str) -> bytes:
    return delta(index, {"type": "text_delta", "text": words})


def json_delta(index: int, fragment: str) -> bytes:
    return delta(index, {"type": "input_json_delta", "partial_json": fragment})


def block_stop(index: int) -> bytes:
    return event({"type": "content_block_stop", "index": index})


def message_delta(reason: str | None, usage: dict[str, Any], sequence: str | None = None) -> bytes:
    stop = {"stop_reason": reason, "stop_sequence": sequence}
    return event({"type": "message_delta", "delta": stop, "usage": usage})


PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = event({"type": "message_stop"})

_CACHED_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 1000,
    "output_tokens": 1,
}

#: Text, with prompt caching (reads and writes), a ping, `end_turn`.
TEXT = b"".join(
    [
        message_start(_CACHED_USAGE),
        block_start(0, {"type": "text", "text": ""}),
        PING,
        text(0, "Hello"),
        text(0, ", world"),
        block_stop(0),
        message_delta("end_turn", {**_CACHED_USAGE, "output_tokens": 15}),
        MESSAGE_STOP,
    ]
)

_USAGE = {"input_tokens": 472, "output_tokens": 2}

#: Text then two tool calls (Anthropic's parallel tool use), `tool_use`.
TOOLS = b"".join(
    [
        message_start(_USAGE),
        block_start(0, {"type": "text", "text": ""}),
        text(0, "Checking both."),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}),
        json_delta(1, ""),
        json_delta(1, '{"location": "San Fra'),
        json_delta(1, 'ncisco, CA"}'),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}),
        json_delta(2, '{"tz": "PST"}'),
        block_stop(2),
        message_delta("tool_use", {**_USAGE, "output_tokens": 89}),
        MESSAGE_STOP,
    ]
)

#: Extended thinking (signed), then text; the old `message_delta` usage (output only).
THINKING = b"".join(
    [
        message_start({"input_tokens": 40, "output_tokens": 3}),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Let me think"}),
        delta(0, {"type": "thinking_delta", "thinking": " about 27 * 453."}),
        delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        text(1, "27 * 453 = 12231"),
        block_stop(1),
        message_delta("end_turn", {"output_tokens": 120}),
        MESSAGE_STOP,
    ]
)

#: A redacted thinking block (nothing another API can carry), then text.
REDACTED = b"".join(
    [
        message_start({"input_tokens": 40, "output_tokens": 3}),
        block_start(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        text(1, "Done."),
        block_stop(1),
        message_delta("end_turn", {"output_tokens": 9}),
        MESSAGE_STOP,
    ]
)


def _one_text_block(words: str, *ending: bytes) -> bytes:
    """`message_start` and a text block of one delta, then `ending`."""
    opening = [
        message_start({"input_tokens": 10, "output_tokens": 1}),
        block_start(0, {"type": "text", "text": ""}),
        text(0, words),
    ]
    return b"".join([*opening, *ending])


#: Cut after the stop reason, before `message_stop` (complete, as the dialect judges it).
CUT_AFTER_STOP = _one_text_block(
    "All of it", block_stop(0), message_delta("end_turn", {"output_tokens": 3})
)

#: Cut mid-answer: no stop reason.
CUT_MID_ANSWER = _one_text_block("Half of")

#: Anthropic's own error mid-stream (it sends no `message_stop` after one).
ERROR = _one_text_block(
    "Partial",
    event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
)


def stop_stream(reason: str, sequence: str | None = None) -> bytes:
    """A one-text-block stream that stops for `reason`."""
    ending = message_delta(reason, {"output_tokens": 2}, sequence)
    return _one_text_block("Some text", block_stop(0), ending, MESSAGE_STOP)
