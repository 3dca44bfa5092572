"""The built-in `mock` provider: a deterministic upstream with no network, in every dialect.

It is what `gateway` serves with no configuration, so that every behaviour can be seen with
`curl -N` and no API key, on `/v1/chat/completions` (OpenAI chunks, `[DONE]`) and on
`/v1/messages` (Anthropic events, `message_stop`) alike: the mock speaks every API of
`gateway.apis.APIS`, and the request's API picks the wire (`Api.mock_wire`). The model name
picks the behaviour (`MOCK_MODELS` in settings); the table says it in OpenAI's terms (in
Anthropic's: `message_delta` with `stop_reason` for `finish_reason`, `message_stop` for `[DONE]`):

| model          | what the mock does                                     | client sees        |
|----------------|--------------------------------------------------------|--------------------|
| `mock`         | streams the answer word by word at `chunk_delay`       | the answer, [DONE] |
| `mock-slow`    | the same at `slow_chunk_delay` per word                | the answer, slowly |
| `mock-no-done` | ends after the `finish_reason` chunk without `[DONE]`  | the answer, [DONE] |
| `mock-cut`     | ends after a few words, no `finish_reason`, no `[DONE]` | upstream_truncated |
| `mock-stall`   | stops sending after a few words, connection open       | idle_timeout       |
| `mock-silent`  | never sends a first event                              | first_byte_timeout |
| `mock-garbage` | sends one event whose data is not JSON, mid-answer     | it is skipped      |
| `mock-reset`   | the connection resets after a few words                | connection_reset   |
| `mock-huge`    | sends one event larger than `limits.max_event_bytes`   | event_too_large    |
| `mock-429`     | answers 429 with `Retry-After: 5`                      | 429 rate_limit     |
| `mock-500`     | answers 500                                            | 502 api_error      |
| `mock-401`     | rejects the gateway's credentials                      | 502 api_error      |
| `mock-400`     | rejects the request (`context_length_exceeded`)        | 400 api_error      |

The answer echoes (a capped part of) the last user message, so it is deterministic per request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from gateway.apis import APIS, MockWire
from gateway.errors import (
    ConnectionReset,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamServerError,
)
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse
from gateway.redaction import Redactor
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context

__all__ = ["MockProvider"]

_PREFIX_WORDS = 5  # words sent before the misbehaving models misbehave
_ECHO_CHARS = 200


class MockProvider(Provider):
    """Answers from memory; misbehaves on request (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: UpstreamSettings,
        limits: LimitSettings,
        redactor: Redactor | None = None,
    ) -> None:
        """The mock holds no secret: `redactor` is taken for the registry's one signature."""
        super().__init__(name, *APIS)
        self._delay = settings.mock.chunk_delay
        self._slow_delay = settings.mock.slow_chunk_delay
        self._max_event_bytes = limits.max_event_bytes

    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        if request.on_sent is not None:
            request.on_sent()
        model = request.model
        if model == "mock-429":
            raise UpstreamRateLimited("mock: rate limit reached", retry_after="5")
        if model == "mock-500":
            raise UpstreamServerError()
        if model == "mock-401":
            raise UpstreamAuthFailed()
        if model == "mock-400":
            raise UpstreamBadRequest(
                "mock: this model's maximum context length is 16 tokens",
                upstream_code="context_length_exceeded",
                param="messages",
            )
        body: dict[str, Any] = json.loads(request.body)
        wire = request.api.mock_wire(model, body)
        words = _answer(wire.said()).split(" ")
        delay = self._slow_delay if model == "mock-slow" else self._delay
        if request.stream:
            return _MockResponse(self._stream(wire, words, delay))
        return _MockResponse(self._complete(wire, words))

    async def _stream(self, wire: MockWire, words: list[str], delay: float) -> AsyncIterator[bytes]:
        model = wire.model
        if model == "mock-silent":
            await asyncio.Event().wait()
        for event in wire.opening():
            yield event
        for index, word in enumerate(words):
            if index == _PREFIX_WORDS:
                if model == "mock-cut":
                    return
                if model == "mock-stall":
                    await asyncio.Event().wait()
                if model == "mock-reset":
                    raise ConnectionReset()
                if model == "mock-garbage":
                    yield wire.garbage
                if model == "mock-huge":
                    yield wire.text("x" * (self._max_event_bytes + 1))
            await asyncio.sleep(delay)
            yield wire.text(word if index == 0 else " " + word)
        for event in wire.closing():
            yield event
        if model != "mock-no-done":
            yield wire.terminal()

    async def _complete(self, wire: MockWire, words: list[str]) -> AsyncIterator[bytes]:
        if wire.model in ("mock-silent", "mock-stall"):
            await asyncio.Event().wait()
        await asyncio.sleep(self._delay)
        yield wire.completion(" ".join(words))


class _MockResponse(UpstreamResponse):
    __slots__ = ("_body",)

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body

    def chunks(self) -> AsyncIterator[bytes]:
        return self._body

    async def aclose(self) -> None:
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()


def _answer(said: str) -> str:
    said = " ".join(said.split())[:_ECHO_CHARS]
    answer = "Hello! This is the sse-gateway mock provider, streaming one word at a time."
    return f"{answer} You said: {said}" if said else answer
