"""The Chat Completions stream decoder and encoder: recorded streams -> answer events, answer
events -> the exact chunks OpenAI sends, and back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.apis import OPENAI_CHAT
from gateway.errors import ErrorCategory
from gateway.streaming import SSEDecoder, StreamError
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
    TextPart,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from gateway.translation.openai_chat import CODEC
from tests.translation.openai_chat_streams import (
    CREATED,
    DEEPSEEK_REASONING,
    DONE,
    ID,
    MODEL,
    PARALLEL_TOOLS,
    REFUSAL,
    ROLE,
    TEXT,
    UPSTREAM_ERROR,
    VLLM_STOP_SEQUENCE,
    chunk,
    chunks_of,
    decode,
    frame,
)

START = Start(id=ID, model=MODEL, created=CREATED)


# -- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        pytest.param(
            TEXT,
            [
                START,
                TextDelta("Hello"),
                TextDelta(" there!"),
                Usage(input=19, output=3, cached=12, reasoning=0),
                Stop(StopReason.END_TURN),
                End(),
            ],
            id="text-usage-cached",
        ),
        pytest.param(
            PARALLEL_TOOLS,
            [
                START,
                ToolCallStart(0, "call_wx", "get_weather", part=0),
                ToolCallDelta(0, '{"city"', part=0),
                ToolCallStart(1, "call_tm", "get_time", part=1),
                ToolCallDelta(1, '{"zone": "CET"}', part=1),
                ToolCallDelta(0, ': "Paris"}', part=0),
                Usage(input=80, output=40, cached=0, reasoning=0),
                Stop(StopReason.TOOL_USE),
                End(),
            ],
            id="parallel-tool-calls-interleaved",
        ),
        pytest.param(
            DEEPSEEK_REASONING,
            [
                Start(id=ID, model="deepseek-r", created=CREATED),
                ReasoningDelta("The user", part=0),
                ReasoningDelta(" greets.", part=0),
                TextDelta("Hi", part=1),
                Usage(input=10, output=50, cached=4, reasoning=40),
                Stop(StopReason.END_TURN),
                End(),
            ],
            id="deepseek-reasoning-usage-on-finish-chunk",
        ),
        pytest.param(
            VLLM_STOP_SEQUENCE,
            [
                Start(id=ID, model="qwen3", created=CREATED),
                ReasoningDelta("Count.", part=0),
                TextDelta("1, 2, 3", part=1),
                Stop(StopReason.STOP_SEQUENCE, stop_sequence="END"),
                End(),
            ],
            id="vllm-reasoning-and-stop-reason",
        ),
        pytest.param(
            REFUSAL,
            [
                START,
                TextDelta("I can't help"),
                TextDelta(" with that."),
                Stop(StopReason.REFUSAL),
                End(),
            ],
            id="refusal",
        ),
        pytest.param(
            UPSTREAM_ERROR,
            [
                START,
                TextDelta("Hel"),
                Failure(
                    "Rate limit reached for gpt-4o",
                    code="rate_limit_exceeded",
                    category="rate_limit",
                ),
            ],
            id="upstream-error-event",
        ),
    ],
)
def test_a_recorded_stream_decodes_into_its_answer_events(
    frames: list[bytes], expected: list[AnswerEvent]
) -> None:
    assert decode(frames) == expected


@pytest.mark.parametrize(
    ("finish_reason", "reason"),
    [
        ("stop", StopReason.END_TURN),
        ("length", StopReason.MAX_TOKENS),
        ("tool_calls", StopReason.TOOL_USE),
        ("function_call", StopReason.TOOL_USE),
        ("content_filter", StopReason.CONTENT_FILTER),
        ("something_new", StopReason.END_TURN),
    ],
)
def test_each_finish_reason_is_its_stop_reason(finish_reason: str, reason: StopReason) -> None:
    frames = [ROLE, chunk({"content": "x"}), chunk({}, finish_reason), DONE]
    assert decode(frames)[-2:] == [Stop(reason), End()]


def test_a_stream_with_its_finish_reason_but_no_done_ends_at_finish() -> None:
    frames = [ROLE, chunk({"content": "Hi"}), chunk({}, "length")]
    assert decode(frames) == [START, TextDelta("Hi"), Stop(StopReason.MAX_TOKENS), End()]


def test_a_stream_cut_before_its_finish_reason_does_not_end() -> None:
    frames = [ROLE, chunk({"content": "Hi"})]
    assert decode(frames) == [START, TextDelta("Hi")]


def test_done_without_a_finish_reason_ends_the_turn() -> None:
    assert decode([ROLE, chunk({"content": "Hi"}), DONE])[-2:] == [
        Stop(StopReason.END_TURN),
        End(),
    ]


def test_tool_calls_that_finish_with_stop_stop_for_tool_use() -> None:
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    events = decode([ROLE, chunk({"tool_calls": [call]}), chunk({}, "stop"), DONE])
    assert events[-2] == Stop(StopReason.TOOL_USE)


def test_calls_sent_whole_at_one_index_are_told_apart_by_their_ids() -> None:
    calls = [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"index": 0, "id": "b", "type": "function", "function": {"name": "g", "arguments": "[]"}},
    ]
    events = decode([ROLE, chunk({"tool_calls": calls}), chunk({}, "tool_calls"), DONE])
    assert events[1:5] == [
        ToolCallStart(0, "a", "f", part=0),
        ToolCallDelta(0, "{}", part=0),
        ToolCallStart(1, "b", "g", part=1),
        ToolCallDelta(1, "[]", part=1),
    ]


def test_a_call_without_an_id_gets_one_a_client_can_answer() -> None:
    call = {"index": 0, "function": {"name": "f", "arguments": "{}"}}
    [_, start, *_] = decode([ROLE, chunk({"tool_calls": [call]}), DONE])
    assert isinstance(start, ToolCallStart)
    assert start.id == "call_0_chatcmpl-BvX2k9"


def test_parts_are_numbered_in_the_order_they_start() -> None:
    call = {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    frames = [
        chunk({"role": "assistant", "reasoning_content": "think"}),
        chunk({"content": "say"}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        chunk({"content": "more"}),
        DONE,
    ]
    assert decode(frames)[1:6] == [
        ReasoningDelta("think", part=0),
        TextDelta("say", part=1),
        ToolCallStart(0, "c", "f", part=2),
        ToolCallDelta(0, "{}", part=2),
        TextDelta("more", part=3),
    ]


def test_usage_repeated_on_every_chunk_is_reported_once_per_change() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    frames = [
        chunk({"role": "assistant", "content": "a"}, usage=usage),
        chunk({"content": "b"}, usage=usage),
        chunk({}, "stop", usage={**usage, "completion_tokens": 2}),
        DONE,
    ]
    usages = [event for event in decode(frames) if isinstance(event, Usage)]
    assert usages == [Usage(input=5, output=1), Usage(input=5, output=2)]


def test_what_cannot_be_read_is_skipped() -> None:
    frames = [
        b": keep-alive\n\n",
        b"data: {not json\n\n",
        ROLE,
        frame({"id": ID, "choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
        frame({"id": ID, "choices": "nonsense", "usage": None}),
        chunk({"content": "ok", "tool_calls": None}),
        DONE,
    ]
    assert decode(frames) == [START, TextDelta("ok"), Stop(StopReason.END_TURN), End()]


def test_nothing_follows_the_end_or_a_failure() -> None:
    decoder = CODEC.stream_decoder()
    events = [e for f in [*TEXT, chunk({"content": "late"})] for e in SSEDecoder().feed(f)]
    out = [answer for event in events for answer in decoder.feed(event)]
    assert out[-1] == End()
    assert decoder.finish() == []
    assert decode([*UPSTREAM_ERROR, chunk({"content": "late"}), DONE])[-1] == Failure(
        "Rate limit reached for gpt-4o", code="rate_limit_exceeded", category="rate_limit"
    )


# -- encoding ---------------------------------------------------------------------------------

CLIENT_MODEL = "my-alias"
CONVERSATION = Conversation(model=CLIENT_MODEL, messages=(Message("user", (TextPart("hi"),)),))


def encode(events: list[AnswerEvent]) -> list[bytes]:
    encoder = CODEC.stream_encoder(CONVERSATION)
    return [frame for event in events for frame in encoder.encode(event)]


def head(choices: list[dict[str, Any]], id: str = "chatcmpl-msg_01") -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": CLIENT_MODEL,
        "choices": choices,
    }


def delta(value: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return head([{"index": 0, "delta": value, "logprobs": None, "finish_reason": finish_reason}])


ANTHROPIC_START = Start(id="msg_01", model="claude-x", created=1700000000)


def test_each_answer_event_becomes_its_chunk_at_once() -> None:
    events: list[AnswerEvent] = [
        ANTHROPIC_START,
        ReasoningDelta("hmm", part=0),
        ReasoningDelta("", part=0, signature="sig"),
        TextDelta("Let me look.", part=1),
        ToolCallStart(0, "toolu_1", "get_weather", part=2),
        ToolCallDelta(0, '{"city":', part=2),
        ToolCallDelta(0, '"Paris"}', part=2),
        Usage(input=30, output=12, cached=20, cache_write=5, reasoning=3),
        Stop(StopReason.TOOL_USE),
        End(),
    ]
    encoder = CODEC.stream_encoder(CONVERSATION)
    frames = [encoder.encode(event) for event in events]
    assert [len(f) for f in frames] == [1, 1, 0, 1, 1, 1, 1, 0, 1, 2]
    assert chunks_of([f for fs in frames for f in fs]) == [
        delta({"role": "assistant", "content": ""}),
        delta({"reasoning_content": "hmm"}),
        delta({"content": "Let me look."}),
        delta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        delta({}, "tool_calls"),
        {
            **head([]),
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 12,
                "total_tokens": 42,
                "prompt_tokens_details": {"cached_tokens": 20},
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
        },
        "[DONE]",
    ]


@pytest.mark.parametrize(
    ("reason", "finish_reason"),
    [
        (StopReason.END_TURN, "stop"),
        (StopReason.STOP_SEQUENCE, "stop"),
        (StopReason.MAX_TOKENS, "length"),
        (StopReason.TOOL_USE, "tool_calls"),
        (StopReason.CONTENT_FILTER, "content_filter"),
        (StopReason.REFUSAL, "content_filter"),
    ],
)
def test_each_stop_reason_is_its_finish_reason(reason: StopReason, finish_reason: str) -> None:
    frames = encode([ANTHROPIC_START, TextDelta("x"), Stop(reason), End()])
    assert chunks_of(frames)[-2] == delta({}, finish_reason)


def test_a_stream_without_usage_ends_with_done_only() -> None:
    frames = encode([ANTHROPIC_START, TextDelta("x"), Stop(StopReason.END_TURN), End()])
    assert frames[-1] == DONE
    assert chunks_of(frames)[-2] == delta({}, "stop")


def test_a_failure_is_the_openai_dialects_error_event_and_the_end() -> None:
    failure = Failure("Overloaded", code="overloaded_error", category="rate_limit")
    frames = encode([ANTHROPIC_START, TextDelta("x"), failure, End()])
    expected = OPENAI_CHAT.dialect.error_event(
        StreamError(
            type=ErrorCategory.RATE_LIMIT,
            message="Overloaded",
            code="upstream_error_event",
            provider_code="overloaded_error",
        )
    )
    assert frames[-1] == expected
    assert json.loads(expected.split(b"data: ", 1)[1])["error"]["code"] == "overloaded_error"


def test_ids_are_chat_completion_ids_and_the_model_is_the_clients() -> None:
    [role] = chunks_of(encode([Start(id="chatcmpl-up", model="upstream-name", created=1)]))
    assert (role["id"], role["model"]) == ("chatcmpl-up", CLIENT_MODEL)
    [role] = chunks_of(encode([Start(id="", model="m")]))
    assert role["id"].startswith("chatcmpl-")
    assert len(role["id"]) > len("chatcmpl-")
    assert isinstance(role["created"], int)


def test_frames_are_whole_sse_events_of_compact_ascii_json() -> None:
    frames = encode([ANTHROPIC_START, TextDelta("naïve ☃"), Stop(StopReason.END_TURN), End()])
    for data in frames:
        assert data.startswith(b"data: ")
        assert data.endswith(b"\n\n")
        assert data.count(b"\n\n") == 1
        data.decode("ascii")
    assert chunks_of(frames)[1] == delta({"content": "naïve ☃"})


# -- round trip -------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [TEXT, PARALLEL_TOOLS, DEEPSEEK_REASONING], ids=str)
def test_decoding_what_the_encoder_wrote_gives_the_same_events(frames: list[bytes]) -> None:
    events = decode(frames)
    again = decode(encode(events))
    assert again[0] == Start(id=ID, model=CLIENT_MODEL, created=CREATED)
    assert again[1:] == events[1:]


def test_a_recorded_stream_rewritten_is_openais_chunks_again() -> None:
    """The same choices and usage; only what the upstream adds beside them (its fingerprint,
    `usage: null` on each chunk, its id and model) differs."""
    rewritten = chunks_of(encode(decode(TEXT)))
    original = chunks_of(TEXT)
    assert [c["choices"] for c in rewritten[:-2]] == [
        [{**original[0]["choices"][0], "delta": {"role": "assistant", "content": ""}}],
        *(c["choices"] for c in original[1:4]),
    ]
    assert rewritten[-2]["usage"] == {
        **original[-2]["usage"],
        "prompt_tokens_details": {"cached_tokens": 12},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert rewritten[-1] == original[-1] == "[DONE]"


def test_usage_on_the_finish_chunk_is_written_in_the_usage_chunk() -> None:
    frames = encode(decode(DEEPSEEK_REASONING))
    last = chunks_of(frames)[-2]
    assert last["choices"] == []
    assert last["usage"]["completion_tokens_details"] == {"reasoning_tokens": 40}


# -- the bytes of a chunk ------------------------------------------------------------------------

#: Text JSON writers could escape differently: controls, DEL, quotes, non-ASCII, astral.
_texts = st.one_of(
    st.text(max_size=16),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=16),
    st.sampled_from(["a\nb\r\t", '"\\/', "\x7f", "\x00\x1f", "h\u00e9", "\U0001f600", "\u2028"]),
)


def _written(value: dict[str, Any]) -> bytes:
    """A chunk as the gateway writes JSON (`compact_json`: compact, ASCII-only), framed."""
    return b"data: " + json.dumps(value, separators=(",", ":")).encode("ascii") + b"\n\n"


@settings(max_examples=300)
@given(_texts, st.integers(0, 3))
def test_a_deltas_chunk_is_the_compact_json_of_its_object(text: str, index: int) -> None:
    events: list[AnswerEvent] = [
        ANTHROPIC_START,
        TextDelta(text),
        ReasoningDelta(text),
        ToolCallStart(index, "toolu_1", text),
        ToolCallDelta(index, text),
        Stop(StopReason.END_TURN),
    ]
    call = {"index": index, "id": "toolu_1", "type": "function"}
    expected = [
        delta({"role": "assistant", "content": ""}),
        delta({"content": text}),
        delta({"reasoning_content": text}),
        delta({"tool_calls": [{**call, "function": {"name": text, "arguments": ""}}]}),
        delta({"tool_calls": [{"index": index, "function": {"arguments": text}}]}),
        delta({}, "stop"),
    ]
    if not text:  # empty text or reasoning writes no chunk (a tool call's parts always do)
        del expected[1:3]
    assert encode(events) == [_written(chunk) for chunk in expected]
