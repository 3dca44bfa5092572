"""`SSEDecoder`: WHATWG event-stream framing, byte-exact `raw`, independent of how reads split.

Every table case is checked fed whole, split in two at every byte offset, and byte by byte:
the events (raw bytes and fields) and the partial-tail flag must not change. A hypothesis
property does the same for random well-formed streams with random line ends and chunkings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ErrorCategory, EventTooLarge
from gateway.streaming import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent


def decode(chunks: list[bytes], **kwargs: int) -> tuple[list[SSEEvent], bool]:
    """Feed `chunks` in order, then `finish()`: all events and whether a partial tail is left."""
    decoder = SSEDecoder(**kwargs)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.finish()
    return events, decoder.has_partial_event


def E(
    raw: bytes, data: str | None = None, event: str | None = None, ident: str | None = None
) -> SSEEvent:
    """An expected event, positionally: raw, data, event, id."""
    return SSEEvent(raw=raw, data=data, event=event, id=ident)


@dataclass(frozen=True)
class Case:
    stream: bytes
    events: list[SSEEvent]
    partial: bool = False


CASES = {
    "lf": Case(b"data: hello\n\n", [E(b"data: hello\n\n", "hello")]),
    "cr": Case(b"data: hello\r\r", [E(b"data: hello\r\r", "hello")]),
    "crlf": Case(b"data: hello\r\n\r\n", [E(b"data: hello\r\n\r\n", "hello")]),
    "mixed-line-ends": Case(
        b"data: a\r\ndata: b\rdata: c\n\r\n",
        [E(b"data: a\r\ndata: b\rdata: c\n\r\n", "a\nb\nc")],
    ),
    "cr-then-lf-is-one-line-end": Case(
        b"data: x\r\ndata: y\n\n", [E(b"data: x\r\ndata: y\n\n", "x\ny")]
    ),
    "two-events": Case(b"data: 1\n\ndata: 2\n\n", [E(b"data: 1\n\n", "1"), E(b"data: 2\n\n", "2")]),
    "comment-only": Case(b": ping\n\n", [E(b": ping\n\n")]),
    "bare-colon-comment": Case(b":\n\n", [E(b":\n\n")]),
    "comment-inside-event": Case(
        b": note\ndata: x\n: more\n\n", [E(b": note\ndata: x\n: more\n\n", "x")]
    ),
    "multi-line-data": Case(
        b"data: a\ndata: b\ndata:\n\n", [E(b"data: a\ndata: b\ndata:\n\n", "a\nb\n")]
    ),
    "no-space-after-colon": Case(b"data:x\n\n", [E(b"data:x\n\n", "x")]),
    "one-space-stripped": Case(b"data: x\n\n", [E(b"data: x\n\n", "x")]),
    "only-one-space-stripped": Case(b"data:  x\n\n", [E(b"data:  x\n\n", " x")]),
    "tab-not-stripped": Case(b"data:\tx\n\n", [E(b"data:\tx\n\n", "\tx")]),
    "colon-in-value": Case(b"data: a: b\n\n", [E(b"data: a: b\n\n", "a: b")]),
    "field-without-colon": Case(b"data\n\n", [E(b"data\n\n", "")]),
    "event-without-colon": Case(b"event\ndata: x\n\n", [E(b"event\ndata: x\n\n", "x", event="")]),
    "event-and-id": Case(
        b"event: message_start\nid: 42\ndata: {}\n\n",
        [E(b"event: message_start\nid: 42\ndata: {}\n\n", "{}", "message_start", "42")],
    ),
    "last-event-field-wins": Case(
        b"event: a\nevent: b\ndata: x\n\n", [E(b"event: a\nevent: b\ndata: x\n\n", "x", "b")]
    ),
    "empty-event-field": Case(b"event:\ndata: x\n\n", [E(b"event:\ndata: x\n\n", "x", "")]),
    "id-with-nul-ignored": Case(b"id: a\x00b\ndata: x\n\n", [E(b"id: a\x00b\ndata: x\n\n", "x")]),
    "event-only-has-no-data": Case(b"event: ping\n\n", [E(b"event: ping\n\n", event="ping")]),
    "retry-and-unknown-fields-ignored": Case(
        b"retry: 1000\nfoo: bar\ndata: x\n\n", [E(b"retry: 1000\nfoo: bar\ndata: x\n\n", "x")]
    ),
    "field-names-are-case-sensitive": Case(b"Data: x\n\n", [E(b"Data: x\n\n")]),
    "leading-bom-dropped": Case(b"\xef\xbb\xbfdata: x\n\n", [E(b"data: x\n\n", "x")]),
    "only-the-first-bom-dropped": Case(
        b"\xef\xbb\xbfdata: x\n\n\xef\xbb\xbfdata: y\n\n",
        [E(b"data: x\n\n", "x"), E(b"\xef\xbb\xbfdata: y\n\n")],
    ),
    # U+FEFE starts like a BOM but is not one (non-UTF-8 input: test_sse_utf8.py)
    "not-a-bom": Case("\ufefedata: x\n\n".encode(), [E("\ufefedata: x\n\n".encode())]),
    "blank-lines-between-events-dropped": Case(
        b"\n\r\n\rdata: a\n\n\n\r\n\rdata: b\n\n\n",
        [E(b"data: a\n\n", "a"), E(b"data: b\n\n", "b")],
    ),
    "utf8-data": Case(
        "data: héllo 🙂 ☃\n\n".encode(), [E("data: héllo 🙂 ☃\n\n".encode(), "héllo 🙂 ☃")]
    ),
    "openai-chunk-and-done": Case(
        b'data: {"choices":[]}\n\ndata: [DONE]\n\n',
        [E(b'data: {"choices":[]}\n\n', '{"choices":[]}'), E(b"data: [DONE]\n\n", "[DONE]")],
    ),
    "trailing-incomplete-event-not-returned": Case(
        b"data: a\n\ndata: b\n", [E(b"data: a\n\n", "a")], partial=True
    ),
    "trailing-unterminated-line": Case(b"data: a\n\ndata: b", [E(b"data: a\n\n", "a")], True),
    "trailing-cr-completes-at-finish": Case(b"data: a\n\r", [E(b"data: a\n\r", "a")]),
    "trailing-crcr-completes-at-finish": Case(b"data: a\r\r", [E(b"data: a\r\r", "a")]),
    "trailing-blank-lines-are-not-partial": Case(b"data: a\n\n\r\n\n\r", [E(b"data: a\n\n", "a")]),
    "only-blank-lines": Case(b"\n\r\n\r\n", []),
    "empty-stream": Case(b"", []),
    "only-a-bom": Case(b"\xef\xbb\xbf", []),
}

CASE_PARAMS = [pytest.param(case, id=name) for name, case in CASES.items()]


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_decodes_the_stream_fed_whole(case: Case) -> None:
    assert decode([case.stream]) == (case.events, case.partial)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_split_at_every_byte_offset_gives_the_same_events(case: Case) -> None:
    expected = decode([case.stream])
    for offset in range(len(case.stream) + 1):
        pieces = [case.stream[:offset], case.stream[offset:]]
        assert decode(pieces) == expected, f"split at {offset}"


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_fed_byte_by_byte_gives_the_same_events(case: Case) -> None:
    single_bytes = [case.stream[i : i + 1] for i in range(len(case.stream))]
    assert decode(single_bytes) == decode([case.stream])


def test_a_cr_ending_one_read_and_an_lf_starting_the_next_are_one_line_end():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\ndata: y\n\n") == [E(b"data: x\r\ndata: y\n\n", "x\ny")]
    assert decoder.finish() == []


def test_a_cr_ending_a_read_completes_the_event_when_a_non_lf_follows():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\r") == []  # CR or CRLF? not known yet
    assert decoder.feed(b"data: y\n\n") == [E(b"data: x\n\r", "x"), E(b"data: y\n\n", "y")]


def test_a_bom_split_across_reads_is_dropped():
    decoder = SSEDecoder()
    assert decoder.feed(b"\xef") == []
    assert decoder.feed(b"\xbb\xbfdata: x\n\n") == [E(b"data: x\n\n", "x")]


def test_each_read_returns_only_the_events_it_completed():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\nda") == [E(b"data: 1\n\n", "1")]
    assert decoder.has_partial_event
    assert decoder.feed(b"ta: 2\n") == []
    assert decoder.feed(b"\n") == [E(b"data: 2\n\n", "2")]
    assert not decoder.has_partial_event


# --- the relay invariant, for random streams -------------------------------------------------

LINE_ENDS = st.sampled_from(["\n", "\r", "\r\n"])
VALUES = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12)


@st.composite
def field_lines(draw: st.DrawFn) -> tuple[str, str | None]:
    """A non-empty line and the (name, value) it sets: value None for a name without colon."""
    name = draw(st.sampled_from(["data", "data", "event", "id", "retry", "x-custom", ""]))
    if name == "" or draw(st.booleans()):  # "" renders as a comment (":" + text)
        space = draw(st.booleans())
        value = draw(VALUES)
        return f"{name}:{' ' if space else ''}{value}", name
    return name, name


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A well-formed stream (blank lines between events included) and its expected events."""
    out: list[bytes] = []
    expected: list[SSEEvent] = []
    previous_end = ""

    def line_end(empty: bool) -> str:
        nonlocal previous_end
        end = draw(LINE_ENDS)
        if empty and previous_end == "\r" and end == "\n":
            end = "\r\n"  # "\r" + "\n" would be one line end, not an empty line
        previous_end = end
        return end

    for _ in range(draw(st.integers(0, 2))):
        out.append(line_end(empty=True).encode())
    for _ in range(draw(st.integers(0, 5))):
        raw = b""
        data: list[str] | None = None
        event = id_ = None
        for line, name in draw(st.lists(field_lines(), min_size=1, max_size=5)):
            raw += (line + line_end(empty=False)).encode()
            if line.startswith(":"):
                continue
            _, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "data":
                data = [*(data or []), value]
            elif name == "event":
                event = value
            elif name == "id" and "\x00" not in value:
                id_ = value
        raw += line_end(empty=True).encode()
        out.append(raw)
        expected.append(E(raw, None if data is None else "\n".join(data), event, id_))
        for _ in range(draw(st.integers(0, 2))):
            out.append(line_end(empty=True).encode())
    return b"".join(out), expected


def chunked(blob: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(blob) + 1) for cut in cuts), len(blob)]
    return [blob[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(event_streams(), st.lists(st.integers(min_value=0), max_size=12))
def test_random_streams_decode_byte_exact_however_they_are_chunked(stream, cuts):
    blob, expected = stream
    events, partial = decode(chunked(blob, cuts))
    assert events == expected
    assert not partial
    # the relay invariant: what is forwarded is the input minus blank lines between events
    assert b"".join(event.raw for event in events) == b"".join(event.raw for event in expected)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=8))
def test_arbitrary_bytes_decode_the_same_however_they_are_chunked(blob, cuts):
    events, partial = decode(chunked(blob, cuts))
    assert (events, partial) == decode([blob])
    assert len(b"".join(event.raw for event in events)) <= len(blob)
    for event in events:  # each event's raw bytes are one whole event on their own
        assert decode([b"\n" + event.raw]) == ([event], False)


# --- size limit and linear work --------------------------------------------------------------


def test_an_incomplete_event_growing_past_the_limit_raises_event_too_large():
    decoder = SSEDecoder(max_event_bytes=1024)
    decoder.feed(b"data: ")

    def feed_forever() -> None:
        for _ in range(10_000):
            assert decoder.feed(b"x" * 7) == []

    with pytest.raises(EventTooLarge) as excinfo:
        feed_forever()
    assert excinfo.value.category is ErrorCategory.STREAM_INTERRUPTED
    assert excinfo.value.code == "event_too_large"
    assert "1024" in excinfo.value.message


def test_a_complete_event_over_the_limit_raises_event_too_large():
    decoder = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(EventTooLarge) as excinfo:
        decoder.feed(b"data: " + b"x" * 2000 + b"\n\n")
    assert excinfo.value.code == "event_too_large"


def test_events_completed_before_an_oversize_one_are_returned_then_the_next_call_raises():
    decoder = SSEDecoder(max_event_bytes=64)
    events = decoder.feed(b"data: 1\n\ndata: 2\n\ndata: " + b"x" * 100)
    assert events == [E(b"data: 1\n\n", "1"), E(b"data: 2\n\n", "2")]
    with pytest.raises(EventTooLarge) as first:
        decoder.feed(b"more\n\n")
    with pytest.raises(EventTooLarge) as again:
        decoder.finish()
    assert again.value is first.value


def test_an_oversize_complete_event_after_good_ones_in_one_read_fails_on_the_next_call():
    decoder = SSEDecoder(max_event_bytes=64)
    events = decoder.feed(b"data: ok\n\ndata: " + b"x" * 100 + b"\n\ndata: late\n\n")
    assert events == [E(b"data: ok\n\n", "ok")]
    with pytest.raises(EventTooLarge):
        decoder.finish()


def test_an_event_of_exactly_the_limit_is_accepted():
    raw = b"data: " + b"x" * (1024 - 8) + b"\n\n"
    assert len(raw) == 1024
    assert decode([raw], max_event_bytes=1024) == ([E(raw, "x" * 1016)], False)
    with pytest.raises(EventTooLarge):
        decode([b"data: x" + raw[6:]], max_event_bytes=1024)


def test_many_small_events_in_one_read_are_not_limited_by_their_total():
    stream = b"data: 0123456789\n\n" * 1000
    events, _ = decode([stream], max_event_bytes=64)
    assert len(events) == 1000


def test_the_default_limit_is_four_mebibytes():
    assert DEFAULT_MAX_EVENT_BYTES == 4 * 1024 * 1024


def test_a_two_mebibyte_single_line_event_fed_in_small_pieces_completes():
    size = 2 * 1024 * 1024
    decoder = SSEDecoder()
    decoder.feed(b"data: ")
    body = b"y" * 64
    for _ in range(size // 64):
        assert decoder.feed(body) == []
    events = decoder.feed(b"\n\n")
    assert len(events) == 1
    assert events[0].data is not None
    assert len(events[0].data) == size


@pytest.mark.timeout(30)
def test_a_cr_only_stream_of_many_lines_in_one_read_completes():
    # Regression: each CR-terminated line searched the rest of the read for an LF, which made
    # one large CR-only read quadratic (about a minute for these 4 MiB; linear: about a second).
    event = b"x\r" * 511 + b"data: n\r\r"
    stream = event * (4 * 1024 * 1024 // len(event))
    events, partial = decode([stream])
    assert len(events) == len(stream) // len(event)
    assert events[-1] == E(event, "n")
    assert not partial


def test_keep_dataless_false_drops_comment_and_field_only_blocks_in_the_decoder():
    stream = b": ping\n\nevent: x\nid: 7\n\ndata: a\n\nretry: 5\n\nid: 8\ndata: b\n\n"
    decoder = SSEDecoder(keep_dataless=False)
    events = decoder.feed(stream) + decoder.finish()
    assert [(e.raw, e.data, e.event, e.id) for e in events] == [
        (b"data: a\n\n", "a", None, None),
        (b"id: 8\ndata: b\n\n", "b", None, "8"),
    ]
    assert not decoder.has_partial_event


def test_events_framed_in_place_before_an_oversize_one_are_returned_then_the_next_call_raises():
    """The fast path (LF-only blocks framed in the read itself) keeps the size-limit contract:
    the good events of the read come back, and the next call fails."""
    decoder = SSEDecoder(max_event_bytes=64)
    good = b"data: 1\n\ndata: 2\n\n"
    events = decoder.feed(good + b"data: " + b"x" * 100 + b"\n\n")
    assert [event.raw for event in events] == [b"data: 1\n\n", b"data: 2\n\n"]
    with pytest.raises(EventTooLarge):
        decoder.feed(b"data: 3\n\n")


def test_a_carried_over_event_completed_by_a_read_is_followed_by_that_reads_other_events():
    decoder = SSEDecoder()
    assert decoder.feed(b"event: a\ndata: {") == []
    events = decoder.feed(b'"x":1}\n\ndata: 2\n\ndata: 3\n\ndata: par')
    assert [(e.event, e.data) for e in events] == [("a", '{"x":1}'), (None, "2"), (None, "3")]
    assert decoder.feed(b"tial\n\n") == [SSEEvent(b"data: partial\n\n", "partial")]
