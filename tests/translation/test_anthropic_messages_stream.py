"""The Messages codec's streams: recorded Anthropic streams decoded into answer events, answer
events encoded into Messages frames, and the two back to back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.streaming import SSEEvent
from gateway.translation import (
    AnswerEvent,
    Conversation,
    End,
    Failure,
    Message,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.anthropic_messages import CODEC
from tests.translation.anthropic_recordings import (
    CUT_AFTER_STOP,
    CUT_MID_ANSWER,
    ERROR,
    MESSAGE_STOP,
    REDACTED,
    TEXT,
    THINKING,
    TOOLS,
    block_start,
    block_stop,
    delta,
    json_delta,
    message_delta,
    message_start,
    sse_events,
    stop_stream,
    text,
)

MSG = "msg_01XFDUDYJgAACzvnptvVoYEL"
MODEL = "claude-sonnet-4-5-20250929"


def decode(stream: bytes) -> list[AnswerEvent]:
    decoder = CODEC.stream_decoder()
    events = [answer for event in sse_events(stream) for answer in decoder.feed(event)]
    return events + decoder.finish()


def encode(events: list[AnswerEvent], model: str = "claude-client-name") -> bytes:
    conversation = Conversation(model=model, messages=(Message("user", ()),))
    encoder = CODEC.stream_encoder(conversation)
    return b"".join(frame for event in events for frame in encoder.encode(event))


def payloads(stream: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """Each frame's `event:` name and its JSON (which must be its `type`)."""
    out = []
    for event in sse_events(stream):
        assert event.data is not None
        payload = json.loads(event.data)
        assert payload["type"] == event.event
        out.append((event.event, payload))
    return out


# --- decoding ------------------------------------------------------------------------------


CACHED_START = Usage(input=1125, output=1, cached=1000, cache_write=100)

DECODED: list[tuple[str, bytes, list[AnswerEvent]]] = [
    (
        "text with cache reads and writes",
        TEXT,
        [
            Start(MSG, MODEL),
            CACHED_START,
            TextDelta("Hello", 0),
            TextDelta(", world", 0),
            Usage(input=1125, output=15, cached=1000, cache_write=100),
            Stop(StopReason.END_TURN),
            End(),
        ],
    ),
    (
        "text and two tool calls",
        TOOLS,
        [
            Start(MSG, MODEL),
            Usage(input=472, output=2),
            TextDelta("Checking both.", 0),
            ToolCallStart(0, "toolu_01A", "get_weather", 1),
            ToolCallDelta(0, '{"location": "San Fra', 1),
            ToolCallDelta(0, 'ncisco, CA"}', 1),
            ToolCallStart(1, "toolu_01B", "get_time", 2),
            ToolCallDelta(1, '{"tz": "PST"}', 2),
            Usage(input=472, output=89),
            Stop(StopReason.TOOL_USE),
            End(),
        ],
    ),
    (
        "signed thinking then text, input kept from message_start",
        THINKING,
        [
            Start(MSG, MODEL),
            Usage(input=40, output=3),
            ReasoningDelta("Let me think", 0),
            ReasoningDelta(" about 27 * 453.", 0),
            ReasoningDelta("", 0, signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3h"),
            TextDelta("27 * 453 = 12231", 1),
            Usage(input=40, output=120),
            Stop(StopReason.END_TURN),
            End(),
        ],
    ),
    (
        "a redacted thinking block is skipped and not counted as a part",
        REDACTED,
        [
            Start(MSG, MODEL),
            Usage(input=40, output=3),
            TextDelta("Done.", 0),
            Usage(input=40, output=9),
            Stop(StopReason.END_TURN),
            End(),
        ],
    ),
    (
        "an upstream error event is a failure in the rate-limit category",
        ERROR,
        [
            Start(MSG, MODEL),
            Usage(input=10, output=1),
            TextDelta("Partial", 0),
            Failure("Overloaded", code="overloaded_error", category="rate_limit"),
        ],
    ),
    (
        "a stream cut after its stop reason ends at the body's end",
        CUT_AFTER_STOP,
        [
            Start(MSG, MODEL),
            Usage(input=10, output=1),
            TextDelta("All of it", 0),
            Usage(input=10, output=3),
            Stop(StopReason.END_TURN),
            End(),
        ],
    ),
    (
        "a stream cut mid-answer does not end",
        CUT_MID_ANSWER,
        [Start(MSG, MODEL), Usage(input=10, output=1), TextDelta("Half of", 0)],
    ),
]


@pytest.mark.parametrize(
    ("stream", "expected"), [c[1:] for c in DECODED], ids=[c[0] for c in DECODED]
)
def test_recorded_streams_decode_to_answer_events(
    stream: bytes, expected: list[AnswerEvent]
) -> None:
    assert decode(stream) == expected


@pytest.mark.parametrize(
    ("reason", "sequence", "stop"),
    [
        ("end_turn", None, Stop(StopReason.END_TURN)),
        ("max_tokens", None, Stop(StopReason.MAX_TOKENS)),
        ("tool_use", None, Stop(StopReason.TOOL_USE)),
        ("stop_sequence", "\n\nHuman:", Stop(StopReason.STOP_SEQUENCE, "\n\nHuman:")),
        ("refusal", None, Stop(StopReason.REFUSAL)),
        ("pause_turn", None, Stop(StopReason.END_TURN)),
        ("model_context_window_exceeded", None, Stop(StopReason.MAX_TOKENS)),
        ("a_future_reason", None, Stop(StopReason.END_TURN)),
    ],
)
def test_every_stop_reason_is_decoded(reason: str, sequence: str | None, stop: Stop) -> None:
    events = decode(stop_stream(reason, sequence))
    assert events[-2:] == [stop, End()]


def test_other_error_types_are_api_errors() -> None:
    error = (
        b'event: error\ndata: {"type":"error",'
        b'"error":{"type":"api_error","message":"Internal"}}\n\n'
    )
    assert decode(error) == [Failure("Internal", code="api_error", category="api_error")]


def test_nothing_is_decoded_after_the_end_or_from_what_cannot_be_read() -> None:
    decoder = CODEC.stream_decoder()
    unreadable = [
        SSEEvent(b": keep-alive\n\n"),
        SSEEvent(b"", data="{this is not json", event="content_block_delta"),
        SSEEvent(b"", data='{"type":"content_block_delta","index":7,"delta":{}}'),
        SSEEvent(
            b"",
            data='{"type":"content_block_start","index":0,"content_block":'
            '{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}',
        ),
        SSEEvent(
            b"",
            data='{"type":"content_block_delta","index":0,"delta":'
            '{"type":"input_json_delta","partial_json":"{}"}}',
        ),
    ]
    assert [decoder.feed(event) for event in unreadable] == [[]] * len(unreadable)
    for event in sse_events(TEXT):
        decoder.feed(event)
    assert decoder.feed(sse_events(TEXT)[0]) == []
    assert decoder.finish() == []


def test_an_event_named_only_by_its_type_is_read() -> None:
    decoder = CODEC.stream_decoder()
    assert decoder.feed(SSEEvent(b"", data='{"type":"message_stop"}')) == [End()]


# --- encoding ------------------------------------------------------------------------------


def test_a_recorded_text_stream_is_written_back_byte_for_byte_but_its_ping() -> None:
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    assert encode(decode(TEXT), model=MODEL) == TEXT.replace(ping, b"")


def test_tool_calls_are_written_back_as_tool_use_blocks() -> None:
    assert encode(decode(TOOLS), model=MODEL) == TOOLS.replace(
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
        b'"delta":{"type":"input_json_delta","partial_json":""}}\n\n',
        b"",
    )


OPENAI_LIKE: list[AnswerEvent] = [
    Start("chatcmpl-9xYz", "gpt-4o-2024-08-06", created=1700000000),
    ReasoningDelta("Two lookups.", 0),
    TextDelta("", 1),
    TextDelta("On it.", 1),
    ToolCallStart(0, "call_a", "get_weather", 2),
    ToolCallDelta(0, '{"city":', 2),
    ToolCallStart(1, "call_b", "get_time", 3),
    ToolCallDelta(1, '{"tz":"PST"}', 3),
    ToolCallDelta(0, '"Paris"}', 2),  # interleaved: call 0's block is closed already
    Stop(StopReason.TOOL_USE),
    Usage(input=120, output=33, cached=100, reasoning=8),
    End(),
]


def test_events_of_another_api_are_written_as_anthropic_frames() -> None:
    def tool(index: int, ident: str, name: str) -> bytes:
        return block_start(index, {"type": "tool_use", "id": ident, "name": name, "input": {}})

    final_usage = {
        "input_tokens": 20,
        "cache_read_input_tokens": 100,
        "output_tokens": 33,
        "output_tokens_details": {"thinking_tokens": 8},
    }
    assert encode(OPENAI_LIKE) == b"".join(
        [
            message_start(
                {"input_tokens": 0, "output_tokens": 0},
                id="msg_chatcmpl9xYz",
                model="claude-client-name",
            ),
            block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, {"type": "thinking_delta", "thinking": "Two lookups."}),
            block_stop(0),
            block_start(1, {"type": "text", "text": ""}),
            text(1, "On it."),
            block_stop(1),
            tool(2, "call_a", "get_weather"),
            json_delta(2, '{"city":'),
            block_stop(2),
            tool(3, "call_b", "get_time"),
            json_delta(3, '{"tz":"PST"}'),
            json_delta(2, '"Paris"}'),  # to its own block, closed by now
            block_stop(3),
            message_delta("tool_use", final_usage),
            MESSAGE_STOP,
        ]
    )


def test_each_event_is_written_at_once_and_stop_and_usage_wait_for_the_end() -> None:
    encoder = CODEC.stream_encoder(Conversation(model="m", messages=()))
    assert encoder.encode(Start("x", "y")) == []  # message_start waits for what comes next
    assert encoder.encode(Usage(input=7)) == []
    opening = encoder.encode(TextDelta("a"))
    assert [name for name, _ in payloads(b"".join(opening))] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]
    assert json.loads(sse_events(opening[0])[0].data or "")["message"]["usage"] == {
        "input_tokens": 7,
        "output_tokens": 0,
    }
    assert len(encoder.encode(TextDelta("b"))) == 1
    assert encoder.encode(Stop(StopReason.MAX_TOKENS)) == []
    assert encoder.encode(Usage(input=7, output=2)) == []
    names = [name for name, _ in payloads(b"".join(encoder.encode(End())))]
    assert names == ["content_block_stop", "message_delta", "message_stop"]
    assert encoder.encode(TextDelta("late")) == []


@pytest.mark.parametrize(
    ("stop", "delta"),
    [
        (Stop(StopReason.END_TURN), {"stop_reason": "end_turn", "stop_sequence": None}),
        (Stop(StopReason.MAX_TOKENS), {"stop_reason": "max_tokens", "stop_sequence": None}),
        (Stop(StopReason.TOOL_USE), {"stop_reason": "tool_use", "stop_sequence": None}),
        (
            Stop(StopReason.STOP_SEQUENCE, "END"),
            {"stop_reason": "stop_sequence", "stop_sequence": "END"},
        ),
        (Stop(StopReason.STOP_SEQUENCE), {"stop_reason": "stop_sequence", "stop_sequence": None}),
        (Stop(StopReason.REFUSAL), {"stop_reason": "refusal", "stop_sequence": None}),
        (Stop(StopReason.CONTENT_FILTER), {"stop_reason": "refusal", "stop_sequence": None}),
        (None, {"stop_reason": "end_turn", "stop_sequence": None}),
    ],
)
def test_every_stop_reason_is_encoded(stop: Stop | None, delta: dict[str, Any]) -> None:
    events: list[AnswerEvent] = [Start("s", "m"), TextDelta("t"), *([stop] if stop else []), End()]
    frames = payloads(encode(events))
    assert frames[-2][1]["delta"] == delta


def test_an_answer_of_tool_calls_without_a_stop_reason_stops_for_tool_use() -> None:
    frames = payloads(encode([Start("s", "m"), ToolCallStart(0, "c", "f"), End()]))
    assert frames[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_a_signature_ends_a_thinking_block_as_a_signature_delta() -> None:
    frames = payloads(
        encode([Start("s", "m"), ReasoningDelta("hm", 0), ReasoningDelta("", 0, "sig"), End()])
    )
    assert [p["delta"] for name, p in frames if name == "content_block_delta"] == [
        {"type": "thinking_delta", "thinking": "hm"},
        {"type": "signature_delta", "signature": "sig"},
    ]


def test_late_text_of_a_closed_part_opens_a_new_text_block() -> None:
    events: list[AnswerEvent] = [
        Start("s", "m"),
        TextDelta("a", 0),
        ToolCallStart(0, "c", "f", 1),
        TextDelta("b", 0),
        End(),
    ]
    starts = [p for name, p in payloads(encode(events)) if name == "content_block_start"]
    assert [(p["index"], p["content_block"]["type"]) for p in starts] == [
        (0, "text"),
        (1, "tool_use"),
        (2, "text"),
    ]


def test_a_failure_is_the_dialects_error_event_and_ends_the_stream() -> None:
    encoder = CODEC.stream_encoder(Conversation(model="m", messages=()))
    encoder.encode(Start("s", "m"))
    encoder.encode(TextDelta("partial"))
    failure = encoder.encode(Failure("Overloaded", code="overloaded_error", category="rate_limit"))
    assert failure == [
        b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error",'
        b'"message":"Overloaded"}}\n\n'
    ]
    assert encoder.encode(End()) == []
    other = CODEC.stream_encoder(Conversation(model="m", messages=()))
    assert other.encode(Failure("boom", category="not-a-category")) == [
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"boom"}}\n\n'
    ]


# --- both ways -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [TEXT, TOOLS, THINKING, REDACTED, CUT_AFTER_STOP, stop_stream("stop_sequence", "###")],
    ids=["text", "tools", "thinking", "redacted", "cut-after-stop", "stop-sequence"],
)
def test_decoding_what_was_encoded_gives_the_same_events(stream: bytes) -> None:
    events = decode(stream)
    assert decode(encode(events, model=MODEL)) == events


def test_events_of_another_api_survive_encoding_and_decoding() -> None:
    again = decode(encode(OPENAI_LIKE))
    assert again == [
        Start("msg_chatcmpl9xYz", "claude-client-name"),
        Usage(input=0, output=0),
        ReasoningDelta("Two lookups.", 0),
        TextDelta("On it.", 1),
        ToolCallStart(0, "call_a", "get_weather", 2),
        ToolCallDelta(0, '{"city":', 2),
        ToolCallStart(1, "call_b", "get_time", 3),
        ToolCallDelta(1, '{"tz":"PST"}', 3),
        ToolCallDelta(0, '"Paris"}', 2),
        Usage(input=120, output=33, cached=100, reasoning=8),
        Stop(StopReason.TOOL_USE),
        End(),
    ]


def test_an_encoded_failure_decodes_as_a_failure_of_its_category() -> None:
    events = decode(ERROR)
    again = decode(encode(events, model=MODEL))
    assert again[:-1] == events[:-1]
    assert again[-1] == Failure("Overloaded", code="rate_limit_error", category="rate_limit")


# -- the decoder's reading of a delta by its fields only ---------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.just(0.0),
    st.text(max_size=4),
    st.just([1]),
    st.just({"a": 1}),
)
_delta_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["text_delta", "input_json_delta", "thinking_delta", "signature_delta", "x"]
        )
        | _values,
        "text": _values,
        "partial_json": _values,
        "thinking": _values,
        "signature": _values,
    },
)
_block_deltas = st.fixed_dictionaries(
    {"type": st.just("content_block_delta")},
    optional={"index": st.sampled_from([0, 1, 2]) | _values, "delta": _delta_fields | _values},
)
#: JSON text the typed reading may refuse where the whole reading does not (or both refuse).
_odd_json = st.sampled_from(
    [
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\\ud800"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},'
        '"index":1}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a",'
        '"text":"b"}}',
        '{"type":"content_block_delta","index":NaN,"delta":{"type":"text_delta","text":"a"}}',
        '{"type":"content_block_delta","index":1e400,"delta":{}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}',
        '{"type":"content_block_delta","index":99999999999999999999999,"delta":null}',
        "[1, 2]",
        "",
    ]
)
_OPENING = [
    block_start(0, {"type": "text", "text": ""}),
    block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
    block_start(2, {"type": "thinking", "thinking": "", "signature": ""}),
]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_block_deltas.map(json.dumps) | _odd_json, min_size=1, max_size=3))
def test_a_named_delta_reads_as_the_whole_payloads_reading_does(payloads: list[str]) -> None:
    """A `content_block_delta` is read by its fields only; the same payload without its
    `event:` line is read whole: both say the same events, whatever the payload holds."""
    named, unnamed = CODEC.stream_decoder(), CODEC.stream_decoder()
    for event in sse_events(b"".join(_OPENING)):
        assert named.feed(event) == unnamed.feed(event)
    for data in payloads:
        by_fields = named.feed(SSEEvent(b"", data, "content_block_delta"))
        assert by_fields == unnamed.feed(SSEEvent(b"", data, None))
