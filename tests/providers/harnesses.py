"""Contract harnesses: every provider kind, in every API it speaks, behind one interface.

A `Harness` is a provider plus the model names that make it answer normally, answer an error
status, stall or fail mid-stream (the fake upstream's scripts for the HTTP kinds, the built-in
model names for `mock`), and the `Wire` of the API it is driven in: how a request is written,
what the fake upstream sends back in that API, and what a complete answer looks like. Wires are
keyed by API (`Api.name`: `chat_completions`, `responses`, `messages`), not by dialect family,
so that two APIs of one family (OpenAI's Chat Completions and Responses) are each covered. The
contract tests only use these interfaces and never branch on a kind or an API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from gateway.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_RESPONSES, Api
from gateway.providers import PROVIDER_KINDS, Provider
from gateway.settings import LimitSettings, MockSettings, UpstreamSettings
from gateway.streaming import SSEDecoder, SSEEvent
from tests.conftest import UPSTREAM_KEY
from tests.support import anthropic_wire as claude
from tests.support import fake_upstream as fake
from tests.support import openai_wire
from tests.support import responses_wire as responses
from tests.support.fake_upstream import FakeUpstream, UpstreamCall

__all__ = ["HARNESSES", "MESSAGES", "WIRES", "Harness", "Wire", "decode"]

MESSAGES = [{"role": "user", "content": "hi there"}]
#: What every bad-request answer of every harness says (in its own words around it).
CONTEXT_LENGTH = "maximum context length"

#: behaviour -> model name. Behaviours: "stream", "complete", "rate_limited", "server_error",
#: "auth_failed", "bad_request", "stall_before_headers", "stall_mid_stream", "reset_mid_stream".
Models = dict[str, str]


def decode(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(body)
    events += decoder.finish()
    assert not decoder.has_partial_event
    return [event for event in events if event.data is not None]


# --- wires: one per API ------------------------------------------------------------------------


class Wire(Protocol):
    api: ClassVar[Api]
    path: ClassVar[str]  # relative to the upstream's base URL
    #: Whether a bad request keeps the upstream's code and param (OpenAI's error shape has them).
    reports_codes: ClassVar[bool]
    #: The request field holding the model's input: the `param` of a context-length error.
    input_field: ClassVar[str]

    def body(self, model: str, stream: bool) -> dict[str, Any]: ...

    def upstream_events(self) -> list[bytes]:
        """A whole stream as an upstream of this API sends it (its terminal event included)."""
        ...

    def upstream_completion(self) -> bytes:
        """A whole non-streaming answer as an upstream of this API sends it."""
        ...

    def stream_text(self, body: bytes) -> str:
        """Check that `body` is a complete stream of this API; return its text."""
        ...

    def completion_text(self, body: bytes) -> str:
        """Check that `body` is a complete JSON answer of this API; return its text."""
        ...


class OpenAIWire:
    api = OPENAI_CHAT
    path = "/chat/completions"
    reports_codes = True
    input_field = "messages"

    def body(self, model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "messages": MESSAGES, "stream": stream}

    def upstream_events(self) -> list[bytes]:
        return [*openai_wire.openai_chunks(["Hel", "lo", "!"]), openai_wire.DONE]

    def upstream_completion(self) -> bytes:
        return openai_wire.completion("Hello!", "fake-model")

    def stream_text(self, body: bytes) -> str:
        assert body.endswith(openai_wire.DONE)
        *answer, done = decode(body)
        assert done.data == "[DONE]"
        assert answer
        payloads = [json.loads(event.data or "") for event in answer]
        assert {payload["object"] for payload in payloads} == {"chat.completion.chunk"}
        assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
        assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
        return "".join(payload["choices"][0]["delta"].get("content", "") for payload in payloads)

    def completion_text(self, body: bytes) -> str:
        completion = json.loads(body)
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["role"] == "assistant"
        assert completion["choices"][0]["finish_reason"] == "stop"
        text: str = completion["choices"][0]["message"]["content"]
        return text


class AnthropicWire:
    api = ANTHROPIC_MESSAGES
    path = "/v1/messages"
    reports_codes = False
    input_field = "messages"

    def body(self, model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "max_tokens": 64, "messages": MESSAGES, "stream": stream}

    def upstream_events(self) -> list[bytes]:
        return claude.anthropic_events(["Hel", "lo", "!"])

    def upstream_completion(self) -> bytes:
        return claude.anthropic_message()

    def stream_text(self, body: bytes) -> str:
        assert body.endswith(claude.MESSAGE_STOP)
        events = decode(body)
        payloads = [json.loads(event.data or "") for event in events]
        assert [event.event for event in events] == [payload["type"] for payload in payloads]
        kinds = [payload["type"] for payload in payloads]
        assert kinds[0] == "message_start"
        assert kinds[-2:] == ["message_delta", "message_stop"]
        assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
        assert payloads[0]["message"]["role"] == "assistant"
        deltas = [payload for payload in payloads if payload["type"] == "content_block_delta"]
        return "".join(payload["delta"]["text"] for payload in deltas)

    def completion_text(self, body: bytes) -> str:
        message = json.loads(body)
        assert (message["type"], message["role"]) == ("message", "assistant")
        assert message["stop_reason"] == "end_turn"
        text: str = message["content"][0]["text"]
        return text


class ResponsesWire:
    api = OPENAI_RESPONSES
    path = "/responses"
    reports_codes = True
    input_field = "input"

    def body(self, model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "input": MESSAGES, "stream": stream}

    def upstream_events(self) -> list[bytes]:
        return responses.responses_events(["Hel", "lo", "!"])

    def upstream_completion(self) -> bytes:
        return responses.responses_completion()

    def stream_text(self, body: bytes) -> str:
        events = decode(body)
        payloads = [json.loads(event.data or "") for event in events]
        assert [event.event for event in events] == [payload["type"] for payload in payloads]
        numbers = [payload["sequence_number"] for payload in payloads]
        assert numbers == sorted(set(numbers))  # strictly increasing
        kinds = [payload["type"] for payload in payloads]
        assert kinds[0] == "response.created"
        assert kinds.count("response.completed") == 1
        assert kinds[-1] == "response.completed"  # the terminal event ends the body
        final = payloads[-1]["response"]
        assert final["status"] == "completed"
        assert final["usage"]["output_tokens"] > 0
        deltas = [
            payload for payload in payloads if payload["type"] == "response.output_text.delta"
        ]
        text = "".join(payload["delta"] for payload in deltas)
        assert final["output"][0]["content"][0]["text"] == text
        return text

    def completion_text(self, body: bytes) -> str:
        response = json.loads(body)
        assert (response["object"], response["status"]) == ("response", "completed")
        assert response["usage"]["output_tokens"] > 0
        message = response["output"][0]
        assert (message["type"], message["role"]) == ("message", "assistant")
        text: str = message["content"][0]["text"]
        return text


class CompletionsWire:
    api = OPENAI_COMPLETIONS
    path = "/completions"
    reports_codes = True
    input_field = "prompt"

    def body(self, model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "prompt": "hi", "stream": stream}

    @staticmethod
    def _chunk(text: str, finish_reason: str | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        payload = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "fake-model",
                   "choices": [choice]}  # fmt: skip
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def upstream_events(self) -> list[bytes]:
        pieces = [self._chunk(text) for text in ("Hel", "lo", "!")]
        return [*pieces, self._chunk("", "stop"), openai_wire.DONE]

    def upstream_completion(self) -> bytes:
        choice = {"text": "Hello!", "index": 0, "logprobs": None, "finish_reason": "stop"}
        return json.dumps({"id": "cmpl-1", "object": "text_completion", "created": 1,
                           "model": "fake-model", "choices": [choice]}).encode()  # fmt: skip

    def stream_text(self, body: bytes) -> str:
        assert body.endswith(openai_wire.DONE)
        *answer, done = decode(body)
        assert done.data == "[DONE]"
        payloads = [json.loads(event.data or "") for event in answer]
        assert {payload["object"] for payload in payloads} == {"text_completion"}
        assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
        return "".join(payload["choices"][0]["text"] for payload in payloads)

    def completion_text(self, body: bytes) -> str:
        completion = json.loads(body)
        assert completion["object"] == "text_completion"
        assert completion["choices"][0]["finish_reason"] == "stop"
        text: str = completion["choices"][0]["text"]
        return text


#: Per streaming API (`Api.name`): its wire. The APIs that never stream (embeddings, token
#: counts) are held by tests/e2e/test_api_surface.py.
WIRES: dict[str, Wire] = {
    wire.api.name: wire
    for wire in (OpenAIWire(), ResponsesWire(), CompletionsWire(), AnthropicWire())
}


# --- harnesses: one per provider kind ----------------------------------------------------------


class Harness(Protocol):
    """A provider, the model names that make it behave each way, and the wire it is driven in."""

    provider: Provider
    models: ClassVar[Models]
    wire: Wire

    async def request_arrived(self) -> None:
        """Return once the upstream holds the last request (it has stopped the client's I/O)."""

    async def connection_closed(self) -> None:
        """Return once the upstream saw the connection of the last request closed by the peer."""


FAKE_MODELS: Models = {
    "stream": "ok-stream",
    "complete": "ok-json",
    "rate_limited": "rate-limited",
    "server_error": "server-error",
    "auth_failed": "auth-failed",
    "bad_request": "bad-request",
    "stall_before_headers": "stall-before-headers",
    "stall_mid_stream": "stall-mid-stream",
    "reset_mid_stream": "reset-mid-stream",
}


class _FakeHarness:
    """An HTTP provider in front of the fake upstream, which answers `scripts()` per behaviour."""

    models: ClassVar[Models] = FAKE_MODELS
    kind: ClassVar[str]

    def __init__(self, upstream: FakeUpstream, api: str) -> None:
        self.upstream = upstream
        self.wire = WIRES[api]
        self._last: UpstreamCall | None = None
        scripts = self.scripts()
        for behaviour, model in self.models.items():
            upstream.script(model, scripts[behaviour])
        settings = UpstreamSettings(
            kind=self.kind, base_url=self.base_url(upstream), api_key=UPSTREAM_KEY
        )
        self.provider = PROVIDER_KINDS[self.kind]("fake", settings, LimitSettings())

    def base_url(self, upstream: FakeUpstream) -> str:
        raise NotImplementedError

    def scripts(self) -> dict[str, fake.Behaviour]:
        raise NotImplementedError

    async def request_arrived(self) -> None:
        self._last = await self.upstream.next_call()

    async def connection_closed(self) -> None:
        call = self._last if self._last is not None else self.upstream.requests[-1]
        await call.wait_closed_by_peer()
        await call.wait_finished()


class OpenAIHarness(_FakeHarness):
    """The `openai` provider in front of the fake upstream."""

    kind = "openai"

    def base_url(self, upstream: FakeUpstream) -> str:
        return upstream.base_url

    def scripts(self) -> dict[str, fake.Behaviour]:
        context_length = fake.openai_error(
            f"This model's {CONTEXT_LENGTH} is 16 tokens.",
            param=self.wire.input_field,
            code="context_length_exceeded",
        )
        events = self.wire.upstream_events()
        return {
            "stream": fake.sse_stream(events, done=False),
            "complete": fake.status(200, body=self.wire.upstream_completion()),
            "rate_limited": fake.status(
                429,
                body=fake.openai_error("Rate limit reached", type="requests"),
                headers={"Retry-After": "5"},
            ),
            "server_error": fake.status(500),
            "auth_failed": fake.status(
                401, body=fake.openai_error("Incorrect API key provided", code="invalid_api_key")
            ),
            "bad_request": fake.status(400, body=context_length),
            "stall_before_headers": fake.stall_before_headers(),
            "stall_mid_stream": fake.stall_after(1, events),
            "reset_mid_stream": fake.cut_rst(1, chunked=True, chunks=events),
        }


class AzureHarness(OpenAIHarness):
    """The `azure` provider (the v1 API: `{endpoint}/openai/v1/...`) in front of the fake
    upstream, which answers in OpenAI's wire as Azure does."""

    kind = "azure"

    def base_url(self, upstream: FakeUpstream) -> str:
        return upstream.endpoint  # the resource endpoint: the provider adds /openai/v1


class AnthropicHarness(_FakeHarness):
    """The `anthropic` provider in front of the fake upstream, which speaks Anthropic's wire."""

    kind = "anthropic"

    def base_url(self, upstream: FakeUpstream) -> str:
        return f"http://127.0.0.1:{upstream.port}"  # the API root: the provider adds /v1/messages

    def scripts(self) -> dict[str, fake.Behaviour]:
        events = self.wire.upstream_events()
        return {
            "stream": fake.sse_stream(events, done=False),
            "complete": fake.status(200, body=self.wire.upstream_completion()),
            "rate_limited": fake.status(
                429,
                body=claude.anthropic_error("rate_limit_error", "Number of requests exceeded"),
                headers={"retry-after": "5"},
            ),
            "server_error": fake.status(
                500, body=claude.anthropic_error("api_error", "Internal server error")
            ),
            "auth_failed": fake.status(
                401, body=claude.anthropic_error("authentication_error", "invalid x-api-key")
            ),
            "bad_request": fake.status(
                400,
                body=claude.anthropic_error(
                    "invalid_request_error", f"prompt is too long: {CONTEXT_LENGTH} is 16 tokens"
                ),
            ),
            "stall_before_headers": fake.stall_before_headers(),
            "stall_mid_stream": fake.stall_after(1, events),
            "reset_mid_stream": fake.cut_rst(1, chunked=True, chunks=events),
        }


class MockHarness:
    """The built-in `mock` provider, unpaced; it has no connection to close."""

    models: ClassVar[Models] = {
        "stream": "mock",
        "complete": "mock",
        "rate_limited": "mock-429",
        "server_error": "mock-500",
        "auth_failed": "mock-401",
        "bad_request": "mock-400",
        "stall_before_headers": "mock-silent",
        "stall_mid_stream": "mock-stall",
        "reset_mid_stream": "mock-reset",
    }

    def __init__(self, upstream: FakeUpstream, api: str) -> None:
        self.wire = WIRES[api]
        settings = UpstreamSettings(kind="mock", mock=MockSettings(chunk_delay=0))
        self.provider = PROVIDER_KINDS["mock"]("mock", settings, LimitSettings())

    async def request_arrived(self) -> None:
        return None

    async def connection_closed(self) -> None:
        return None


#: Per provider kind: its harness, and the APIs the kind speaks (`Api.name`; each is tested).
HARNESSES: dict[str, tuple[Callable[[FakeUpstream, str], Harness], tuple[str, ...]]] = {
    "openai": (OpenAIHarness, ("chat_completions", "responses", "completions")),
    "azure": (AzureHarness, ("chat_completions", "responses", "completions")),
    "anthropic": (AnthropicHarness, ("messages",)),
    "mock": (MockHarness, ("chat_completions", "messages", "responses", "completions")),
}
