"""The Responses dialect (`POST /v1/responses`): the tracker's verdicts per event, the usage it
reads, and the error frame and body the gateway writes (contract sections 2, 4 and 5).

A Responses stream is over only at a terminal event: `response.completed` and
`response.incomplete` end it cleanly, `response.failed` and `error` end it as the upstream's own
failure; anything else is forwarded when its data is a JSON object and skipped when it is not.
The gateway's own error event numbers itself after the last `sequence_number` relayed.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from gateway.apis import OPENAI_RESPONSES
from gateway.apis.openai_responses import ResponsesDialect, ResponsesMockWire, ResponsesTracker
from gateway.errors import ErrorCategory, UpstreamBadRequest, UpstreamTruncated
from gateway.streaming import SSEDecoder, SSEEvent, StreamError, Verdict, make_stream_error
from tests.apis.test_dialects import (
    STREAM_ERRORS,
    check_single_line_ascii_json_event,
    one_event,
    openai_sdk_would_raise,
    sse,
)
from tests.support import responses_wire as wire

RESPONSES = ResponsesDialect()
WORDS = ["Hel", "lo", "!"]


def decode(body: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = decoder.feed(body) + decoder.finish()
    assert not decoder.has_partial_event
    return events


def verdicts(tracker: ResponsesTracker, frames: list[bytes]) -> list[Verdict]:
    return [tracker.inspect(event) for frame in frames for event in decode(frame)]


def tracker() -> ResponsesTracker:
    made = RESPONSES.tracker()
    assert isinstance(made, ResponsesTracker)
    return made


# --- verdicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terminal", "verdict", "complete"),
    [
        ("response.completed", Verdict.END, True),
        ("response.incomplete", Verdict.END, True),
        ("response.failed", Verdict.END_WITH_ERROR, False),
    ],
)
def test_a_whole_stream_is_forwarded_until_its_terminal_event_which_ends_it(
    terminal: str, verdict: Verdict, complete: bool
) -> None:
    subject = tracker()
    frames = wire.responses_events(WORDS, terminal=terminal)

    seen = verdicts(subject, frames)

    assert seen == [Verdict.FORWARD] * (len(frames) - 1) + [verdict]
    assert subject.complete is complete
    assert subject.skipped == 0
    assert subject.sequence_number == len(frames) - 1


def test_a_stream_without_a_terminal_event_is_never_complete() -> None:
    """Every event up to `response.output_item.done` passed: the answer's text is whole, but
    only a terminal event says the response is over (no 'complete without its marker' here)."""
    subject = tracker()

    seen = verdicts(subject, wire.responses_events(WORDS, terminal=None))

    assert set(seen) == {Verdict.FORWARD}
    assert subject.complete is False
    assert RESPONSES.completion_trailer == b""


def test_the_upstreams_own_error_event_ends_the_stream_with_error() -> None:
    subject = tracker()
    frames = [*wire.responses_events(WORDS, terminal=None)[:5], wire.responses_error_event(5)]

    seen = verdicts(subject, frames)

    assert seen == [Verdict.FORWARD] * 5 + [Verdict.END_WITH_ERROR]
    assert subject.complete is False
    assert subject.sequence_number == 5


@pytest.mark.parametrize(
    ("terminal", "verdict"),
    [
        ("response.completed", Verdict.END),
        ("response.incomplete", Verdict.END),
        ("response.failed", Verdict.END_WITH_ERROR),
    ],
)
def test_events_without_an_event_field_are_judged_by_their_json_type(
    terminal: str, verdict: Verdict
) -> None:
    subject = tracker()
    frames = wire.responses_events(WORDS, terminal=terminal, named=False)
    assert all(not frame.startswith(b"event:") for frame in frames)

    seen = verdicts(subject, frames)

    assert seen == [Verdict.FORWARD] * (len(frames) - 1) + [verdict]
    assert subject.usage == wire.usage(len(WORDS))


def test_an_unnamed_error_event_is_judged_by_its_type() -> None:
    data = json.dumps({"type": "error", "code": "server_error", "message": "x", "param": None})
    assert tracker().inspect(sse(data)) is Verdict.END_WITH_ERROR


def test_the_event_field_wins_over_the_json_type() -> None:
    completed = json.dumps({"type": "response.completed", "sequence_number": 3, "response": {}})
    subject = tracker()

    assert subject.inspect(sse(completed, event="response.output_text.delta")) is Verdict.FORWARD
    assert subject.complete is False
    delta = json.dumps({"type": "response.output_text.delta", "sequence_number": 4})
    assert subject.inspect(sse(delta, event="response.completed")) is Verdict.END
    assert subject.complete is True


@pytest.mark.parametrize(
    "data", ["{this is not json", "[DONE]", "[1,2]", '"text"', "42", "null", ""]
)
def test_data_that_is_not_a_json_object_is_skipped_and_counted(data: str) -> None:
    subject = tracker()

    assert subject.inspect(sse(data, event="response.output_text.delta")) is Verdict.SKIP
    assert subject.inspect(sse(data, event="response.completed")) is Verdict.SKIP

    assert subject.skipped == 2
    assert subject.complete is False
    assert subject.sequence_number == -1


def test_the_mock_wires_garbage_event_is_skipped() -> None:
    subject = tracker()
    [event] = decode(ResponsesMockWire("mock-garbage", {}).garbage)
    assert subject.inspect(event) is Verdict.SKIP
    assert subject.skipped == 1


def test_comment_only_events_are_skipped_but_not_counted() -> None:
    subject = tracker()
    assert subject.inspect(one_event(RESPONSES.heartbeat)) is Verdict.SKIP
    assert subject.inspect(sse(None, event="response.completed")) is Verdict.SKIP
    assert (subject.skipped, subject.complete) == (0, False)


@pytest.mark.parametrize("kind", ["response.created", "response.reasoning_summary.delta", "x"])
def test_any_other_named_event_with_a_json_object_is_forwarded(kind: str) -> None:
    subject = tracker()
    assert subject.inspect(sse(json.dumps({"type": kind}), event=kind)) is Verdict.FORWARD
    assert subject.complete is False


def test_trackers_are_independent_per_stream() -> None:
    first, second = tracker(), tracker()
    verdicts(first, wire.responses_events(WORDS))
    assert (second.complete, second.usage, second.sequence_number) == (False, None, -1)


# --- usage -------------------------------------------------------------------------------------


def test_usage_comes_from_the_terminal_events_response() -> None:
    subject = tracker()
    verdicts(subject, wire.responses_events(WORDS))

    assert subject.usage == wire.usage(3)
    assert RESPONSES.tokens(subject.usage) == {
        "input": wire.INPUT_TOKENS,
        "output": 3,
        "cached": 0,
        "reasoning": 0,
    }


def test_usage_of_a_failed_response_is_kept() -> None:
    subject = tracker()
    response = wire.response_object("failed", output_tokens=2)
    subject.inspect(sse(json.dumps({"type": "response.failed", "response": response})))
    assert RESPONSES.tokens(subject.usage) == {
        "input": wire.INPUT_TOKENS,
        "output": 2,
        "cached": 0,
        "reasoning": 0,
    }


def test_usage_in_a_non_terminal_event_is_not_read() -> None:
    subject = tracker()
    response = wire.response_object("in_progress", output_tokens=7)
    subject.inspect(sse(json.dumps({"type": "response.in_progress", "response": response})))
    assert subject.usage is None


@pytest.mark.parametrize("response", [None, {}, {"usage": None}, {"usage": [1]}, "x"])
def test_a_terminal_event_without_a_usage_object_leaves_usage_unset(response: object) -> None:
    subject = tracker()
    payload = json.dumps({"type": "response.completed", "response": response})
    assert subject.inspect(sse(payload)) is Verdict.END
    assert subject.usage is None


def test_the_mock_stream_reports_its_usage_in_the_terminal_event() -> None:
    mock = ResponsesMockWire("mock", {})
    frames = [*mock.opening(), mock.text("a"), mock.text(" b"), *mock.closing(), mock.terminal()]
    subject = tracker()

    seen = verdicts(subject, frames)

    assert seen == [Verdict.FORWARD] * (len(frames) - 1) + [Verdict.END]
    assert RESPONSES.tokens(subject.usage)["output"] == 2
    numbers = [
        json.loads(event.data or "")["sequence_number"] for f in frames for event in decode(f)
    ]
    assert numbers == list(range(len(frames)))


def test_the_mock_completion_is_a_completed_response_with_usage() -> None:
    body = json.loads(ResponsesMockWire("mock", {}).completion("one two three"))
    assert (body["object"], body["status"]) == ("response", "completed")
    assert body["output"][0]["content"][0]["text"] == "one two three"
    assert RESPONSES.tokens(body["usage"])["output"] == 3


# --- the gateway's error event (contract section 5) --------------------------------------------


def test_the_error_event_is_numbered_after_the_last_sequence_number_relayed() -> None:
    subject = tracker()
    verdicts(subject, wire.responses_events(WORDS, terminal=None))
    error = make_stream_error(UpstreamTruncated())

    data = check_single_line_ascii_json_event(RESPONSES.error_event(error, subject))

    assert data["sequence_number"] == subject.sequence_number + 1 == 10


def test_sequence_numbers_are_taken_as_their_maximum_and_only_as_integers() -> None:
    subject = tracker()
    for number in (4, 2, True, 9.5, "12", None):
        subject.inspect(sse(json.dumps({"type": "x", "sequence_number": number})))
    assert subject.sequence_number == 4


@pytest.mark.parametrize("given", [None, "no tracker", "a fresh tracker"])
def test_an_error_event_before_any_numbered_event_is_number_zero(given: str | None) -> None:
    passed = tracker() if given == "a fresh tracker" else None
    data = json.loads(one_event(RESPONSES.error_event(SAMPLE, passed)).data or "")
    assert data["sequence_number"] == 0


SAMPLE = StreamError(type=ErrorCategory.TIMEOUT, message="too slow", code="idle_timeout")


def test_the_error_event_is_openais_error_event_with_the_sdk_error_nested() -> None:
    assert RESPONSES.error_event(SAMPLE) == (
        b"event: error\n"
        b'data: {"type":"error","code":"idle_timeout","message":"too slow","param":null,'
        b'"sequence_number":0,"error":{"message":"too slow","type":"timeout",'
        b'"code":"idle_timeout","param":null}}\n\n'
    )


def test_the_error_event_ends_the_stream_as_an_error_for_a_tracker() -> None:
    """A gateway in front of a gateway: the inner one's error event ends the outer's stream."""
    [event] = decode(RESPONSES.error_event(SAMPLE))
    assert tracker().inspect(event) is Verdict.END_WITH_ERROR


def test_an_upstream_bad_requests_own_code_and_param_are_shown() -> None:
    error = make_stream_error(
        UpstreamBadRequest("too long", upstream_code="context_length_exceeded", param="input")
    )
    data = json.loads(one_event(RESPONSES.error_event(error)).data or "")
    assert (data["code"], data["param"]) == ("context_length_exceeded", "input")
    assert data["error"]["code"] == "context_length_exceeded"


@settings(max_examples=300, deadline=None)
@given(STREAM_ERRORS)
def test_the_error_event_is_one_line_of_ascii_json_for_any_message(error: StreamError) -> None:
    data = check_single_line_ascii_json_event(RESPONSES.error_event(error, tracker()))
    assert data == {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "param": error.param,
        "sequence_number": 0,
        "error": {
            "message": error.message,
            "type": error.type.value,
            "code": error.code,
            "param": error.param,
        },
    }
    assert openai_sdk_would_raise(data)


# --- the error body before the first byte (contract section 4) ---------------------------------


def test_the_error_body_is_openais_json_error() -> None:
    error = make_stream_error(
        UpstreamBadRequest("too long", upstream_code="context_length_exceeded", param="input")
    )
    assert json.loads(RESPONSES.error_body(error)) == {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
            "param": "input",
            "category": "api_error",
        }
    }


@settings(max_examples=200, deadline=None)
@given(STREAM_ERRORS)
def test_the_error_body_is_single_line_ascii_json_for_any_message(error: StreamError) -> None:
    body = RESPONSES.error_body(error)
    body.decode("ascii")
    assert b"\n" not in body
    assert b"\r" not in body
    assert json.loads(body)["error"]["message"] == error.message


def test_the_api_is_served_at_v1_responses_and_relayed_to_responses() -> None:
    assert (OPENAI_RESPONSES.path, OPENAI_RESPONSES.upstream_path) == (
        "/v1/responses",
        "/responses",
    )
    assert OPENAI_RESPONSES.endpoint == "POST /v1/responses"
    assert OPENAI_RESPONSES.splice is None  # a cut response is not continued by prefill
