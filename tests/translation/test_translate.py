"""`StreamTranslation` hands on the events the encoders write without reading their frames
back: each event is exactly what an `SSEDecoder` reads from its bytes, for every encoder and
every kind of answer event, and one over the stream's limit raises as the decoder would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES, Api
from gateway.errors import GatewayError
from gateway.streaming import SSEDecoder, SSEEvent
from gateway.translation import (
    AnswerEvent,
    Conversation,
    EncodeOptions,
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
    anthropic_messages,
    openai_chat,
    openai_responses,
    translation_for,
)
from gateway.translation.codec import Codec
from gateway.translation.frames import read_frame
from tests.translation.anthropic_recordings import TEXT, sse_events

LIMIT = 1 << 16
CONVERSATION = Conversation(model="my-model", messages=(Message("user", (TextPart("hi"),)),))
CODECS: list[Codec] = [openai_chat.CODEC, anthropic_messages.CODEC, openai_responses.CODEC]

#: Text that JSON writers escape differently if they can: controls, DEL, quotes, non-ASCII,
#: astral characters, line separators.
texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12),
    st.sampled_from(["", "a\nb\r\t", '"\\/', "\x7f\x00\x1f", "h\u00e9", "\U0001f600", "\u2028"]),
)
parts = st.integers(min_value=0, max_value=3)
calls = st.integers(min_value=0, max_value=2)
answer_events: st.SearchStrategy[AnswerEvent] = st.one_of(
    st.builds(TextDelta, texts, parts),
    st.builds(ReasoningDelta, texts, parts, st.sampled_from([None, "", "sig"])),
    st.builds(ToolCallStart, calls, st.sampled_from(["call_1", "toolu_2"]), texts, parts),
    st.builds(ToolCallDelta, calls, texts, parts),
    st.builds(Usage, st.none() | st.integers(0, 99), st.none() | st.integers(0, 99)),
)
endings: st.SearchStrategy[list[AnswerEvent]] = st.one_of(
    st.just([]),
    st.builds(lambda reason: [Stop(reason), End()], st.sampled_from(list(StopReason))),
    st.builds(lambda message: [Failure(message or "boom")], texts),
)
answers = st.builds(
    lambda start, body, ending: [*start, *body, *ending],
    st.sampled_from([[], [Start("msg_1", "m", created=1700000000)], [Start("", "m")]]),
    st.lists(answer_events, max_size=12),
    endings,
)


def decoded(frame: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder(max_event_bytes=LIMIT, keep_dataless=False)
    return decoder.feed(frame) + decoder.finish()


@settings(max_examples=300)
@given(answers)
def test_every_event_an_encoder_writes_is_what_a_decoder_reads_from_its_frame(
    answer: list[AnswerEvent],
) -> None:
    for codec in CODECS:
        encoder = codec.stream_encoder(CONVERSATION)
        for item in answer:
            for event in encoder.events(item):
                assert [event] == decoded(event.raw)


@pytest.mark.parametrize(
    "frame",
    [
        b'data: {"a":1}\n\n',
        b'event: error\ndata: {"type":"error"}\n\n',
        b"data: a\r\n\r\n",
        b"id: 3\ndata: a\ndata: b\n\n",
        b": a comment\n\n",
    ],
)
def test_a_frame_made_elsewhere_is_read_as_a_decoder_reads_it(frame: bytes) -> None:
    assert read_frame(frame) == decoded(frame)


def _translated(client: Api, limit: int) -> list[SSEEvent]:
    translation = translation_for(client, ANTHROPIC_MESSAGES)
    assert translation is not None
    body = {"model": "my-model", "messages": [{"role": "user", "content": "hi"}]}
    if client is OPENAI_RESPONSES:
        body = {"model": "my-model", "input": "hi"}
    call, _ = translation.prepare(body, model="claude", options=EncodeOptions())
    stream = call.stream(max_event_bytes=limit)
    return stream.feed(sse_events(TEXT)) + stream.finish()


@pytest.mark.parametrize("client", [OPENAI_CHAT, OPENAI_RESPONSES])
def test_a_translated_streams_events_are_what_a_decoder_reads_from_its_bytes(
    client: Api,
) -> None:
    events = _translated(client, LIMIT)
    assert len(events) > 3
    assert events == decoded(b"".join(event.raw for event in events))


@pytest.mark.parametrize("client", [OPENAI_CHAT, OPENAI_RESPONSES])
def test_a_translated_event_over_the_limit_raises_as_the_upstreams_decoder_would(
    client: Api,
) -> None:
    biggest = max(len(event.raw) for event in _translated(client, LIMIT))
    decoder = SSEDecoder(max_event_bytes=biggest - 1, keep_dataless=False)
    with pytest.raises(GatewayError) as expected:
        decoder.feed(b"data: " + b"x" * biggest + b"\n\n")
    with pytest.raises(type(expected.value)):
        _translated(client, biggest - 1)
