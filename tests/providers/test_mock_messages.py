"""Every built-in mock model on `POST /v1/messages`: the same behaviours as on Chat Completions,
in Anthropic's wire - `message_stop` for `[DONE]`, Anthropic `event: error` frames and error
bodies with Anthropic's error types.

Like tests/providers/test_mock_models.py, the parametrisation comes from `MOCK_MODELS` and each
model needs an expectation here for `stream: true` and `stream: false`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.settings import MOCK_MODELS
from gateway.streaming import SSEDecoder, SSEEvent
from tests.conftest import RunningGateway, StartGateway

USER_TEXT = "hi there"
ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. "
    f"You said: {USER_TEXT}"
)
MAX_EVENT_BYTES = 65536
SHORT_LIMITS = {"x-gateway-idle-timeout": "0.2", "x-gateway-first-byte-timeout": "0.2"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a client sees: the status, and the Anthropic error type (None: a complete answer)."""

    status: int = 200
    type: str | None = None
    quiet: bool = False  # the model goes quiet: send SHORT_LIMITS
    retry_after: str | None = None


DONE = Outcome()
REJECTED = {
    "mock-429": Outcome(429, "rate_limit_error", retry_after="5"),
    "mock-500": Outcome(502, "api_error"),
    "mock-401": Outcome(502, "api_error"),
    "mock-400": Outcome(400, "invalid_request_error"),
}
FIRST_BYTE_TIMEOUT = Outcome(504, "timeout_error", quiet=True)
STREAM: dict[str, Outcome] = {
    "mock": DONE,
    "mock-slow": DONE,
    "mock-no-done": DONE,  # stop_reason sent, message_stop forgotten: the gateway adds it
    "mock-cut": Outcome(200, "api_error"),
    "mock-stall": Outcome(200, "timeout_error", quiet=True),
    "mock-silent": FIRST_BYTE_TIMEOUT,
    "mock-garbage": DONE,  # the non-JSON event is skipped
    "mock-reset": Outcome(200, "api_error"),
    "mock-huge": Outcome(200, "api_error"),
    **REJECTED,
}
COMPLETE: dict[str, Outcome] = {
    **dict.fromkeys(MOCK_MODELS, DONE),
    "mock-stall": FIRST_BYTE_TIMEOUT,
    "mock-silent": FIRST_BYTE_TIMEOUT,
    **REJECTED,
}


def test_every_mock_model_has_an_anthropic_expectation_for_both_modes() -> None:
    assert set(STREAM) == set(MOCK_MODELS)
    assert set(COMPLETE) == set(MOCK_MODELS)


@pytest.fixture
async def http(start_gateway: StartGateway) -> AsyncIterator[aiohttp.ClientSession]:
    gateway: RunningGateway = await start_gateway(
        None,
        upstreams={"mock": {"kind": "mock", "mock": {"chunk_delay": 0, "slow_chunk_delay": 0.01}}},
        limits={"max_event_bytes": MAX_EVENT_BYTES},
    )
    async with aiohttp.ClientSession(base_url=gateway.url) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, model: str, *, stream: bool, outcome: Outcome
) -> tuple[aiohttp.ClientResponse, bytes]:
    body = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": USER_TEXT}]}],
        "stream": stream,
    }
    headers = SHORT_LIMITS if outcome.quiet else {}
    async with http.post("/v1/messages", json=body, headers=headers) as response:
        return response, await response.read()


def events_of(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder(max_event_bytes=MAX_EVENT_BYTES * 2)
    events = decoder.feed(body) + decoder.finish()
    assert not decoder.has_partial_event
    return [event for event in events if event.data is not None]


def text_of(events: list[SSEEvent]) -> str:
    payloads = [json.loads(event.data or "") for event in events]
    assert [event.event for event in events] == [payload["type"] for payload in payloads]
    deltas = [payload["delta"] for payload in payloads if payload["type"] == "content_block_delta"]
    return "".join(delta["text"] for delta in deltas)


def check_error_body(response: aiohttp.ClientResponse, body: bytes, outcome: Outcome) -> None:
    assert response.content_type == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "error"
    assert payload["error"]["type"] == outcome.type
    assert payload["error"]["message"]
    assert response.headers.get("Retry-After") == outcome.retry_after


@pytest.mark.parametrize("model", MOCK_MODELS)
async def test_mock_model_stream_ends_in_anthropics_wire(
    http: aiohttp.ClientSession, model: str
) -> None:
    outcome = STREAM[model]
    response, body = await post(http, model, stream=True, outcome=outcome)

    assert response.status == outcome.status
    if outcome.status != 200:
        check_error_body(response, body, outcome)
        return
    *answer, last = events_of(body)
    assert answer[0].event == "message_start"
    assert b"event: ping\n" in body
    assert b"{this is not json" not in body
    if outcome.type is None:
        assert last.event == "message_stop"
        assert answer[-1].event == "message_delta"
        assert text_of(answer) == ANSWER
        return
    assert last.event == "error"
    assert body.count(b"event: error") == 1
    payload: dict[str, Any] = json.loads(last.data or "")
    assert payload["type"] == "error"
    assert set(payload["error"]) == {"type", "message"}
    assert payload["error"]["type"] == outcome.type
    assert text_of(answer)
    assert ANSWER.startswith(text_of(answer))


@pytest.mark.parametrize("model", MOCK_MODELS)
async def test_mock_model_message_answers_in_anthropics_shape(
    http: aiohttp.ClientSession, model: str
) -> None:
    outcome = COMPLETE[model]
    response, body = await post(http, model, stream=False, outcome=outcome)

    assert response.status == outcome.status
    if outcome.type is not None:
        check_error_body(response, body, outcome)
        return
    message: dict[str, Any] = json.loads(body)
    assert (message["type"], message["role"], message["model"]) == ("message", "assistant", model)
    assert message["content"] == [{"type": "text", "text": ANSWER}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == len(ANSWER.split())
