"""The Anthropic Messages dialect: named events (`message_start` ... `message_stop`), errors in
Anthropic's `{"type": "error", "error": {"type", "message"}}` shape with its error types.

Anthropic's `input_tokens` leaves out the prompt tokens read from or written to its cache
(`cache_read_input_tokens`, `cache_creation_input_tokens`): the gateway's `input` adds them,
so that it counts every prompt token as OpenAI's `prompt_tokens` does; `cached` is the reads.

An answer begins (`opening`) at its first event that carries something: a content block that
starts with content (a tool call), a non-empty delta, `message_delta`, `message_stop`.
`message_start`, `ping` and the start, empty deltas and end of a block still empty (the usual
empty text block) are its preamble; `error` is the upstream's own failure.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import ErrorCategory
from gateway.streaming import (
    Dialect,
    Opening,
    SSEEvent,
    StreamError,
    StreamTracker,
    TokenCounts,
    Verdict,
    compact_json,
    is_count,
    loads_object,
)

__all__ = ["AnthropicDialect"]

_ANTHROPIC_TYPES: dict[ErrorCategory, str] = {
    ErrorCategory.TIMEOUT: "timeout_error",
    ErrorCategory.RATE_LIMIT: "rate_limit_error",
    ErrorCategory.API_ERROR: "api_error",
    ErrorCategory.NETWORK: "api_error",
    ErrorCategory.STREAM_INTERRUPTED: "api_error",
    ErrorCategory.CONTEXT_CANCELED: "api_error",
}

#: Codes whose Anthropic error type is more specific than their category's.
_ANTHROPIC_CODE_TYPES: dict[str, str] = {
    "gateway_overloaded": "overloaded_error",
    "server_shutdown": "overloaded_error",
    "invalid_request": "invalid_request_error",
    "request_head_too_large": "invalid_request_error",
    "unsupported_transfer_encoding": "invalid_request_error",
    "unsupported_media_type": "invalid_request_error",
    "unsupported_endpoint": "not_found_error",
    "upstream_bad_request": "invalid_request_error",
    "unsupported_parameter": "invalid_request_error",  # not translatable to the target's API
    "model_not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "unauthorized": "authentication_error",
    # aiohttp's own rejections (gateway.server.middlewares)
    "method_not_allowed": "invalid_request_error",
}


def _kind_of(event: SSEEvent, data: str) -> tuple[object, dict[str, Any] | None]:
    """An event's name - its `event:` field, or its JSON's `type` - and its JSON object."""
    payload = loads_object(data)
    kind: object = event.event
    if kind is None and payload is not None:
        kind = payload.get("type")
    return kind, payload


class _AnthropicTracker(StreamTracker):
    """Anthropic Messages: `event: message_stop` ends the stream, `event: error` is the
    upstream's own terminal error, `ping` passes through as it is. The event's name is its
    `event:` field, or the `type` of its JSON when an upstream leaves that field out.

    A stream opens one message: a `message_start` after the stream's first is a continuation's
    (the splice passes it on, `gateway.apis.anthropic_messages.splice`), or an upstream
    repeating itself. It is dropped - the client's message is open already - after its usage
    is taken: the input tokens of the call that sent it are reported there only.
    """

    __slots__ = ("_opened",)

    def __init__(self) -> None:
        super().__init__()
        self._opened = False  # the client has had its `message_start`

    def inspect(self, event: SSEEvent) -> Verdict:
        data = event.data
        if data is None:
            return Verdict.SKIP
        kind, payload = _kind_of(event, data)
        if kind == "message_stop":
            return Verdict.END
        if kind == "error":
            return Verdict.END_WITH_ERROR
        if kind == "ping":
            return Verdict.FORWARD
        if payload is None:
            self.skipped += 1
            return Verdict.SKIP
        if kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self._add_usage(message.get("usage"))
            if self._opened:
                return Verdict.DROP
            self._opened = True
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.complete = True
            self._add_usage(payload.get("usage"))
        return Verdict.FORWARD

    def _add_usage(self, usage: object) -> None:
        """Merge a usage object: `message_delta`'s counts are cumulative and may leave the
        input counts of `message_start` out or null, which must not erase them."""
        if isinstance(usage, dict):
            known = {key: value for key, value in usage.items() if value is not None}
            self.usage = {**(self.usage or {}), **known}


#: Events that never carry any of the answer.
_PREAMBLE = frozenset({"message_start", "ping", "content_block_stop"})
#: Events that carry some of the answer unless every field but their `type` is empty.
_MAYBE_EMPTY = {"content_block_start": "content_block", "content_block_delta": "delta"}


def _is_empty(part: object) -> bool:
    """Whether a content block or delta carries nothing but its type (`""`, `null`, `{}`)."""
    return isinstance(part, dict) and not any(v for k, v in part.items() if k != "type")


class AnthropicDialect(Dialect):
    name = "anthropic"
    usage_paths = {
        "input": ("input_tokens",),
        "output": ("output_tokens",),
        "cached": ("cache_read_input_tokens",),
    }
    completion_trailer = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

    def tracker(self) -> StreamTracker:
        return _AnthropicTracker()

    def opening(self, event: SSEEvent) -> Opening:
        data = event.data
        if data is None:
            return Opening.PREAMBLE
        kind, payload = _kind_of(event, data)
        if kind == "error":
            return Opening.ERROR
        if kind in _PREAMBLE:
            return Opening.PREAMBLE
        if payload is None:
            # Skipped by the tracker (the client never sees it), unless it is the end.
            return Opening.CONTENT if kind == "message_stop" else Opening.PREAMBLE
        field = _MAYBE_EMPTY.get(kind) if isinstance(kind, str) else None
        if field is not None and _is_empty(payload.get(field)):
            return Opening.PREAMBLE
        return Opening.CONTENT

    def tokens(self, usage: object) -> TokenCounts:
        counts = super().tokens(usage)
        if "input" in counts and isinstance(usage, dict):
            written = usage.get("cache_creation_input_tokens")
            counts["input"] += counts.get("cached", 0) + (written if is_count(written) else 0)
        return counts

    @staticmethod
    def error_type(error: StreamError) -> str:
        """Anthropic's `error.type` for a gateway error."""
        return _ANTHROPIC_CODE_TYPES.get(error.code) or _ANTHROPIC_TYPES[error.type]

    def _payload(self, error: StreamError) -> bytes:
        return compact_json(
            {"type": "error", "error": {"type": self.error_type(error), "message": error.message}}
        )

    def error_event(self, error: StreamError, tracker: StreamTracker | None = None) -> bytes:
        return b"event: error\ndata: " + self._payload(error) + b"\n\n"

    def error_body(self, error: StreamError) -> bytes:
        return self._payload(error)
