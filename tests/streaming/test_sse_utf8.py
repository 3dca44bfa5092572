"""`SSEDecoder` and bytes that are not UTF-8: an event holding any is never returned.

The SDKs decode every line strictly (a `UnicodeDecodeError` from inside their stream iterator),
so such an event ends the stream with `UpstreamProtocolError` instead. Whatever the split of
the reads, the events before the bad one are all returned, nothing after it is, and the error
is raised once they have been (at once when none precede it in the read).
"""

from __future__ import annotations

import pytest

from gateway.errors import ErrorCategory, UpstreamProtocolError
from gateway.streaming import SSEDecoder, SSEEvent

GOOD = 'data: {"t":"héllo 🙂"}\n\n'.encode()
ANTHROPIC = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'

BAD_EVENTS = {
    "lone-continuation-byte": b'data: {"t":"\x80"}\n\n',
    "truncated-sequence": b'data: {"t":"\xe2\x98"}\n\n',
    "overlong-encoding": b'data: {"t":"\xc0\xaf"}\n\n',
    "surrogate-encoded": b'data: {"t":"\xed\xa0\x80"}\n\n',
    "latin-1-text": b'data: {"t":"caf\xe9"}\n\n',
    "in-an-event-field": b'event: \xff\ndata: {"t":"x"}\n\n',
    "in-a-comment-inside-an-event": b': \xff\ndata: {"t":"x"}\n\n',
    "in-a-second-data-line": b'data: {"t":\ndata: "\xff"}\n\n',
    "with-crlf-framing": b'data: {"t":"\xff"}\r\n\r\n',
}


def run(chunks: list[bytes]) -> tuple[list[SSEEvent], UpstreamProtocolError | None]:
    """Feed `chunks`, then finish: the events returned and the error raised, if any."""
    decoder = SSEDecoder(keep_dataless=False)
    events: list[SSEEvent] = []
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
        events += decoder.finish()
    except UpstreamProtocolError as exc:
        return events, exc
    return events, None


@pytest.mark.parametrize("bad", [pytest.param(v, id=k) for k, v in BAD_EVENTS.items()])
def test_an_event_that_is_not_utf8_ends_the_stream_after_the_events_before_it(
    bad: bytes,
) -> None:
    stream = GOOD + ANTHROPIC + bad + GOOD
    for offset in range(len(stream) + 1):
        events, error = run([stream[:offset], stream[offset:]])

        assert [event.raw for event in events] == [GOOD, ANTHROPIC], f"split at {offset}"
        assert error is not None, f"split at {offset}"
        assert error.code == "upstream_protocol_error"
        assert error.category is ErrorCategory.STREAM_INTERRUPTED


@pytest.mark.parametrize("bad", [pytest.param(v, id=k) for k, v in BAD_EVENTS.items()])
def test_fed_byte_by_byte_the_bad_event_still_ends_the_stream(bad: bytes) -> None:
    stream = GOOD + bad + GOOD
    events, error = run([stream[i : i + 1] for i in range(len(stream))])

    assert [event.raw for event in events] == [GOOD]
    assert error is not None


def test_a_bad_event_first_in_a_read_raises_at_once() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(GOOD) != []

    with pytest.raises(UpstreamProtocolError):
        decoder.feed(BAD_EVENTS["latin-1-text"] + GOOD)


def test_after_a_bad_event_the_decoder_stays_failed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(GOOD + BAD_EVENTS["latin-1-text"]) == [SSEEvent(GOOD, GOOD[6:-2].decode())]

    with pytest.raises(UpstreamProtocolError):
        decoder.feed(GOOD)
    with pytest.raises(UpstreamProtocolError):
        decoder.finish()
    assert not decoder.has_partial_event


def test_a_character_split_across_reads_is_valid() -> None:
    cut = GOOD.index("🙂".encode()) + 2  # in the middle of the emoji's four bytes

    events, error = run([GOOD[:cut], GOOD[cut:]])

    assert error is None
    assert [event.data for event in events] == ['{"t":"héllo 🙂"}']


def test_a_dropped_comment_that_is_not_utf8_does_not_end_the_stream() -> None:
    """A keep-alive comment is never relayed (`keep_dataless=False`): its bytes harm no one."""
    events, error = run([b": \xff\xfe\n\n" + GOOD])

    assert error is None
    assert [event.raw for event in events] == [GOOD]


def test_a_kept_dataless_block_that_is_not_utf8_is_refused_too() -> None:
    decoder = SSEDecoder(keep_dataless=True)

    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"event: \xff\n\n")
