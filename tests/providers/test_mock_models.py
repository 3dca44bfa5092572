"""Every built-in mock model, through a real gateway, does what gateway/providers/mock.py promises.

The parametrisation comes from `MOCK_MODELS`; each model must have an expectation for
`stream: true` and for `stream: false` here (and a row in the mock module's docstring table),
so a new mock model cannot be added without saying what a client sees.

For streams the expectation is the HTTP status and the final frame: `data: [DONE]`, or exactly
one `event: error` with the documented code. Errors raised before anything was relayed are
real statuses with the OpenAI JSON error body instead (no heartbeat commits the headers first:
the default heartbeat is far longer than the short limits used here).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

import gateway.providers.mock as mock_module
from gateway.settings import MOCK_MODELS
from gateway.streaming import SSEDecoder, SSEEvent
from tests.conftest import RunningGateway, StartGateway

USER_TEXT = "hi there"
ANSWER = (
    "Hello! This is the sse-gateway mock provider, streaming one word at a time. "
    f"You said: {USER_TEXT}"
)
MAX_EVENT_BYTES = 65536
#: Short per-request limits for the models that go quiet (sent only to those).
SHORT_LIMITS = {"x-gateway-idle-timeout": "0.2", "x-gateway-first-byte-timeout": "0.2"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a client sees. `code` is the error's `code` (None: a complete answer)."""

    status: int = 200
    type: str | None = None  # the error's category
    code: str | None = None
    quiet: bool = False  # the model goes quiet: send SHORT_LIMITS
    retry_after: str | None = None

    @property
    def complete(self) -> bool:
        return self.code is None


DONE = Outcome()


def event_error(type: str, code: str, *, quiet: bool = False) -> Outcome:
    """A 200 stream ended by exactly one `event: error` frame."""
    return Outcome(200, type, code, quiet=quiet)


REJECTED = {
    "mock-429": Outcome(429, "rate_limit", "upstream_rate_limited", retry_after="5"),
    "mock-500": Outcome(502, "api_error", "upstream_status_5xx"),
    "mock-401": Outcome(502, "api_error", "upstream_auth_failed"),
    "mock-400": Outcome(400, "api_error", "context_length_exceeded"),
}
FIRST_BYTE_TIMEOUT = Outcome(504, "timeout", "first_byte_timeout", quiet=True)

STREAM: dict[str, Outcome] = {
    "mock": DONE,
    "mock-slow": DONE,
    "mock-no-done": DONE,  # the gateway completes a stream that ended with a finish_reason
    "mock-cut": event_error("stream_interrupted", "upstream_truncated"),
    "mock-stall": event_error("timeout", "idle_timeout", quiet=True),
    "mock-silent": FIRST_BYTE_TIMEOUT,
    "mock-garbage": DONE,  # the non-JSON event is skipped
    "mock-reset": event_error("network", "connection_reset"),
    "mock-huge": event_error("stream_interrupted", "event_too_large"),
    **REJECTED,
}

#: `stream: false`: the misbehaviours that only make sense mid-stream answer normally; the
#: models that go quiet never send a body.
COMPLETE: dict[str, Outcome] = {
    "mock": DONE,
    "mock-slow": DONE,
    "mock-no-done": DONE,
    "mock-cut": DONE,
    "mock-stall": FIRST_BYTE_TIMEOUT,
    "mock-silent": FIRST_BYTE_TIMEOUT,
    "mock-garbage": DONE,
    "mock-reset": DONE,
    "mock-huge": DONE,
    **REJECTED,
}


def test_every_mock_model_has_an_expectation_for_both_modes() -> None:
    assert set(STREAM) == set(MOCK_MODELS)
    assert set(COMPLETE) == set(MOCK_MODELS)


def test_every_mock_model_is_documented_in_the_mock_docstring() -> None:
    documented = re.findall(r"^\| `([^`]+)`", mock_module.__doc__ or "", re.MULTILINE)
    assert sorted(documented) == sorted(MOCK_MODELS)


def expectation(table: dict[str, Outcome], model: str) -> Outcome:
    outcome = table.get(model)
    if outcome is None:
        pytest.fail(f"mock model {model!r} has no expectation in this module: add one")
    return outcome


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningGateway:
    return await start_gateway(
        None,
        upstreams={"mock": {"kind": "mock", "mock": {"chunk_delay": 0, "slow_chunk_delay": 0.01}}},
        limits={"max_event_bytes": MAX_EVENT_BYTES},
    )


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, model: str, *, stream: bool, outcome: Outcome
) -> tuple[aiohttp.ClientResponse, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": USER_TEXT}], "stream": stream}
    headers = SHORT_LIMITS if outcome.quiet else {}
    async with http.post("/v1/chat/completions", json=body, headers=headers) as response:
        return response, await response.read()


def events_of(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder(max_event_bytes=MAX_EVENT_BYTES * 2)
    events = decoder.feed(body) + decoder.finish()
    assert not decoder.has_partial_event
    return [event for event in events if event.data is not None]


def text_of(events: list[SSEEvent]) -> str:
    text = ""
    for event in events:
        payload = json.loads(event.data or "")
        assert payload["object"] == "chat.completion.chunk"
        text += payload["choices"][0]["delta"].get("content", "")
    return text


def check_json_error(response: aiohttp.ClientResponse, body: bytes, outcome: Outcome) -> None:
    assert response.content_type == "application/json"
    error = json.loads(body)["error"]
    assert (error["category"], error["code"]) == (outcome.type, outcome.code)
    assert error["message"]
    assert response.headers.get("Retry-After") == outcome.retry_after


@pytest.mark.parametrize("model", MOCK_MODELS)
async def test_mock_model_stream_ends_as_documented(
    http: aiohttp.ClientSession, model: str
) -> None:
    outcome = expectation(STREAM, model)
    response, body = await post(http, model, stream=True, outcome=outcome)

    assert response.status == outcome.status
    if outcome.status != 200:
        check_json_error(response, body, outcome)
        return
    assert response.content_type == "text/event-stream"
    *answer, last = events_of(body)
    assert all(event.event is None for event in answer)
    if outcome.complete:
        assert body.endswith(b"\n\ndata: [DONE]\n\n")
        assert last.data == "[DONE]"
        assert text_of(answer) == ANSWER
        assert b"{this is not json" not in body
        return
    assert last.event == "error"
    assert body.count(b"event: error") == 1
    assert body.endswith(b"\n\n")
    payload = json.loads(last.data or "")
    assert (payload["type"], payload["error"]["code"]) == (outcome.type, outcome.code)
    # The misbehaving models send part of the answer first.
    assert ANSWER.startswith(text_of(answer))
    assert text_of(answer)


@pytest.mark.parametrize("model", MOCK_MODELS)
async def test_mock_model_completion_answers_as_documented(
    http: aiohttp.ClientSession, model: str
) -> None:
    outcome = expectation(COMPLETE, model)
    response, body = await post(http, model, stream=False, outcome=outcome)

    assert response.status == outcome.status
    if not outcome.complete:
        check_json_error(response, body, outcome)
        return
    assert response.content_type == "application/json"
    completion: dict[str, Any] = json.loads(body)
    assert completion["object"] == "chat.completion"
    assert completion["model"] == model
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ANSWER}
    assert choice["finish_reason"] == "stop"


async def test_mock_answer_echoes_a_capped_part_of_the_last_user_message(
    http: aiohttp.ClientSession,
) -> None:
    said = "word " * 100
    body = {
        "model": "mock",
        "stream": False,
        "messages": [
            {"role": "user", "content": "an earlier message"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": said},
        ],
    }
    answers = []
    for _ in range(2):
        async with http.post("/v1/chat/completions", json=body) as response:
            completion = await response.json()
        answers.append(completion["choices"][0]["message"]["content"])

    first, second = answers
    assert first == second
    echoed = first.partition("You said: ")[2]
    assert echoed == " ".join(said.split())[:200]
