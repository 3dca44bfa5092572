"""The two relayed APIs as the chaos mix sees them, and the error table of contract section 3-5.

Written from the contract, not from the gateway's code: what an upstream of each API sends (its
events, its terminal marker, its own error event and error bodies, frames a client must never
see), where a client sends its request, and - for each error code the mix can provoke - the
status it is before the response is committed, its category, and Anthropic's error type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support import anthropic_wire as claude
from tests.support import openai_wire as openai

__all__ = ["ANTHROPIC", "APIS", "ERRORS", "HEARTBEAT", "OPENAI", "Api", "ErrorWire"]

#: The gateway's keep-alive comment (contract section 2), the same in both APIs.
HEARTBEAT = b": ping\n\n"


@dataclass(frozen=True, slots=True)
class ErrorWire:
    status: int  # before the response is committed
    category: str  # contract section 3; the OpenAI shape's `type`
    anthropic_type: str  # Anthropic's `error.type`


ERRORS: dict[str, ErrorWire] = {
    "upstream_truncated": ErrorWire(502, "stream_interrupted", "api_error"),
    "upstream_protocol_error": ErrorWire(502, "stream_interrupted", "api_error"),
    "event_too_large": ErrorWire(502, "stream_interrupted", "api_error"),
    "connection_reset": ErrorWire(502, "network", "api_error"),
    "connect_failed": ErrorWire(502, "network", "api_error"),
    "first_byte_timeout": ErrorWire(504, "timeout", "timeout_error"),
    "idle_timeout": ErrorWire(504, "timeout", "timeout_error"),
    "deadline_exceeded": ErrorWire(504, "timeout", "timeout_error"),
    "upstream_rate_limited": ErrorWire(429, "rate_limit", "rate_limit_error"),
    "upstream_status_5xx": ErrorWire(502, "api_error", "api_error"),
    "upstream_auth_failed": ErrorWire(502, "api_error", "api_error"),
    "upstream_bad_request": ErrorWire(400, "api_error", "invalid_request_error"),
    "upstream_error_event": ErrorWire(502, "api_error", "api_error"),
    "invalid_request": ErrorWire(400, "api_error", "invalid_request_error"),
    "model_not_found": ErrorWire(404, "api_error", "not_found_error"),
    "request_too_large": ErrorWire(413, "api_error", "request_too_large"),
    "client_disconnected": ErrorWire(499, "context_canceled", "api_error"),
}


@dataclass(frozen=True, slots=True)
class Api:
    """One API: where clients send it, how its upstream frames answers and errors."""

    name: str  # the gateway's `endpoint` label
    path: str
    route: str  # the gateway's route (a glob) to the fake upstream
    dead_route: str  # a route to an upstream nobody listens on
    marker: bytes  # the upstream's terminal event
    trailer: bytes  # what the gateway appends to a stream complete without its marker
    error_event: bytes  # the upstream's own mid-stream error
    noise: tuple[bytes, ...]  # complete blocks the gateway must not relay

    def events(self, texts: list[str], *, finish: bool) -> list[bytes]:
        """A stream's events up to (not including) the marker; with `finish`, the last one
        says the answer is complete."""
        if self.name == "messages":
            stop_reason = "end_turn" if finish else None
            return claude.anthropic_events(texts, stop_reason=stop_reason, stop=False)
        return openai.openai_chunks(texts, finish_reason="stop" if finish else None)

    def big_event(self, text: str) -> bytes:
        """One text event carrying `text`."""
        if self.name == "messages":
            return claude.text_delta(text)
        return openai.chunk_event({"content": text}, None, "fake-model", "chatcmpl-fake")

    def answer(self, text: str) -> bytes:
        """A complete non-streaming answer."""
        if self.name == "messages":
            return claude.anthropic_message(text)
        return openai.completion(text, "fake-model")

    def error_body(self, status: int) -> dict[str, Any]:
        """The body an upstream of this API sends with an error status."""
        if self.name == "messages":
            return claude.anthropic_error("api_error", f"fake upstream error {status}")
        return openai.openai_error(f"fake upstream error {status}", type="fake_error")

    def request(self, model: str, *, stream: bool) -> bytes:
        """A client's request body."""
        body: dict[str, Any] = {
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if self.name == "messages":
            body["max_tokens"] = 64
        return json.dumps(body).encode()


OPENAI = Api(
    name="chat_completions",
    path="/v1/chat/completions",
    route="gpt-chaos-*",
    dead_route="gpt-dead-*",
    marker=openai.DONE,
    trailer=openai.DONE,
    error_event=b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n',
    noise=(
        b": keep-alive\n\n",
        b"data: {not json\n\n",
        b"x-junk: \x7f\xfe\xff garbage \x00\n\n",
        b"\n",
    ),
)
ANTHROPIC = Api(
    name="messages",
    path="/v1/messages",
    route="claude-chaos-*",
    dead_route="claude-dead-*",
    marker=claude.MESSAGE_STOP,
    trailer=claude.MESSAGE_STOP,
    error_event=claude.error_event("overloaded_error", "Overloaded"),
    noise=(
        b": keep-alive\n\n",
        b"event: content_block_delta\ndata: {not json\n\n",
        b"event: ping\n\n",
        b"x-junk: \x7f\xfe\xff garbage \x00\n\n",
        b"\n",
    ),
)
APIS = (OPENAI, ANTHROPIC)
