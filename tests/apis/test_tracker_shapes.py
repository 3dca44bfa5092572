"""The trackers' fast reading of an event (`shape_reader`: only the fields they look at) decides
exactly what the judge (`loads_object`, the whole event parsed) decides, for every event: the
verdict, completeness, usage, the answer's id, the sequence number and the skipped count.

Each event is judged twice, by a tracker as it is and by one whose fast reader is switched off
(the judge reads every event), and the two must agree. The events mix the usual shapes with
every way an event can leave them: fields of other types, non-object JSON, malformed JSON,
JSON only the stdlib reads (NaN, Infinity), duplicate keys. Integers beyond 64 bits are the one
place they differ, and there the fast reading is the right one: it keeps the integer, as `json`
does, where orjson (in `loads_object`) reads it as a float (the last test).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.apis.openai_chat.dialect as chat_dialect
import gateway.apis.openai_responses.dialect as responses_dialect
from gateway.apis.openai_chat import OpenAIDialect
from gateway.apis.openai_responses.dialect import ResponsesDialect, ResponsesTracker
from gateway.streaming import SSEEvent, StreamTracker

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_choice = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.integers(0, 3),
            "delta": st.one_of(_values, st.just({"content": "hi"})),
            "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length", ""]), _values),
        },
    ),
    _values,
)
_usage = st.one_of(st.just({"prompt_tokens": 3, "completion_tokens": 5}), _values)
_chunk = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=8),
        "choices": st.one_of(st.lists(_choice, max_size=3), _values),
        "usage": _usage,
        "error": _values,
    },
)
_response = st.one_of(
    st.fixed_dictionaries(
        {"object": st.just("response"), "id": st.sampled_from(["resp_1", "resp_2", ""])},
        optional={"usage": _usage, "deleted": st.booleans()},
    ),
    _values,
)
_responses_event = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(
                [
                    "response.created",
                    "response.output_text.delta",
                    "response.completed",
                    "response.incomplete",
                    "response.failed",
                    "error",
                ]
            ),
            _values,
        ),
        "sequence_number": st.one_of(st.integers(-2, 2**63 - 1), _values),
        "response": _response,
        "delta": st.text(max_size=8),
    },
)
_odd_data = st.sampled_from(
    [
        "",
        "[DONE]",
        "not json",
        "[1, 2]",
        '"text"',
        "3",
        '{"choices": [}',
        '{"usage": NaN}',
        '{"choices": [{"finish_reason": "stop"}], "choices": []}',
        '{"choices": [], "choices": [{"finish_reason": "stop"}]}',
        '{"sequence_number": 1, "sequence_number": "x"}',
        '{"usage": {"prompt_tokens": 1}, "usage": 5}',
        '{"type": "response.completed", "response": {"usage": {"input_tokens": Infinity}}}',
    ]
)


def _data(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[str]:
    return st.one_of(objects.map(json.dumps), _odd_data)


def _state(tracker: StreamTracker) -> tuple[object, ...]:
    return (
        tracker.complete,
        tracker.usage,
        tracker.skipped,
        tracker.answer_id,
        getattr(tracker, "sequence_number", None),
    )


def _judge_both(
    module: Any,
    reader: str,
    trackers: tuple[StreamTracker, StreamTracker],
    events: list[SSEEvent],
) -> None:
    fast, judged = trackers
    for event in events:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(module, reader, lambda data: None)
            expected_verdict = judged.inspect(event)
        assert fast.inspect(event) == expected_verdict, event
        assert _state(fast) == _state(judged), event


@settings(max_examples=300, deadline=None)
@given(datas=st.lists(_data(_chunk), min_size=1, max_size=6), unasked=st.booleans())
def test_chat_tracker_fast_reading_decides_what_the_judge_decides(
    datas: list[str], unasked: bool
) -> None:
    trackers = (OpenAIDialect().tracker(), OpenAIDialect().tracker())
    for tracker in trackers:
        tracker.unasked_usage = unasked
    events = [SSEEvent(f"data: {data}\n\n".encode(), data) for data in datas]
    _judge_both(chat_dialect, "_read_chunk", trackers, events)


@settings(max_examples=300, deadline=None)
@given(
    datas=st.lists(_data(_responses_event), min_size=1, max_size=6),
    names=st.lists(st.sampled_from([None, "response.created", "response.completed"]), max_size=6),
)
def test_responses_tracker_fast_reading_decides_what_the_judge_decides(
    datas: list[str], names: list[str | None]
) -> None:
    trackers = (ResponsesDialect().tracker(), ResponsesDialect().tracker())
    names = names + [None] * len(datas)
    events = [
        SSEEvent(f"data: {data}\n\n".encode(), data, name)
        for data, name in zip(datas, names, strict=False)
    ]
    _judge_both(responses_dialect, "_read_event", trackers, events)


def test_the_fast_reader_reads_the_usual_chunk_without_the_judge() -> None:
    """The fast reading is taken for the usual chunk (else the properties above compare the
    judge with itself)."""
    chunk = {
        "id": "chatcmpl-1",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }
    read = chat_dialect._read_chunk(json.dumps(chunk))
    assert read is not None
    assert read.choices is not None
    assert read.choices[0].finish_reason is None
    event = {"type": "response.output_text.delta", "sequence_number": 4, "delta": "hi"}
    shape = responses_dialect._read_event(json.dumps(event))
    assert shape is not None
    assert shape.sequence_number == 4


def test_an_integer_beyond_64_bits_is_read_as_the_integer_json_reads() -> None:
    data = '{"type": "response.output_text.delta", "sequence_number": 12345678901234567890123}'
    tracker = ResponsesTracker()
    tracker.inspect(SSEEvent(f"data: {data}\n\n".encode(), data))
    assert tracker.sequence_number == json.loads(data)["sequence_number"]
