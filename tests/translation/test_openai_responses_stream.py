"""The Responses codec's answers: answer events written as a Responses stream and whole
response, and a Responses upstream's recorded streams and responses read as answer events."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.translation import (
    AnswerEvent,
    End,
    Failure,
    ReasoningDelta,
    Start,
    Stop,
    StopReason,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.openai_responses import CODEC
from tests.support import responses_wire as wire
from tests.translation.responses_frames import (
    CONVERSATION,
    Recorder,
    encode_all,
    payloads,
    read_all,
)

START = Start(id="chatcmpl-123", model="upstream-model", created=1700000000)
TEXT_ANSWER: list[AnswerEvent] = [
    START,
    TextDelta("Hel"),
    TextDelta("lo"),
    Usage(input=12, output=2, cached=4),
    Stop(StopReason.END_TURN),
    End(),
]
PARALLEL_CALLS: list[AnswerEvent] = [
    START,
    ToolCallStart(0, "call_a", "weather", part=0),
    ToolCallDelta(0, '{"city":', part=0),
    ToolCallStart(1, "call_b", "time", part=1),
    ToolCallDelta(1, '{"tz":"UTC"}', part=1),
    ToolCallDelta(0, '"Paris"}', part=0),
    Usage(input=20, output=9),
    Stop(StopReason.TOOL_USE),
    End(),
]


def types(found: list[dict[str, Any]]) -> list[str]:
    return [payload["type"] for payload in found]


def test_text_answer_is_a_message_item_numbered_from_zero() -> None:
    found = payloads(encode_all(TEXT_ANSWER, CONVERSATION))
    assert types(found) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [payload["sequence_number"] for payload in found] == list(range(10))
    created = found[0]["response"]
    assert created["id"] == "resp_chatcmpl123"
    assert created["model"] == "client-model"
    assert created["status"] == "in_progress"
    assert created["output"] == []
    assert created["created_at"] == 1700000000
    assert created["usage"] is None
    item_id = found[2]["item"]["id"]
    assert found[2]["item"] == {
        "id": item_id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert item_id.startswith("msg_")
    assert found[4] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
        "logprobs": [],
    }
    assert found[6]["text"] == "Hello"
    completed = found[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"] == [found[8]["item"]]
    assert found[8]["item"]["content"][0]["text"] == "Hello"
    assert completed["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 14,
    }


def test_each_delta_is_written_at_once() -> None:
    encoder = CODEC.stream_encoder(CONVERSATION)
    assert len(encoder.encode(START)) == 2
    assert types(payloads(encoder.encode(TextDelta("Hel")))) == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types(payloads(encoder.encode(TextDelta("lo")))) == ["response.output_text.delta"]
    assert encoder.encode(Usage(input=1, output=1)) == []


def test_interleaved_parallel_calls_each_get_their_whole_arguments() -> None:
    found = payloads(encode_all(PARALLEL_CALLS, CONVERSATION))
    added = [p for p in found if p["type"] == "response.output_item.added"]
    assert [(p["output_index"], p["item"]["call_id"], p["item"]["name"]) for p in added] == [
        (0, "call_a", "weather"),
        (1, "call_b", "time"),
    ]
    assert added[0]["item"]["type"] == "function_call"
    assert added[0]["item"]["arguments"] == ""
    assert added[0]["item"]["id"].startswith("fc_")
    deltas = [
        (p["output_index"], p["delta"])
        for p in found
        if p["type"] == "response.function_call_arguments.delta"
    ]
    assert deltas == [(0, '{"city":'), (1, '{"tz":"UTC"}'), (0, '"Paris"}')]
    done = {
        p["output_index"]: p["arguments"]
        for p in found
        if p["type"] == "response.function_call_arguments.done"
    }
    assert done == {0: '{"city":"Paris"}', 1: '{"tz":"UTC"}'}
    output = found[-1]["response"]["output"]
    assert [(item["call_id"], item["arguments"], item["status"]) for item in output] == [
        ("call_a", '{"city":"Paris"}', "completed"),
        ("call_b", '{"tz":"UTC"}', "completed"),
    ]


def test_text_then_tool_call_closes_the_message_first() -> None:
    events = [
        START,
        TextDelta("Let me look.", part=0),
        ToolCallStart(0, "call_a", "weather", part=1),
        ToolCallDelta(0, "{}", part=1),
        Stop(StopReason.TOOL_USE),
        End(),
    ]
    kinds = types(payloads(encode_all(events, CONVERSATION)))
    assert kinds.index("response.output_item.done") < kinds.index("response.output_item.added", 3)


def test_reasoning_is_a_reasoning_item_with_a_summary() -> None:
    events = [
        START,
        ReasoningDelta("Thinking", part=0),
        ReasoningDelta(" hard", part=0),
        ReasoningDelta("", part=0, signature="sig-1"),
        TextDelta("42", part=1),
        Usage(input=3, output=30, reasoning=20),
        Stop(StopReason.END_TURN),
        End(),
    ]
    found = payloads(encode_all(events, CONVERSATION))
    assert types(found)[2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    item = found[8]["item"]
    assert item["type"] == "reasoning"
    assert item["id"].startswith("rs_")
    assert item["summary"] == [{"type": "summary_text", "text": "Thinking hard"}]
    assert item["encrypted_content"] == "sig-1"
    response = found[-1]["response"]
    assert [entry["type"] for entry in response["output"]] == ["reasoning", "message"]
    assert response["usage"]["output_tokens_details"] == {"reasoning_tokens": 20}


@pytest.mark.parametrize(
    ("reason", "incomplete"),
    [(StopReason.MAX_TOKENS, "max_output_tokens"), (StopReason.CONTENT_FILTER, "content_filter")],
)
def test_an_answer_cut_short_ends_incomplete_with_its_reason(
    reason: StopReason, incomplete: str
) -> None:
    events = [START, TextDelta("Once upon"), Usage(input=5, output=2), Stop(reason), End()]
    found = payloads(encode_all(events, CONVERSATION))
    assert found[-1]["type"] == "response.incomplete"
    response = found[-1]["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": incomplete}
    assert response["output"][0]["status"] == "incomplete"
    assert response["usage"]["output_tokens"] == 2


@pytest.mark.parametrize(
    "reason", [StopReason.TOOL_USE, StopReason.STOP_SEQUENCE, StopReason.REFUSAL]
)
def test_other_stops_complete(reason: StopReason) -> None:
    found = payloads(encode_all([START, TextDelta("x"), Stop(reason), End()], CONVERSATION))
    assert found[-1]["type"] == "response.completed"
    assert found[-1]["response"]["usage"] is None  # the upstream reported none


def test_failure_is_the_dialects_error_event_numbered_after_the_last() -> None:
    encoder = CODEC.stream_encoder(CONVERSATION)
    frames = [*encoder.encode(START), *encoder.encode(TextDelta("Hi"))]
    failure = Failure("Overloaded", code="overloaded_error", category="rate_limit")
    error = encoder.encode(failure)
    assert len(error) == 1
    assert error[0].startswith(b"event: error\n")
    (payload,) = payloads(error)
    assert payload["sequence_number"] == len(frames)
    assert payload["message"] == "Overloaded"
    assert payload["code"] == "overloaded_error"
    assert payload["error"]["code"] == "overloaded_error"
    assert encoder.encode(End()) == []


def test_a_delta_after_its_part_closed_opens_a_new_item() -> None:
    events = [
        START,
        TextDelta("a", part=0),
        ReasoningDelta("r", part=1),
        TextDelta("b", part=0),
        Stop(StopReason.END_TURN),
        End(),
    ]
    output = payloads(encode_all(events, CONVERSATION))[-1]["response"]["output"]
    assert [(item["type"], item.get("content")) for item in output][::2] == [
        ("message", [{"type": "output_text", "text": "a", "annotations": [], "logprobs": []}]),
        ("message", [{"type": "output_text", "text": "b", "annotations": [], "logprobs": []}]),
    ]


def test_the_response_echoes_the_request() -> None:
    conversation = CODEC.decode_request(
        {
            "model": "client-model",
            "input": "hi",
            "instructions": "Be brief.",
            "temperature": 0.5,
            "max_output_tokens": 100,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_object"}},
        }
    )
    created = payloads(encode_all([START], conversation))[0]["response"]
    assert created["instructions"] == "Be brief."
    assert created["temperature"] == 0.5
    assert created["max_output_tokens"] == 100
    assert created["tool_choice"] == {"type": "function", "name": "f"}
    assert created["tools"][0]["name"] == "f"
    assert created["text"] == {"format": {"type": "json_object"}}
    assert created["store"] is False


# -- reading a Responses upstream ------------------------------------------------------------


def test_recorded_text_stream_decodes_to_text_usage_and_end() -> None:
    found = read_all(wire.responses_events(["The ", "fox."]))
    assert found == [
        Start(id=wire.RESPONSE_ID, model="fake-model", created=wire.CREATED_AT),
        TextDelta("The ", part=0),
        TextDelta("fox.", part=0),
        Usage(input=9, output=2, cached=0, reasoning=0),
        Stop(StopReason.END_TURN),
        End(),
    ]


def test_recorded_parallel_calls_decode_with_their_indices() -> None:
    output = [
        {"type": "function_call", "call_id": "call_a", "name": "weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_b", "name": "time", "arguments": "{}"},
    ]
    recorder = (
        Recorder()
        .created()
        .call(0, "call_a", "weather", '{"ci', 'ty":"Paris"}')
        .call(1, "call_b", "time", '{"tz":"UTC"}')
        .terminal("response.completed", output, usage=wire.usage(7))
    )
    found = read_all(recorder.frames)
    assert found[1:] == [
        ToolCallStart(0, "call_a", "weather", part=0),
        ToolCallDelta(0, '{"ci', part=0),
        ToolCallDelta(0, 'ty":"Paris"}', part=0),
        ToolCallStart(1, "call_b", "time", part=1),
        ToolCallDelta(1, '{"tz":"UTC"}', part=1),
        Usage(input=9, output=7, cached=0, reasoning=0),
        Stop(StopReason.TOOL_USE),
        End(),
    ]


def test_arguments_sent_only_whole_are_one_delta() -> None:
    item = {"id": "fc_0", "type": "function_call", "call_id": "c", "name": "f", "arguments": ""}
    recorder = (
        Recorder()
        .created()
        .add("response.output_item.added", output_index=0, item=item)
        .add(
            "response.function_call_arguments.done",
            item_id="fc_0",
            output_index=0,
            arguments='{"x":1}',
        )
        .add("response.output_item.done", output_index=0, item={**item, "arguments": '{"x":1}'})
        .terminal("response.completed", [item])
    )
    assert read_all(recorder.frames)[1:3] == [
        ToolCallStart(0, "c", "f", part=0),
        ToolCallDelta(0, '{"x":1}', part=0),
    ]


def test_recorded_reasoning_summaries_decode_as_reasoning() -> None:
    where = {"item_id": "rs_1", "output_index": 0}
    recorder = (
        Recorder()
        .created()
        .add(
            "response.output_item.added",
            output_index=0,
            item={"id": "rs_1", "type": "reasoning", "summary": []},
        )
        .add("response.reasoning_summary_text.delta", **where, summary_index=0, delta="First")
        .add("response.reasoning_summary_text.delta", **where, summary_index=1, delta="Second")
        .add("response.reasoning_text.delta", **where, content_index=0, delta="raw")
        .terminal(
            "response.completed",
            [],
            usage={
                **wire.usage(30),
                "input_tokens_details": {"cached_tokens": 5},
                "output_tokens_details": {"reasoning_tokens": 25},
            },
        )
    )
    found = read_all(recorder.frames)
    assert found[1:4] == [
        ReasoningDelta("First", part=0),
        ReasoningDelta("\n\nSecond", part=0),
        ReasoningDelta("raw", part=0),
    ]
    assert found[4] == Usage(input=9, output=30, cached=5, reasoning=25)


@pytest.mark.parametrize(
    ("reason", "stop"),
    [
        ("max_output_tokens", StopReason.MAX_TOKENS),
        ("content_filter", StopReason.CONTENT_FILTER),
    ],
)
def test_recorded_incomplete_stream_stops_by_its_reason(reason: str, stop: StopReason) -> None:
    frames = wire.responses_events(["a"], terminal="response.incomplete")
    response_frame = Recorder().terminal(
        "response.incomplete", [], incomplete_details={"reason": reason}, usage=wire.usage(1)
    )
    found = read_all([*frames[:-1], *response_frame.frames])
    assert found[-2:] == [Stop(stop), End()]


def test_a_refusal_is_text_and_stops_as_a_refusal() -> None:
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    recorder = (
        Recorder()
        .created()
        .add("response.refusal.delta", **where, delta="I can't help with that.")
        .terminal("response.completed", [])
    )
    found = read_all(recorder.frames)
    assert found[1:] == [
        TextDelta("I can't help with that.", part=0),
        Stop(StopReason.REFUSAL),
        End(),
    ]


def test_upstream_failures_decode_as_failure() -> None:
    failed = read_all([*wire.responses_events(["a"], terminal=None), wire.failed_event(9)])
    assert failed[-1] == Failure("The model had a server error.", code="server_error")
    limited = read_all([wire.responses_error_event(0, "Slow down", code="rate_limit_exceeded")])
    assert limited == [Failure("Slow down", code="rate_limit_exceeded", category="rate_limit")]


def test_a_stream_without_its_terminal_event_never_ends() -> None:
    found = read_all(wire.responses_events(["a", "b"], terminal=None))
    assert not any(isinstance(event, End | Stop) for event in found)


def test_unreadable_events_are_skipped() -> None:
    frames = wire.responses_events(["a"])
    frames.insert(4, b"event: response.output_text.delta\ndata: {not json\n\n")
    frames.insert(4, b": keep-alive\n\n")
    frames.insert(4, wire.responses_event("response.web_search_call.searching", 99))
    assert read_all(frames) == read_all(wire.responses_events(["a"]))


def test_events_after_the_end_say_nothing() -> None:
    frames = wire.responses_events(["a"])
    assert read_all([*frames, *frames]) == read_all(frames)


# -- round trips and whole answers -----------------------------------------------------------


def without_ids(events: list[AnswerEvent]) -> list[AnswerEvent]:
    return [Start("", "", None) if isinstance(event, Start) else event for event in events]


ANSWERS = [
    pytest.param(TEXT_ANSWER, id="text"),
    pytest.param(
        [
            START,
            ReasoningDelta("Plan", part=0),
            TextDelta("Calling.", part=1),
            ToolCallStart(0, "call_a", "weather", part=2),
            ToolCallDelta(0, '{"city":"Paris"}', part=2),
            ToolCallStart(1, "call_b", "time", part=3),
            ToolCallDelta(1, "{}", part=3),
            Usage(input=20, output=9, cached=2, cache_write=0, reasoning=4),
            Stop(StopReason.TOOL_USE),
            End(),
        ],
        id="reasoning-text-calls",
    ),
    pytest.param(
        [
            START,
            TextDelta("Once"),
            Usage(input=1, output=1, cached=0, cache_write=0, reasoning=0),
            Stop(StopReason.MAX_TOKENS),
            End(),
        ],
        id="max-tokens",
    ),
]


def full_usage(events: list[AnswerEvent]) -> list[AnswerEvent]:
    """The usage as a Responses answer reports it (every count, zero where not said)."""
    return [
        Usage(
            input=e.input or 0,
            output=e.output or 0,
            cached=e.cached or 0,
            cache_write=e.cache_write or 0,
            reasoning=e.reasoning or 0,
        )
        if isinstance(e, Usage)
        else e
        for e in events
    ]


def folded(events: list[AnswerEvent]) -> list[AnswerEvent]:
    """The events as a whole answer has them: one delta per content part."""
    found: list[AnswerEvent] = []
    for event in events:
        last = found[-1] if found else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            found[-1] = TextDelta(last.text + event.text, last.part)
        elif isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta):
            found[-1] = ReasoningDelta(last.text + event.text, last.part)
        elif isinstance(event, ToolCallDelta) and isinstance(last, ToolCallDelta):
            found[-1] = ToolCallDelta(last.index, last.arguments + event.arguments, last.part)
        else:
            found.append(event)
    return found


@pytest.mark.parametrize("events", ANSWERS)
def test_stream_round_trip_gives_the_same_events(events: list[AnswerEvent]) -> None:
    decoded = read_all(encode_all(events, CONVERSATION))
    assert without_ids(decoded) == without_ids(full_usage(events))


@pytest.mark.parametrize("events", ANSWERS)
def test_whole_answer_round_trip_gives_the_same_events(events: list[AnswerEvent]) -> None:
    answer = CODEC.encode_answer(events, CONVERSATION)
    assert answer["object"] == "response"
    assert answer["model"] == "client-model"
    assert without_ids(CODEC.decode_answer(answer)) == without_ids(folded(full_usage(events)))


def test_whole_answer_is_the_streams_final_response() -> None:
    frames = payloads(encode_all(PARALLEL_CALLS, CONVERSATION))
    streamed = frames[-1]["response"]
    whole = CODEC.encode_answer(PARALLEL_CALLS, CONVERSATION)
    for response in (streamed, whole):
        response.pop("completed_at")
    assert whole == streamed


def test_whole_failed_answer_says_its_error() -> None:
    answer = CODEC.encode_answer([START, Failure("boom", code="server_error")], CONVERSATION)
    assert answer["status"] == "failed"
    assert answer["error"] == {"code": "server_error", "message": "boom"}
    assert CODEC.decode_answer(answer)[-1] == Failure("boom", code="server_error")


def test_recorded_whole_response_decodes() -> None:
    response = wire.response_object("completed", "Hello!", output_tokens=2)
    assert CODEC.decode_answer(response) == [
        Start(wire.RESPONSE_ID, "fake-model", wire.CREATED_AT),
        TextDelta("Hello!", part=0),
        Usage(input=9, output=2, cached=0, reasoning=0),
        Stop(StopReason.END_TURN),
        End(),
    ]
