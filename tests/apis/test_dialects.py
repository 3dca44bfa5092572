"""Wire dialects: the trackers' verdicts per event, and the error frames and bodies the gateway
writes (contract sections 4 and 5), including hypothesis properties for the encoders: whatever
the message, an error frame is exactly one well-formed SSE event of single-line ASCII JSON.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.errors as errors_module
from gateway.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT
from gateway.apis.anthropic_messages import AnthropicDialect
from gateway.apis.openai_chat import OpenAIDialect
from gateway.apis.openai_chat.dialect import openai_error_type
from gateway.errors import (
    ClientDisconnected,
    ConnectionReset,
    ErrorCategory,
    FirstByteTimeout,
    GatewayError,
    GatewayOverloaded,
    InvalidRequest,
    RequestTooLarge,
    ServerShutdown,
    UnknownModel,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTruncated,
)
from gateway.streaming import (
    Dialect,
    SSEDecoder,
    SSEEvent,
    StreamError,
    StreamTracker,
    Verdict,
    make_stream_error,
)

OPENAI = OpenAIDialect()
ANTHROPIC = AnthropicDialect()
DIALECTS = [pytest.param(OPENAI, id="openai"), pytest.param(ANTHROPIC, id="anthropic")]

#: Every `error.type` the Anthropic API documents (and its SDK understands).
ANTHROPIC_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
}


def one_event(frame: bytes) -> SSEEvent:
    """Decode `frame`; it must be exactly one complete event with nothing left over."""
    decoder = SSEDecoder()
    events = decoder.feed(frame)
    events += decoder.finish()
    assert not decoder.has_partial_event
    assert len(events) == 1, events
    assert events[0].raw == frame
    return events[0]


def sse(data: str | None = None, event: str | None = None) -> SSEEvent:
    """An event as the decoder would give it (raw bytes do not matter to the trackers)."""
    lines = ([f"event: {event}"] if event is not None else []) + (
        [f"data: {data}"] if data is not None else [": comment"]
    )
    return SSEEvent(raw=("\n".join(lines) + "\n\n").encode(), data=data, event=event)


def openai_chunk(finish_reason: str | None = None, **extra: Any) -> str:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": finish_reason}],
        **extra,
    }
    return json.dumps(chunk)


def openai_sdk_would_raise(data: Any) -> bool:
    """The OpenAI SDK's rule for a streamed payload: a mapping with a truthy `error` raises
    `APIError`, whose message is `error["message"]` when that is a non-empty string."""
    return isinstance(data, dict) and bool(data.get("error"))


# --- OpenAI tracker --------------------------------------------------------------------------


def test_openai_chunks_are_forwarded_and_a_finish_reason_marks_the_answer_complete():
    tracker = OPENAI.tracker()
    seen = []
    for finish_reason in (None, None, "stop"):
        verdict = tracker.inspect(sse(openai_chunk(finish_reason=finish_reason)))
        seen.append((verdict, tracker.complete))
    assert seen == [(Verdict.FORWARD, False), (Verdict.FORWARD, False), (Verdict.FORWARD, True)]
    assert tracker.skipped == 0


def test_openai_finish_reason_in_any_choice_marks_the_answer_complete():
    chunk = {
        "choices": [{"index": 0, "finish_reason": None}, {"index": 1, "finish_reason": "length"}]
    }
    tracker = OPENAI.tracker()
    assert tracker.inspect(sse(json.dumps(chunk))) is Verdict.FORWARD
    assert tracker.complete


def test_openai_done_marker_ends_the_stream():
    assert OPENAI.tracker().inspect(sse("[DONE]")) is Verdict.END


def test_openai_usage_is_captured_and_a_null_usage_keeps_the_last():
    tracker = OPENAI.tracker()
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    tracker.inspect(sse(openai_chunk(usage=None)))
    assert tracker.usage is None
    tracker.inspect(sse(json.dumps({"choices": [], "usage": usage})))
    tracker.inspect(sse(openai_chunk(usage=None)))
    assert tracker.usage == usage


@pytest.mark.parametrize(
    "data", ["not json", "{", "data: {}", "{'single': 'quotes'}", "[DONE"], ids=repr
)
def test_openai_invalid_json_is_skipped_and_counted(data):
    tracker = OPENAI.tracker()
    assert tracker.inspect(sse(data)) is Verdict.SKIP
    assert tracker.inspect(sse(data)) is Verdict.SKIP
    assert tracker.skipped == 2


@pytest.mark.parametrize("data", ["[1, 2]", "42", '"text"', "null", "true"], ids=repr)
def test_openai_json_that_is_not_an_object_is_skipped(data):
    tracker = OPENAI.tracker()
    assert tracker.inspect(sse(data)) is Verdict.SKIP
    assert tracker.skipped == 1


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(SSEEvent(raw=b": ping\n\n"), id="comment"),
        pytest.param(SSEEvent(raw=b"event: ping\n\n", event="ping"), id="event-only"),
        pytest.param(SSEEvent(raw=b"id: 7\n\n", id="7"), id="id-only"),
        pytest.param(SSEEvent(raw=b"retry: 10\n\n"), id="retry-only"),
    ],
)
def test_openai_frames_without_data_are_skipped_but_not_counted(event):
    tracker = OPENAI.tracker()
    assert tracker.inspect(event) is Verdict.SKIP
    assert tracker.skipped == 0


def test_openai_upstream_error_payload_ends_the_stream_with_error():
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    tracker = OPENAI.tracker()
    assert tracker.inspect(sse(json.dumps(error))) is Verdict.END_WITH_ERROR
    assert tracker.inspect(sse(json.dumps(error), event="error")) is Verdict.END_WITH_ERROR
    assert tracker.inspect(sse(openai_chunk(error=None))) is Verdict.FORWARD


def test_openai_trackers_are_independent_per_stream():
    first, second = OPENAI.tracker(), OPENAI.tracker()
    first.inspect(sse(openai_chunk(finish_reason="stop")))
    first.inspect(sse("junk"))
    assert (second.complete, second.skipped, second.usage) == (False, 0, None)


# --- Anthropic tracker -----------------------------------------------------------------------

MESSAGE_START = {
    "type": "message_start",
    "message": {"id": "msg_1", "usage": {"input_tokens": 10, "output_tokens": 1}},
}
BLOCK_DELTA = {"type": "content_block_delta", "index": 0, "delta": {"text": "hi"}}


def message_delta(stop_reason: str | None) -> str:
    return json.dumps(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 15},
        }
    )


def test_anthropic_events_are_forwarded_and_stop_reason_marks_the_answer_complete():
    tracker = ANTHROPIC.tracker()
    assert tracker.inspect(sse(json.dumps(MESSAGE_START), "message_start")) is Verdict.FORWARD
    assert tracker.inspect(sse(json.dumps(BLOCK_DELTA), "content_block_delta")) is Verdict.FORWARD
    assert not tracker.complete
    assert tracker.inspect(sse(message_delta(None), "message_delta")) is Verdict.FORWARD
    assert not tracker.complete
    assert tracker.inspect(sse(message_delta("end_turn"), "message_delta")) is Verdict.FORWARD
    assert tracker.complete


def test_anthropic_usage_merges_message_start_and_message_delta():
    tracker = ANTHROPIC.tracker()
    tracker.inspect(sse(json.dumps(MESSAGE_START), "message_start"))
    assert tracker.usage == {"input_tokens": 10, "output_tokens": 1}
    tracker.inspect(sse(message_delta("end_turn"), "message_delta"))
    assert tracker.usage == {"input_tokens": 10, "output_tokens": 15}


def test_anthropic_usage_keeps_message_start_counts_a_message_delta_leaves_null():
    tracker = ANTHROPIC.tracker()
    tracker.inspect(sse(json.dumps(MESSAGE_START), "message_start"))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": None, "cache_read_input_tokens": None, "output_tokens": 15},
    }
    tracker.inspect(sse(json.dumps(delta), "message_delta"))
    assert tracker.usage == {"input_tokens": 10, "output_tokens": 15}


def test_anthropic_message_start_after_the_first_is_dropped_once_its_usage_is_taken():
    tracker = ANTHROPIC.tracker()
    assert tracker.inspect(sse(json.dumps(MESSAGE_START), "message_start")) is Verdict.FORWARD
    tracker.usage = None  # the relay counted the first call's usage: the next call begins
    second = {
        "type": "message_start",
        "message": {
            "id": "msg_2",
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 8, "output_tokens": 1},
        },
    }
    assert tracker.inspect(sse(json.dumps(second), "message_start")) is Verdict.DROP
    assert tracker.inspect(sse(json.dumps(second))) is Verdict.DROP  # named by its type only
    assert tracker.skipped == 0  # dropped by design, not malformed
    tracker.inspect(sse(message_delta("end_turn"), "message_delta"))
    assert ANTHROPIC.tokens(tracker.usage) == {"input": 38, "output": 15, "cached": 8}


@pytest.mark.parametrize(
    ("payload", "verdict"),
    [
        ({"type": "message_stop"}, Verdict.END),
        ({"type": "error", "error": {"type": "api_error", "message": "x"}}, Verdict.END_WITH_ERROR),
        ({"type": "ping"}, Verdict.FORWARD),
        (BLOCK_DELTA, Verdict.FORWARD),
    ],
    ids=["message_stop", "error", "ping", "delta"],
)
def test_anthropic_event_without_an_event_field_is_judged_by_its_type(payload, verdict):
    assert ANTHROPIC.tracker().inspect(sse(json.dumps(payload))) is verdict


def test_anthropic_event_field_wins_over_the_data_type():
    stop = sse(json.dumps({"type": "content_block_delta"}), "message_stop")
    assert ANTHROPIC.tracker().inspect(stop) is Verdict.END


def test_anthropic_error_event_whose_data_is_not_json_still_ends_the_stream():
    assert ANTHROPIC.tracker().inspect(sse("Overloaded", "error")) is Verdict.END_WITH_ERROR


def test_anthropic_message_stop_ends_the_stream():
    stop = sse(json.dumps({"type": "message_stop"}), "message_stop")
    assert ANTHROPIC.tracker().inspect(stop) is Verdict.END


def test_anthropic_error_event_ends_the_stream_with_error():
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert ANTHROPIC.tracker().inspect(sse(json.dumps(error), "error")) is Verdict.END_WITH_ERROR


def test_anthropic_ping_is_forwarded():
    assert ANTHROPIC.tracker().inspect(sse('{"type": "ping"}', "ping")) is Verdict.FORWARD


@pytest.mark.parametrize("data", ["not json", "[1]", "null", '"s"'], ids=repr)
def test_anthropic_data_that_is_not_a_json_object_is_skipped_and_counted(data):
    tracker = ANTHROPIC.tracker()
    assert tracker.inspect(sse(data, "content_block_delta")) is Verdict.SKIP
    assert tracker.skipped == 1


def test_anthropic_comment_only_events_are_skipped_but_not_counted():
    tracker = ANTHROPIC.tracker()
    assert tracker.inspect(SSEEvent(raw=b": ping\n\n")) is Verdict.SKIP
    assert tracker.skipped == 0


# --- dialect constants agree with the trackers -----------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_completion_trailer_is_one_event_that_ends_the_stream(dialect: Dialect) -> None:
    event = one_event(dialect.completion_trailer)
    assert dialect.tracker().inspect(event) is Verdict.END


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_heartbeat_is_a_comment_that_no_tracker_forwards(dialect: Dialect) -> None:
    assert dialect.heartbeat == b": ping\n\n"
    event = one_event(dialect.heartbeat)
    assert event.data is None
    assert event.event is None
    assert dialect.tracker().inspect(event) is Verdict.SKIP


def test_each_api_names_its_endpoint():
    assert (OPENAI_CHAT.endpoint, ANTHROPIC_MESSAGES.endpoint) == (
        "POST /v1/chat/completions",
        "POST /v1/messages",
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_trackers_start_empty(dialect: Dialect) -> None:
    tracker = dialect.tracker()
    assert isinstance(tracker, StreamTracker)
    assert (tracker.complete, tracker.skipped, tracker.usage) == (False, 0, None)


# --- error frames and bodies (contract sections 4 and 5) -------------------------------------

SAMPLE = StreamError(type=ErrorCategory.TIMEOUT, message="too slow", code="idle_timeout")


def test_openai_error_event_is_the_seed_shape_and_the_sdk_shape_in_one_object():
    assert OPENAI.error_event(SAMPLE) == (
        b"event: error\n"
        b'data: {"type":"timeout","message":"too slow","error":{"message":"too slow",'
        b'"type":"timeout","code":"idle_timeout","param":null}}\n\n'
    )


def test_openai_error_body_is_the_sdk_shape_with_openais_type_and_the_category_beside_it():
    error = make_stream_error(
        UpstreamBadRequest("bad", upstream_code="context_length_exceeded", param="messages")
    )
    assert json.loads(OPENAI.error_body(error)) == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
            "param": "messages",
            "category": "api_error",
        }
    }
    assert OPENAI.error_body(SAMPLE) == (
        b'{"error":{"message":"too slow","type":"timeout_error","code":"idle_timeout",'
        b'"param":null,"category":"timeout"}}'
    )


#: Every `error.type` the OpenAI API uses (and SDKs and tools switch on).
OPENAI_ERROR_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "server_error",
    "timeout_error",
}


@pytest.mark.parametrize(
    ("error", "openai_type"),
    [
        (errors_module.InvalidRequest(), "invalid_request_error"),
        (errors_module.UnsupportedMediaType(), "invalid_request_error"),
        (errors_module.RequestTooLarge(), "invalid_request_error"),
        (errors_module.Unauthorized(), "authentication_error"),
        (errors_module.UnknownModel(), "not_found_error"),
        (errors_module.UnsupportedEndpoint(), "not_found_error"),
        (errors_module.UpstreamRateLimited(), "rate_limit_error"),
        (errors_module.KeyRateLimited(), "rate_limit_error"),
        (errors_module.GatewayOverloaded(), "server_error"),
        (errors_module.UpstreamServerError(), "server_error"),
        (errors_module.UpstreamAuthFailed(), "server_error"),
        (errors_module.ConnectFailed(), "server_error"),
        (errors_module.FirstByteTimeout(), "timeout_error"),
    ],
)
def test_openai_error_types_are_openais_vocabulary(
    error: errors_module.GatewayError, openai_type: str
) -> None:
    body = json.loads(OPENAI.error_body(make_stream_error(error)))["error"]
    assert (body["type"], body["category"]) == (openai_type, error.category.value)


def test_every_gateway_error_has_an_openai_type_of_openais_vocabulary() -> None:
    for cls in vars(errors_module).values():
        if isinstance(cls, type) and issubclass(cls, errors_module.GatewayError):
            assert openai_error_type(make_stream_error(cls())) in OPENAI_ERROR_TYPES, cls


def test_anthropic_error_event_and_body_are_the_sdk_shape():
    assert ANTHROPIC.error_event(SAMPLE) == (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"timeout_error","message":"too slow"}}\n\n'
    )
    assert ANTHROPIC.error_body(SAMPLE) == (
        b'{"type":"error","error":{"type":"timeout_error","message":"too slow"}}'
    )


@pytest.mark.parametrize(
    ("error", "anthropic_type"),
    [
        (FirstByteTimeout(), "timeout_error"),
        (UpstreamRateLimited(), "rate_limit_error"),
        (GatewayOverloaded(), "overloaded_error"),
        (ServerShutdown(), "overloaded_error"),
        (InvalidRequest(), "invalid_request_error"),
        (UpstreamBadRequest(), "invalid_request_error"),
        (UnknownModel(), "not_found_error"),
        (RequestTooLarge(), "request_too_large"),
        (UpstreamServerError(), "api_error"),
        (UpstreamAuthFailed(), "api_error"),  # the gateway's credentials: not the client's fault
        (ConnectionReset(), "api_error"),
        (UpstreamTruncated(), "api_error"),
        (ClientDisconnected(), "api_error"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, GatewayError) else value,
)
def test_anthropic_error_type_per_gateway_error(error, anthropic_type):
    assert AnthropicDialect.error_type(make_stream_error(error)) == anthropic_type


def test_every_gateway_error_maps_to_a_documented_anthropic_error_type():
    for _, cls in inspect.getmembers(errors_module, inspect.isclass):
        if issubclass(cls, GatewayError):
            assert AnthropicDialect.error_type(make_stream_error(cls())) in ANTHROPIC_ERROR_TYPES


def test_anthropic_error_type_of_an_upstream_bad_request_with_its_own_code():
    error = UpstreamBadRequest("prompt is too long", upstream_code="invalid_request_error")
    assert AnthropicDialect.error_type(make_stream_error(error)) == "invalid_request_error"


# --- the encoders, for any message -----------------------------------------------------------

#: Any text, biased towards what could break a frame: line breaks of every kind, NUL, BOM,
#: emoji, quotes, backslashes and lone surrogates.
TRICKY = st.sampled_from(["\r", "\n", "\u2028", "\u2029", "\x85", "\x00", "\ufeff"])
MESSAGES = st.text(
    st.one_of(TRICKY, st.characters(exclude_categories=()), st.sampled_from('"\\🙂:')),
    max_size=40,
)
STREAM_ERRORS = st.builds(
    StreamError,
    type=st.sampled_from(list(ErrorCategory)),
    message=MESSAGES,
    code=st.one_of(st.sampled_from(["idle_timeout", "upstream_bad_request"]), MESSAGES),
    param=st.one_of(st.none(), MESSAGES),
)


def check_single_line_ascii_json_event(frame: bytes) -> Any:
    """`frame` is one SSE `error` event with one line of ASCII JSON data; returns the JSON."""
    frame.decode("ascii")  # raises if not ASCII
    event = one_event(frame)
    assert event.event == "error"
    assert event.data is not None
    assert "\n" not in event.data  # exactly one data line
    assert frame == b"event: error\ndata: " + event.data.encode("ascii") + b"\n\n"
    return json.loads(event.data)


@settings(max_examples=300, deadline=None)
@given(STREAM_ERRORS)
def test_openai_error_event_is_one_well_formed_event_for_any_message(error: StreamError) -> None:
    data = check_single_line_ascii_json_event(OPENAI.error_event(error))
    assert data == {
        "type": error.type.value,
        "message": error.message,
        "error": {
            "message": error.message,
            "type": error.type.value,
            "code": error.code,
            "param": error.param,
        },
    }
    assert openai_sdk_would_raise(data)
    assert isinstance(data["error"], dict)
    assert isinstance(data["error"]["message"], str)


@settings(max_examples=300, deadline=None)
@given(STREAM_ERRORS)
def test_anthropic_error_event_is_one_well_formed_event_for_any_message(error: StreamError) -> None:
    data = check_single_line_ascii_json_event(ANTHROPIC.error_event(error))
    assert data == {
        "type": "error",
        "error": {"type": AnthropicDialect.error_type(error), "message": error.message},
    }


@settings(max_examples=300, deadline=None)
@given(STREAM_ERRORS)
def test_seed_sse_event_is_one_well_formed_event_for_any_message(error: StreamError) -> None:
    data = check_single_line_ascii_json_event(error.to_sse_event().encode("ascii"))
    assert data == {"type": error.type.value, "message": error.message}


@settings(max_examples=200, deadline=None)
@given(STREAM_ERRORS, st.sampled_from([OPENAI, ANTHROPIC]))
def test_error_bodies_are_single_line_ascii_json_for_any_message(error, dialect):
    body = dialect.error_body(error)
    body.decode("ascii")
    assert b"\n" not in body
    assert b"\r" not in body
    data = json.loads(body)
    assert data["error"]["message"] == error.message


@pytest.mark.parametrize(
    "payload",
    [
        '{"choices":[],"big":123456789012345678901234567890}',
        '{"choices":[],"x":NaN}',
    ],
    ids=["integer-beyond-64-bits", "nan"],
)
def test_json_that_the_fast_parser_refuses_is_still_forwarded(payload: str) -> None:
    """orjson is stricter than json; an event json accepts must not be skipped."""
    tracker = OpenAIDialect().tracker()
    event = SSEEvent(raw=f"data: {payload}\n\n".encode(), data=payload)
    assert tracker.inspect(event) is Verdict.FORWARD
    assert tracker.skipped == 0
