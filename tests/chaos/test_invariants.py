"""The chaos checks can fail: each broken answer below is one the contract forbids, and the
checker must name it (a check that passes whatever the gateway does would prove nothing).

Each case starts from an answer the contract allows - checked to pass - and breaks one promise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chaos.apis import ANTHROPIC, HEARTBEAT, OPENAI, Api
from tests.chaos.client import Exchange
from tests.chaos.invariants import check_exchange, check_record
from tests.chaos.plans import ClientMove, ClientPlan, RequestPlan
from tests.chaos.upstream_plan import Ending, UpstreamPlan

EVENTS = tuple(OPENAI.events(["a", "b", "c"], finish=False))
COMPLETE = (*OPENAI.events(["a", "b"], finish=True), OPENAI.marker)
REQUEST_ID = "chaos-0-0"
SSE = {"content-type": "text/event-stream; charset=utf-8", "x-request-id": REQUEST_ID}
JSON = {"content-type": "application/json; charset=utf-8", "x-request-id": REQUEST_ID}


def plan(
    upstream: UpstreamPlan,
    *,
    api: Api = OPENAI,
    stream: bool = True,
    move: ClientMove = ClientMove.READ_ALL,
) -> RequestPlan:
    client = ClientPlan(move, events=1)
    return RequestPlan(0, 0, api, stream, upstream, client, "gpt-chaos-0-0", b"{}", ())


def openai_error_frame(category: str, code: str, message: str = "m") -> bytes:
    error = {"message": message, "type": category, "code": code, "param": None}
    data = {"type": category, "message": message, "error": error}
    return b"event: error\ndata: " + json.dumps(data).encode() + b"\n\n"


def streamed(body: bytes, **fields: Any) -> Exchange:
    return Exchange(status=200, headers=dict(SSE), body=body, finished=True, **fields)


CUT = UpstreamPlan("cut", Ending.ERROR, relayed=EVENTS, codes=frozenset({"upstream_truncated"}))
TRUNCATED = openai_error_frame("stream_interrupted", "upstream_truncated")
DONE = UpstreamPlan("complete", Ending.MARKER, relayed=COMPLETE)
TRAILED = UpstreamPlan("trailer", Ending.TRAILER, relayed=COMPLETE[:-1])
STALL = UpstreamPlan("stall", Ending.ERROR, codes=frozenset({"first_byte_timeout"}), holds=True)
RATE_LIMITED = UpstreamPlan(
    "429", Ending.ERROR, codes=frozenset({"upstream_rate_limited"}), retry_after="7"
)
RATE_LIMIT_BODY = {
    "error": {
        "message": "m",
        "type": "rate_limit_error",
        "code": "upstream_rate_limited",
        "param": None,
        "category": "rate_limit",
    }
}

#: (plan, the answer the contract allows, the same answer with one promise broken)
BROKEN: dict[str, tuple[RequestPlan, Exchange, Exchange]] = {
    "an-event-dropped": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(EVENTS[0] + EVENTS[2] + TRUNCATED),
    ),
    "events-reordered": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(EVENTS[1] + EVENTS[0] + EVENTS[2] + TRUNCATED),
    ),
    "an-event-altered": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(EVENTS[0] + EVENTS[1].replace(b'"b"', b'"B"') + EVENTS[2] + TRUNCATED),
    ),
    "half-an-event-forwarded": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + b'data: {"choi' + TRUNCATED),
    ),
    "a-cut-stream-ends-cleanly": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + OPENAI.marker),
    ),
    "two-error-events": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + TRUNCATED + TRUNCATED),
    ),
    "the-wrong-error-code": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + openai_error_frame("stream_interrupted", "event_too_large")),
    ),
    "the-wrong-error-category": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + openai_error_frame("network", "upstream_truncated")),
    ),
    "an-error-event-over-two-lines": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + TRUNCATED.replace(b', "error"', b',\n"error"')),
    ),
    "an-anthropic-error-on-openai": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(
            b"".join(EVENTS)
            + b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"m"}}'
            + b"\n\n"
        ),
    ),
    "a-partial-frame-at-the-end": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        streamed(b"".join(EVENTS) + TRUNCATED + b"data: x"),
    ),
    "a-heartbeat-after-the-end": (
        plan(CUT),
        streamed(EVENTS[0] + HEARTBEAT + b"".join(EVENTS[1:]) + TRUNCATED),
        streamed(b"".join(EVENTS) + TRUNCATED + HEARTBEAT),
    ),
    "no-done": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        streamed(b"".join(COMPLETE[:-1])),
    ),
    "two-dones": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        streamed(b"".join(COMPLETE) + OPENAI.marker),
    ),
    "no-trailer": (
        plan(TRAILED),
        streamed(b"".join(COMPLETE)),
        streamed(b"".join(COMPLETE[:-1])),
    ),
    "an-error-instead-of-the-trailer": (
        plan(TRAILED),
        streamed(b"".join(COMPLETE)),
        streamed(b"".join(COMPLETE[:-1]) + TRUNCATED),
    ),
    "committed-without-event-or-heartbeat": (
        plan(STALL),
        streamed(HEARTBEAT + openai_error_frame("timeout", "first_byte_timeout")),
        streamed(openai_error_frame("timeout", "first_byte_timeout")),
    ),
    "a-status-after-events-should-be-relayed": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        Exchange(
            status=502,
            headers=dict(JSON),
            body=json.dumps(
                {
                    "error": {
                        "message": "m",
                        "type": "server_error",
                        "code": "upstream_truncated",
                        "param": None,
                        "category": "stream_interrupted",
                    }
                }
            ).encode(),
            finished=True,
        ),
    ),
    "the-wrong-status": (
        plan(RATE_LIMITED),
        Exchange(429, {**JSON, "retry-after": "7"}, json.dumps(RATE_LIMIT_BODY).encode(), True),
        Exchange(502, {**JSON, "retry-after": "7"}, json.dumps(RATE_LIMIT_BODY).encode(), True),
    ),
    "retry-after-lost": (
        plan(RATE_LIMITED),
        Exchange(429, {**JSON, "retry-after": "7"}, json.dumps(RATE_LIMIT_BODY).encode(), True),
        Exchange(429, dict(JSON), json.dumps(RATE_LIMIT_BODY).encode(), True),
    ),
    "an-openai-error-body-on-anthropic": (
        plan(RATE_LIMITED, api=ANTHROPIC),
        Exchange(
            429,
            {**JSON, "retry-after": "7"},
            b'{"type":"error","error":{"type":"rate_limit_error","message":"m"}}',
            True,
        ),
        Exchange(429, {**JSON, "retry-after": "7"}, json.dumps(RATE_LIMIT_BODY).encode(), True),
    ),
    "an-answer-altered": (
        plan(UpstreamPlan("a", Ending.ANSWER, answer=b'{"x": 1}'), stream=False),
        Exchange(200, dict(JSON), b'{"x": 1}', True),
        Exchange(200, dict(JSON), b'{"x":1}', True),
    ),
    "another-request-id": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        Exchange(200, {**SSE, "x-request-id": "other"}, b"".join(COMPLETE), True),
    ),
    "a-response-cut-under-a-client-that-stayed": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        Exchange(200, dict(SSE), COMPLETE[0], failure="ClientPayloadError()"),
    ),
    "not-a-prefix-when-the-client-left": (
        plan(CUT, move=ClientMove.LEAVE_AFTER_EVENTS),
        Exchange(200, dict(SSE), EVENTS[0], left=True),
        Exchange(200, dict(SSE), EVENTS[1], left=True),
    ),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_each_broken_promise_on_the_wire_is_named(
    case: tuple[RequestPlan, Exchange, Exchange],
) -> None:
    request, allowed, broken = case
    assert check_exchange(request, allowed) == []
    assert check_exchange(request, broken) != []


def finished_line(**fields: Any) -> dict[str, Any]:
    line = {"outcome": "completed", "code": None, "category": None, "events": 3, "bytes": 0}
    return {**line, **fields}


HELD = plan(
    UpstreamPlan(
        "stall", Ending.ERROR, relayed=EVENTS, codes=frozenset({"idle_timeout"}), holds=True
    ),
    move=ClientMove.LEAVE_AFTER_EVENTS,
)
LEFT = Exchange(200, dict(SSE), EVENTS[0], left=True)
DISCONNECTED = {
    "outcome": "client_disconnected",
    "code": "client_disconnected",
    "category": "context_canceled",
    "phase": "streaming",
}
RECORDS: dict[str, tuple[RequestPlan, Exchange, dict[str, Any], dict[str, Any]]] = {
    "the-wrong-outcome": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        finished_line(bytes=len(b"".join(COMPLETE)), events=4),
        finished_line(
            bytes=len(b"".join(COMPLETE)),
            outcome="stream_interrupted",
            code="upstream_truncated",
            category="stream_interrupted",
        ),
    ),
    "bytes-miscounted": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        finished_line(bytes=len(b"".join(COMPLETE)), events=4),
        finished_line(bytes=1, events=4),
    ),
    "events-miscounted": (
        plan(DONE),
        streamed(b"".join(COMPLETE)),
        finished_line(bytes=len(b"".join(COMPLETE)), events=4),
        finished_line(bytes=len(b"".join(COMPLETE)), events=5),
    ),
    "a-held-call-left-recorded-as-completed": (
        HELD,
        LEFT,
        finished_line(**DISCONNECTED),
        finished_line(),
    ),
    "a-held-call-left-recorded-as-its-timeout": (
        HELD,
        LEFT,
        finished_line(**DISCONNECTED),
        finished_line(outcome="timeout", code="idle_timeout", category="timeout"),
    ),
    "left-after-events-recorded-in-the-wrong-phase": (
        HELD,
        LEFT,
        finished_line(**DISCONNECTED),
        finished_line(**{**DISCONNECTED, "phase": "waiting_first_byte"}),
    ),
    "a-category-that-is-not-the-codes": (
        plan(CUT),
        streamed(b"".join(EVENTS) + TRUNCATED),
        finished_line(
            outcome="stream_interrupted",
            code="upstream_truncated",
            category="stream_interrupted",
            bytes=len(b"".join(EVENTS) + TRUNCATED),
        ),
        finished_line(
            outcome="stream_interrupted",
            code="upstream_truncated",
            category="network",
            bytes=len(b"".join(EVENTS) + TRUNCATED),
        ),
    ),
}


@pytest.mark.parametrize("case", RECORDS.values(), ids=RECORDS.keys())
def test_each_wrong_record_is_named(
    case: tuple[RequestPlan, Exchange, dict[str, Any], dict[str, Any]],
) -> None:
    request, got, allowed, wrong = case
    assert check_record(request, got, allowed) == []
    assert check_record(request, got, wrong) != []
