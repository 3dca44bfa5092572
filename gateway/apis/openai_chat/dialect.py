"""The OpenAI Chat Completions dialect: `chat.completion.chunk` events ended by `data: [DONE]`,
errors in OpenAI's `{"error": {"message", "type", "code", "param"}}` shape.

The tracker judges each event: `[DONE]` ends the stream; `data:` that is not a JSON object is
skipped (OpenAI SDKs raise on it); a chunk with an `error` is the upstream's own error and ends
the stream; a choice's `finish_reason` says the answer is complete; the latest `usage` is kept.
When the gateway asked the upstream for the usage its client did not ask for (`unasked_usage`,
see `gateway.apis.openai_chat.stream_usage`), the chunk that carries only the usage (no
choices) is kept and dropped: the client never asked for it.
"""

from __future__ import annotations

from typing import Any

from gateway.streaming import (
    Dialect,
    SSEEvent,
    StreamError,
    StreamTracker,
    Verdict,
    compact_json,
    loads_object,
)

__all__ = ["OpenAIDialect"]


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
            if self.unasked_usage and not choices:
                return Verdict.DROP
        return Verdict.FORWARD


class OpenAIDialect(Dialect):
    name = "openai"
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
        return compact_json({"error": self._error_object(error)})
