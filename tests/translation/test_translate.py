"""`StreamTranslation` reads the client events the encoders write without a decoder where it
can: the events are exactly those an `SSEDecoder` reads from the same frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.streaming import SSEDecoder, SSEEvent
from gateway.translation.translate import _own_event

LIMIT = 1 << 16


def decoded(frame: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder(max_event_bytes=LIMIT, keep_dataless=False)
    return decoder.feed(frame) + decoder.finish()


@pytest.mark.parametrize(
    "frame",
    [
        b'data: {"a":1}\n\n',
        b"data: [DONE]\n\n",
        b'event: message_start\ndata: {"type":"message_start"}\n\n',
        b'event: response.output_text.delta\ndata: {"delta":"h\xc3\xa9"}\n\n',
        b"event: error\ndata: \n\n",
    ],
)
def test_an_encoders_frame_is_read_as_the_decoder_reads_it(frame: bytes) -> None:
    assert [_own_event(frame, LIMIT)] == decoded(frame)


@pytest.mark.parametrize(
    "frame",
    [
        b"data: a\r\n\r\n",  # CR line ends
        b"data: a\ndata: b\n\n",  # several data lines
        b": ping\n\n",  # a comment
        b"id: 3\ndata: a\n\n",  # another field first
        b"data:a\n\n",  # no space after the colon
        b"data: \xff\n\n",  # not UTF-8
        b"data: a\n",  # not a whole event
    ],
)
def test_any_other_shape_is_left_to_the_decoder(frame: bytes) -> None:
    assert _own_event(frame, LIMIT) is None


def test_a_frame_over_the_limit_is_left_to_the_decoder() -> None:
    assert _own_event(b"data: " + b"x" * 100 + b"\n\n", 50) is None


@given(st.binary(max_size=64))
def test_whatever_it_reads_is_what_the_decoder_reads(frame: bytes) -> None:
    event = _own_event(frame, LIMIT)
    if event is not None:
        assert [event] == decoded(frame)
