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
The misbehaviours happen on the way out: a model's answer is generated whole (`_generate`), and
`_misbehave` spoils what the client is sent.

On the Responses API the mock is also stateful (`gateway.providers.mock_responses`): it stores
what it answers (unless `store: false`) and serves `previous_response_id` (the answer then says
which turn of the conversation it is and what the previous turn said), `GET`/`DELETE
/responses/{id}`, `POST /responses/{id}/cancel`, `GET /responses/{id}/input_items` and
background mode (`background: true`): a background response generates in a task of the
provider (after one `chunk_delay` in `queued`), its create stream and every resume (`GET
/responses/{id}?stream=true&starting_after=N`) follow its stored events, and a non-streaming
create answers at once with status `queued`. The misbehaving models misbehave on the create
stream only; a background response's stored events are the whole answer, so a resume after
`mock-cut` gets the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from gateway.apis import APIS, MockWire
from gateway.apis.mock_wire import dumps
from gateway.apis.openai_responses import ResponsesMockWire
from gateway.errors import (
    ConnectionReset,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamServerError,
)
from gateway.providers.mock_responses import MockEvent, MockEvents, ResponseStore
from gateway.providers.upstream import Provider, UpstreamRequest, UpstreamResponse
from gateway.redaction import Redactor
from gateway.settings import LimitSettings, UpstreamSettings
from gateway.streaming import Context

__all__ = ["MockProvider"]

_PREFIX_WORDS = 5  # words sent before the misbehaving models misbehave
_ECHO_CHARS = 200
#: The models that never answer (non-streaming) or go quiet (streaming).
_QUIET = ("mock-silent", "mock-stall")


class MockProvider(Provider):
    """Answers from memory; misbehaves on request (see the module docstring)."""

    vendor = "sse-gateway.mock"

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
        self._responses = ResponseStore()

    async def aclose(self) -> None:
        """Stop the background responses still generating."""
        await self._responses.aclose()

    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        if request.on_sent is not None:
            request.on_sent()
        if request.resource_call:
            answer = self._responses.answer(request.method, request.path, request.stream)
            return _MockResponse(answer)
        model = request.model
        if model == "mock-429":
            raise UpstreamRateLimited("mock: rate limit reached", retry_after="5")
        if model == "mock-500":
            raise UpstreamServerError()
        if model == "mock-401":
            raise UpstreamAuthFailed()
        body: dict[str, Any] = json.loads(request.body)
        wire = request.api.mock_wire(model, body)
        if model == "mock-400":
            raise UpstreamBadRequest(
                "mock: this model's maximum context length is 16 tokens",
                upstream_code="context_length_exceeded",
                param=wire.input_field,
            )
        delay = self._slow_delay if model == "mock-slow" else self._delay
        if isinstance(wire, ResponsesMockWire):
            return _MockResponse(self._respond(wire, delay, request.stream))
        words = _answer(wire.said()).split(" ")
        if request.stream:
            return _MockResponse(self._misbehave(wire, _generate(wire, words, delay)))
        return _MockResponse(self._complete(wire, words))

    def _respond(self, wire: ResponsesMockWire, delay: float, stream: bool) -> AsyncIterator[bytes]:
        """A Responses create: stored, continuing a conversation, maybe in the background."""
        stored = self._responses.begin(wire)
        words = _answer(wire.said(), stored.turn, stored.earlier).split(" ")
        if not wire.background:
            events = stored.record(_generate(wire, words, delay if stream else 0.0))
            return self._misbehave(wire, events) if stream else self._finish(wire, events)
        for data in wire.announce():
            stored.append(MockEvent(data))
        self._responses.run_in_background(stored, _generate(wire, words, delay, queued=True))
        if stream:
            return self._misbehave(wire, stored.follow())
        return self._hold(wire, wire.snapshot())

    async def _misbehave(self, wire: MockWire, events: MockEvents) -> AsyncIterator[bytes]:
        """`events` as the client is sent them: spoilt as the model's name says."""
        model = wire.model
        async with contextlib.aclosing(events):
            if model == "mock-silent":
                await _forever()
            async for event in events:
                if event.word == _PREFIX_WORDS:
                    if model == "mock-cut":
                        return
                    if model == "mock-stall":
                        await _forever()
                    if model == "mock-reset":
                        raise ConnectionReset()
                    if model == "mock-garbage":
                        yield wire.garbage
                    if model == "mock-huge":
                        yield wire.oversized(self._max_event_bytes)
                if event.terminal and model == "mock-no-done":
                    return
                yield event.data

    async def _complete(self, wire: MockWire, words: list[str]) -> AsyncIterator[bytes]:
        if wire.model in _QUIET:
            await _forever()
        await asyncio.sleep(self._delay)
        yield wire.completion(" ".join(words))

    async def _finish(self, wire: ResponsesMockWire, events: MockEvents) -> AsyncIterator[bytes]:
        """A foreground non-streaming create: the response once generated."""
        if wire.model in _QUIET:
            await _forever()
        await asyncio.sleep(self._delay)
        async with contextlib.aclosing(events):
            async for _ in events:
                pass
        yield dumps(wire.snapshot())

    async def _hold(self, wire: MockWire, response: dict[str, Any]) -> AsyncIterator[bytes]:
        """A background non-streaming create: `response` as it was when created."""
        if wire.model in _QUIET:
            await _forever()
        yield dumps(response)


async def _generate(
    wire: MockWire, words: list[str], delay: float, *, queued: bool = False
) -> MockEvents:
    """The whole answer in `wire`'s API, a word per `delay` (after one more if `queued`)."""
    if queued:
        await asyncio.sleep(delay)
    for data in wire.opening():
        yield MockEvent(data)
    for index, word in enumerate(words):
        await asyncio.sleep(delay)
        yield MockEvent(wire.text(word if index == 0 else " " + word), word=index)
    for data in wire.closing():
        yield MockEvent(data)
    yield MockEvent(wire.terminal(), terminal=True)


async def _forever() -> None:
    await asyncio.Event().wait()


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


def _answer(said: str, turn: int = 1, earlier: str = "") -> str:
    """The mock's answer to `said`; from the second turn of a conversation on, it says which
    turn it is and what the previous turn said (so a continued conversation shows)."""
    answer = "Hello! This is the sse-gateway mock provider, streaming one word at a time."
    if said:
        answer = f"{answer} You said: {_echo(said)}"
    if turn > 1:
        answer = f"{answer} (turn {turn} of our conversation; before, you said: {_echo(earlier)})"
    return answer


def _echo(said: str) -> str:
    return " ".join(said.split())[:_ECHO_CHARS]
