"""Wire dialects: what a stream's events mean, and how errors are written, per API family.

A `Dialect` is the only place that knows an API family's conventions, so the relay never
branches on a provider's name. It says:

- per event, through a per-stream `StreamTracker`: forward it, skip it (it cannot be what the
  dialect promises, e.g. OpenAI `data:` that is not JSON), or end the stream after it (the
  terminal marker, or the upstream's own error payload); and whether the answer is complete
  (a final chunk with `finish_reason` / a `message_delta` with `stop_reason`);
- which endpoint clients send the API's requests to (`endpoint`, named in messages);
- what to append when an upstream ended cleanly after a complete answer but forgot its marker;
- how an error is written after the response is committed (`error_event`, contract section 5)
  and before (`error_body`, contract section 4).

Everything the gateway itself writes is built with `json.dumps` (ASCII-only, one line), so no
message, model name or upstream text can inject a line break into a frame.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any, ClassVar

from gateway.errors import ErrorCategory
from gateway.streaming.sse import SSEEvent
from gateway.streaming.stream_error import StreamError

_fast_loads: Callable[[str], Any]
try:  # optional: the core stays pure stdlib (see `loads_object`)
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency of the gateway
    _fast_loads = json.loads

__all__ = [
    "AnthropicDialect",
    "Dialect",
    "OpenAIDialect",
    "StreamTracker",
    "Verdict",
    "loads_object",
]

HEARTBEAT = b": ping\n\n"


class Verdict(enum.IntEnum):
    """What the relay does with one upstream event."""

    FORWARD = 0
    SKIP = 1  # never reaches the client; counted and logged once per stream
    END = 2  # forward it, then end the stream cleanly (terminal marker)
    END_WITH_ERROR = 3  # forward it, then end: the upstream reported its own error


class StreamTracker:
    """Per-stream state a dialect keeps while events pass; one instance per stream."""

    __slots__ = ("complete", "skipped", "usage")

    def __init__(self) -> None:
        self.complete = False  # a chunk said the answer is complete
        self.skipped = 0  # events skipped as malformed
        self.usage: dict[str, Any] | None = None  # the latest usage object the upstream sent

    def inspect(self, event: SSEEvent) -> Verdict:
        raise NotImplementedError


class Dialect:
    """Conventions of one API family. Stateless; safe to share across streams."""

    name: ClassVar[str]
    #: Where clients send this API's requests (the gateway serves the same path).
    endpoint: ClassVar[str]
    #: Appended when the upstream ended cleanly after a complete answer without its marker.
    completion_trailer: ClassVar[bytes]
    heartbeat: ClassVar[bytes] = HEARTBEAT

    def tracker(self) -> StreamTracker:
        raise NotImplementedError

    def error_event(self, error: StreamError) -> bytes:
        """The one SSE frame that ends a committed stream with `error`."""
        raise NotImplementedError

    def error_body(self, error: StreamError) -> bytes:
        """The JSON body of an error answered with a real HTTP status."""
        raise NotImplementedError


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def loads_object(data: str) -> dict[str, Any] | None:
    """An event's `data` parsed as a JSON object, or None if it is not one (the one parser
    of event JSON: trackers and the continuation splice use it).

    orjson when it is installed (several times faster, and this runs once per event); json
    when it is not, and as the judge when orjson refuses: orjson is stricter than the JSON
    the upstreams may send (integers beyond 64 bits, NaN), and a valid event must never be
    skipped.
    """
    try:
        value = _fast_loads(data)
    except ValueError:
        try:
            value = json.loads(data)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


# --- OpenAI Chat Completions -------------------------------------------------------------------


class _OpenAITracker(StreamTracker):
    __slots__ = ()

    def inspect(self, event: SSEEvent) -> Verdict:
        data = event.data
        if data is None:
            return Verdict.SKIP  # comments and field-only frames: OpenAI SDKs choke on them
        if data.startswith("[DONE]"):
            return Verdict.END
        chunk = loads_object(data)
        if chunk is None:
            self.skipped += 1
            return Verdict.SKIP
        if chunk.get("error"):
            return Verdict.END_WITH_ERROR
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self.complete = True
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        return Verdict.FORWARD


class OpenAIDialect(Dialect):
    name = "openai"
    endpoint = "POST /v1/chat/completions"
    completion_trailer = b"data: [DONE]\n\n"

    def tracker(self) -> StreamTracker:
        return _OpenAITracker()

    def _error_object(self, error: StreamError) -> dict[str, Any]:
        return {
            "message": error.message,
            "type": error.type.value,
            "code": error.provider_code or error.code,
            "param": error.param,
        }

    def error_event(self, error: StreamError) -> bytes:
        # The seed's {"type", "message"} and the OpenAI SDK's {"error": {...}} in one object,
        # so both the seed's consumers and `openai` (which raises APIError) understand it.
        data: dict[str, Any] = {
            "type": error.type.value,
            "message": error.message,
            "error": self._error_object(error),
        }
        return b"event: error\ndata: " + _dumps(data) + b"\n\n"

    def error_body(self, error: StreamError) -> bytes:
        return _dumps({"error": self._error_object(error)})


# --- Anthropic Messages ------------------------------------------------------------------------

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
    "upstream_bad_request": "invalid_request_error",
    "model_not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "unauthorized": "authentication_error",
    # aiohttp's own rejections (gateway.server.middlewares)
    "not_found": "not_found_error",
    "method_not_allowed": "invalid_request_error",
}


class _AnthropicTracker(StreamTracker):
    """Anthropic Messages: `event: message_stop` ends the stream, `event: error` is the
    upstream's own terminal error, `ping` passes through as it is. The event's name is its
    `event:` field, or the `type` of its JSON when an upstream leaves that field out."""

    __slots__ = ()

    def inspect(self, event: SSEEvent) -> Verdict:
        data = event.data
        if data is None:
            return Verdict.SKIP
        kind = event.event
        payload = loads_object(data)
        if kind is None and payload is not None:
            kind = payload.get("type")
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


class AnthropicDialect(Dialect):
    name = "anthropic"
    endpoint = "POST /v1/messages"
    completion_trailer = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

    def tracker(self) -> StreamTracker:
        return _AnthropicTracker()

    @staticmethod
    def error_type(error: StreamError) -> str:
        """Anthropic's `error.type` for a gateway error."""
        return _ANTHROPIC_CODE_TYPES.get(error.code) or _ANTHROPIC_TYPES[error.type]

    def _payload(self, error: StreamError) -> bytes:
        return _dumps(
            {"type": "error", "error": {"type": self.error_type(error), "message": error.message}}
        )

    def error_event(self, error: StreamError) -> bytes:
        return b"event: error\ndata: " + self._payload(error) + b"\n\n"

    def error_body(self, error: StreamError) -> bytes:
        return self._payload(error)
