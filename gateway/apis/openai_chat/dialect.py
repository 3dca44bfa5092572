"""The OpenAI Chat Completions dialect: `chat.completion.chunk` events ended by `data: [DONE]`,
errors in OpenAI's `{"error": {"message", "type", "code", "param"}}` shape.

The tracker judges each event: `[DONE]` ends the stream; `data:` that is not a JSON object is
skipped (OpenAI SDKs raise on it); a chunk with an `error` is the upstream's own error and ends
the stream; a choice's `finish_reason` says the answer is complete; the latest `usage` is kept.
When the gateway asked the upstream for the usage its client did not ask for (`unasked_usage`,
see `gateway.apis.openai_chat.stream_usage`), the chunk that carries only the usage (no
choices) is kept and dropped: the client never asked for it.

An answer begins (`opening`) at the first chunk with a choice that carries something: a delta
with more than its `role` (text, a tool call, reasoning, a refusal), a legacy completion's
`text`, or a `finish_reason`. Role-only chunks, empty deltas and chunks with no choice (Azure's
prompt filter results) are its preamble; `[DONE]` ends it; a chunk with an `error` is the
upstream's own failure.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.errors import ErrorCategory
from gateway.streaming import (
    Dialect,
    Opening,
    SSEEvent,
    StreamError,
    StreamTracker,
    Verdict,
    compact_json,
    loads_object,
    shape_reader,
)

__all__ = ["OpenAIDialect", "openai_error_type"]

#: OpenAI's `error.type` for each category (contract section 4), where no code says better.
_OPENAI_TYPES: dict[ErrorCategory, str] = {
    ErrorCategory.TIMEOUT: "timeout_error",
    ErrorCategory.RATE_LIMIT: "rate_limit_error",
    ErrorCategory.API_ERROR: "server_error",
    ErrorCategory.NETWORK: "server_error",
    ErrorCategory.STREAM_INTERRUPTED: "server_error",
    ErrorCategory.CONTEXT_CANCELED: "server_error",
}

#: Codes whose OpenAI error type is more specific than their category's.
_OPENAI_CODE_TYPES: dict[str, str] = {
    "invalid_request": "invalid_request_error",
    "request_head_too_large": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "request_timeout": "invalid_request_error",
    "unsupported_transfer_encoding": "invalid_request_error",
    "unsupported_media_type": "invalid_request_error",
    "upstream_bad_request": "invalid_request_error",
    "method_not_allowed": "invalid_request_error",
    "unauthorized": "authentication_error",
    "model_not_found": "not_found_error",
    "unsupported_endpoint": "not_found_error",
    "not_found": "invalid_request_error",  # OpenAI's own type for a missing stored response
    "previous_response_not_found": "invalid_request_error",
    "unsupported_parameter": "invalid_request_error",
    "gateway_overloaded": "server_error",
    "server_shutdown": "server_error",
}


def openai_error_type(error: StreamError) -> str:
    """OpenAI's `error.type` for a gateway error (its vocabulary, not the gateway's category)."""
    return _OPENAI_CODE_TYPES.get(error.code) or _OPENAI_TYPES[error.type]


class _Choice(msgspec.Struct):
    finish_reason: Any = None


class _Chunk(msgspec.Struct):
    """What the tracker reads of a chunk (`shape_reader`): the rest is checked, not built."""

    error: Any = None
    choices: list[_Choice] | None = None
    usage: dict[str, Any] | None = None


_read_chunk = shape_reader(_Chunk)


class _OpenAITracker(StreamTracker):
    __slots__ = ()

    def inspect(self, event: SSEEvent) -> Verdict:
        data = event.data
        if data is None:
            return Verdict.SKIP  # comments and field-only frames: OpenAI SDKs choke on them
        if data.startswith("[DONE]"):
            return Verdict.END
        chunk = _read_chunk(data)
        if chunk is not None:
            error, choices, usage = chunk.error, chunk.choices, chunk.usage
            finished = False
            if choices is not None:
                for choice in choices:
                    if choice.finish_reason:
                        finished = True
        else:  # not of the usual shape: the judge reads it whole
            payload = loads_object(data)
            if payload is None:
                self.skipped += 1
                return Verdict.SKIP
            error, choices, usage = payload.get("error"), payload.get("choices"), None
            finished = isinstance(choices, list) and any(
                isinstance(choice, dict) and choice.get("finish_reason") for choice in choices
            )
            if isinstance(payload.get("usage"), dict):
                usage = payload["usage"]
        if error:
            return Verdict.END_WITH_ERROR
        if finished:
            self.complete = True
        if usage is not None:
            self.usage = usage
            if self.unasked_usage and not choices:
                return Verdict.DROP
        return Verdict.FORWARD


def _carries_answer(choice: object) -> bool:
    """Whether a chunk's choice carries any of the answer (or its end)."""
    if not isinstance(choice, dict):
        return False
    if choice.get("finish_reason") or choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and any(value for key, value in delta.items() if key != "role")


class OpenAIDialect(Dialect):
    name = "openai"
    completion_trailer = b"data: [DONE]\n\n"

    def tracker(self) -> StreamTracker:
        return _OpenAITracker()

    def opening(self, event: SSEEvent) -> Opening:
        data = event.data
        if data is None:
            return Opening.PREAMBLE
        if data.startswith("[DONE]"):
            return Opening.CONTENT
        chunk = loads_object(data)
        if chunk is None:
            return Opening.PREAMBLE  # skipped by the tracker: carries nothing the client sees
        if chunk.get("error"):
            return Opening.ERROR
        choices = chunk.get("choices")
        if isinstance(choices, list) and any(_carries_answer(choice) for choice in choices):
            return Opening.CONTENT
        return Opening.PREAMBLE

    def _error_object(self, error: StreamError) -> dict[str, Any]:
        return {
            "message": error.message,
            "type": error.type.value,
            "code": error.provider_code or error.code,
            "param": error.param,
        }

    def error_event(self, error: StreamError, tracker: StreamTracker | None = None) -> bytes:
        # The seed's {"type", "message"} and the OpenAI SDK's {"error": {...}} in one object,
        # so both the seed's consumers and `openai` (which raises APIError) understand it.
        data: dict[str, Any] = {
            "type": error.type.value,
            "message": error.message,
            "error": self._error_object(error),
        }
        return b"event: error\ndata: " + compact_json(data) + b"\n\n"

    def error_body(self, error: StreamError) -> bytes:
        """OpenAI's error body (contract section 4): its own `type` vocabulary, so SDKs and
        tools that switch on it work, and the gateway's category beside it."""
        body = {
            "message": error.message,
            "type": openai_error_type(error),
            "code": error.provider_code or error.code,
            "param": error.param,
            "category": error.type.value,
        }
        return compact_json({"error": body})
