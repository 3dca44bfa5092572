"""Incremental SSE framing that keeps each event's original bytes (sans-I/O).

`SSEDecoder.feed(data)` takes whatever a socket read returned and gives back the events it
completed, each as an `SSEEvent` holding the exact bytes the upstream sent for it (`raw`) plus
the parsed fields the gateway looks at (`event`, `data`, `id`). The relay forwards `raw` and never
re-encodes, so what a client receives is byte-for-byte what the upstream framed.

Framing follows the WHATWG event-stream rules: lines end with CRLF, LF or CR (a CR that ends one
read and an LF that starts the next are one line end), an empty line ends an event, lines starting
with ':' are comments, `field:value` drops one leading space from the value, a field name without
a colon has an empty value, multi-line `data` joins with LF, and one UTF-8 BOM at the very start
of the stream is dropped. Blank lines between events belong to no event and are dropped. A CR
that ends a read is held until the next read (or `finish()`) shows whether an LF follows it.

Invariants:
- bytes of an incomplete event are never returned: after the stream ends, `has_partial_event`
  says whether a tail was cut off;
- the events, and each event's `raw`, are the same however the input is split into reads; their
  concatenation is the input minus the BOM and the blank lines outside events;
- work is linear in the input however it is split (each byte is searched a bounded number of
  times), and an event that grows past `max_event_bytes` raises `EventTooLarge` instead of
  growing memory (events completed before it in the same read are returned first; the next
  call raises);
- every event returned is valid UTF-8, all of its bytes: an event that is not raises
  `UpstreamProtocolError` (`upstream_protocol_error`), with the same timing as `EventTooLarge`,
  and the decoder stays failed.

**Invalid UTF-8.** The event stream format is UTF-8 (WHATWG), and the official SDKs decode each
line strictly: openai-python and anthropic-sdk-python raise `UnicodeDecodeError` from inside
their stream iterator on such a line - an untyped crash, not an API error. Relayed byte-exact,
the event would crash the client; skipped, it would silently drop answer text (such an event is
almost always a delta whose characters the upstream mangled), and the stream would look
complete when it was not. So it ends the stream instead: the relay turns the error into one
`stream_interrupted` / `upstream_protocol_error` error event (or, before anything was relayed,
a 502 or a retry on the next target), which the SDKs raise as a typed `APIError`. The check is
the decode the fast path does anyway, made strict, plus `bytes.isascii()` on the other blocks.

Speed: LF-framed blocks (what LLM APIs send) take a fast path that finds each block's end with
one search and parses its lines only when there are several; anything else - a CR anywhere in
the block, a partial line carried over - goes through the general line-by-line framer, which
yields the same events.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.errors import EventTooLarge, StreamInterrupted, UpstreamProtocolError

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent"]

DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_NO_END = -1
_NEEDS_GENERAL = -2
_new_event = tuple.__new__  # SSEEvent(...) without the named tuple's Python-level __new__
_LF = 0x0A
_CR = 0x0D
_NOT_UTF8 = "the upstream sent an event that is not valid UTF-8"


class SSEEvent(NamedTuple):
    """One complete event block: its original bytes and the fields the gateway needs.

    `data` is None when the block had no `data` line (a comment-only block, or a block of only
    `event:`/`id:`/`retry:` fields); WHATWG clients dispatch nothing for such a block.
    (A named tuple: immutable, and several times cheaper to build than a frozen dataclass,
    which matters once per relayed event.)
    """

    raw: bytes
    data: str | None = None
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Frames a byte stream into `SSEEvent`s; feed it reads, in order, as they arrive."""

    __slots__ = (
        "_block_start",
        "_buf",
        "_data",
        "_error",
        "_event",
        "_id",
        "_keep_dataless",
        "_line_start",
        "_max_event_bytes",
        "_raw",
        "_scan",
        "_stream_started",
    )

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, keep_dataless: bool = True
    ) -> None:
        """`keep_dataless=False` drops blocks without a `data` line (comments, field-only
        blocks) in the decoder itself: a WHATWG client dispatches nothing for them."""
        self._max_event_bytes = max_event_bytes
        self._keep_dataless = keep_dataless
        self._buf = bytearray()
        self._block_start = 0  # where the current event's raw bytes begin in _buf
        self._line_start = 0  # where the current (unterminated) line begins
        self._scan = 0  # up to here the current line holds no line terminator
        self._stream_started = False  # past the optional BOM
        # `_buf` holds an incomplete LF-only block not yet parsed (the fast path's carry-over;
        # the general framer's indices are all 0 meanwhile).
        self._raw = False
        self._error: StreamInterrupted | None = None  # raised by the next call once set
        self._data: list[str] | None = None
        self._event: str | None = None
        self._id: str | None = None

    @property
    def has_partial_event(self) -> bool:
        """Whether bytes of an event that never completed are held (meaningful at EOF)."""
        return bool(self._buf[self._block_start :].strip(b"\r\n"))

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Add one read's bytes; return the events it completed, in order."""
        buf = self._buf
        if not self._stream_started:
            buf += data
            if len(buf) < len(_BOM) and _BOM.startswith(bytes(buf)):
                return []
            self._stream_started = True
            if buf.startswith(_BOM):
                del buf[: len(_BOM)]
            data = bytes(buf)
            buf.clear()
        if self._error is not None:
            raise self._error
        if self._raw or not buf:
            return self._feed_fast(data)
        # The general framer holds part of a block: let it finish that block (if this read
        # ends it, LF-framed), then frame the rest of the read in place.
        end = self._raw_block_end(data)
        if end < 0:
            buf += data
            return self._run(final=False)
        buf += memoryview(data)[:end]
        events = self._run(final=False)
        if buf:  # the general framer still holds bytes: it frames the rest too
            buf += memoryview(data)[end:]
            return self._then_run(events)
        return events + self._feed_fast(data[end:])

    def _feed_fast(self, data: bytes) -> list[SSEEvent]:
        """`feed` at a block boundary, or with an LF-only partial block held raw (`_raw`)."""
        events: list[SSEEvent] = []
        start = 0
        if self._raw:
            end = self._raw_block_end(data)
            if end == _NO_END:
                self._buf += data
                return self._hold_raw(events)
            if end == _NEEDS_GENERAL:
                self._raw = False
                self._buf += data
                return self._run(final=False)
            block = bytes(self._buf) + data[:end]
            self._buf.clear()
            self._raw = False
            if self._fast(block, 0, events) != len(block):  # oversize: the framer raises
                self._buf += block
                return self._then_run(events)
            if self._error is not None:
                return self._failed(events)
            start = end
        done = self._fast(data, start, events)
        if self._error is not None:
            return self._failed(events)
        if done < len(data):
            self._buf += memoryview(data)[done:]
            return self._hold_raw(events)
        return events

    def _failed(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """The fast path met an event that is not UTF-8: the events before it now, the error
        at once if there are none (else on the next call)."""
        self._buf.clear()
        if not events and self._error is not None:
            raise self._error
        return events

    def _hold_raw(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """Keep the incomplete block in `_buf` unparsed if it is LF-only and within the
        limit (the next read completes it in `_feed_fast`); else the general framer."""
        buf = self._buf
        if len(buf) <= self._max_event_bytes and b"\r" not in buf:
            self._raw = True
            return events
        self._raw = False
        return self._then_run(events)

    def _raw_block_end(self, data: bytes) -> int:
        """Where in `data` the block held in `_buf` ends; `_NO_END` if it does not end in
        `data`, `_NEEDS_GENERAL` if `data` holds a CR before its end (CR framing)."""
        if self._buf[-1] == _LF and data[:1] == b"\n":
            return 1
        found = data.find(b"\n\n")
        end = len(data) if found < 0 else found + 2
        if data.find(b"\r", 0, end) >= 0:
            return _NEEDS_GENERAL
        return _NO_END if found < 0 else end

    def finish(self) -> list[SSEEvent]:
        """The stream ended: return what a trailing CR completed (see `has_partial_event`)."""
        self._stream_started = True
        return self._run(final=True)

    def _then_run(self, events: list[SSEEvent]) -> list[SSEEvent]:
        """`events`, then those the general framer completes; an oversize event after them
        fails the next call, as in `_run`."""
        try:
            more = self._run(final=False)
        except StreamInterrupted:
            if events:
                return events  # `_run` kept the error for the next call
            raise
        return events + more if events else more

    def _run(self, *, final: bool) -> list[SSEEvent]:
        if self._error is not None:
            raise self._error
        events: list[SSEEvent] = []
        try:
            self._frame(self._buf, events, final=final)
        except (EventTooLarge, UpstreamProtocolError) as exc:
            # Events completed before the oversize (or non-UTF-8) one still belong to the
            # client: return them now and fail on the next call.
            self._error = exc
            self._buf.clear()
            if not events:
                raise
            return events
        self._compact(self._buf)
        return events

    def _frame(self, buf: bytearray, events: list[SSEEvent], *, final: bool) -> None:
        size = len(buf)
        # The next LF at or after `_scan`, kept across lines: searching afresh for each line
        # would rescan the rest of the buffer per CR-terminated line (quadratic for CR-only
        # streams). -1 means none up to `size`, which stays true while this call runs.
        lf = buf.find(b"\n", self._scan)
        while True:
            start = self._line_start
            if 0 <= lf < self._scan:
                lf = buf.find(b"\n", self._scan)
            cr = buf.find(b"\r", self._scan, lf if lf >= 0 else size)
            if cr >= 0:
                if cr + 1 == size and not final:
                    self._scan = cr  # CR or CRLF? The next read (or the end) tells.
                    break
                end = cr
                after = cr + 2 if cr + 1 < size and buf[cr + 1] == _LF else cr + 1
            elif lf >= 0:
                end, after = lf, lf + 1
            else:
                self._scan = size
                break
            self._line_start = self._scan = after
            if end == start:
                self._end_block(buf, after, events)
            else:
                self._field(buf[start:end])
        if size - self._block_start > self._max_event_bytes:
            raise EventTooLarge(limit=self._max_event_bytes)

    def _fast(self, data: bytes, start: int, events: list[SSEEvent]) -> int:
        """Append the events of the LF-only blocks of `data` from `start`; return their end.

        Called at a block boundary with nothing carried over. Stops at the first block that
        is incomplete, holds a CR or is oversized: the general framer takes the rest and
        yields the same events for it.
        """
        size = len(data)
        limit = self._max_event_bytes
        no_cr = b"\r" not in data
        while start < size:
            if data[start] == _LF:  # a blank line outside any event
                start += 1
                continue
            end = data.find(b"\n\n", start)
            if end < 0:
                break
            after = end + 2
            if after - start > limit or not (no_cr or data.find(b"\r", start, after) < 0):
                break
            newline = data.find(b"\n", start, end)
            if newline < 0 and data.startswith(b"data:", start):
                # One `data:` line: the common event, no per-line work.
                skip = 6 if data.startswith(b" ", start + 5) else 5
                try:
                    text = data[start + skip : end].decode("utf-8")
                except UnicodeDecodeError:
                    self._error = UpstreamProtocolError(_NOT_UTF8)
                    return size
                events.append(_new_event(SSEEvent, (data[start:after], text, None, None)))
            elif (
                data.startswith(b"event:", start)
                and data.startswith(b"data:", newline + 1)
                and data.find(b"\n", newline + 1, end) < 0
            ):
                # `event: X` then one `data:` line: every Responses and Messages event.
                name_at = start + (7 if data.startswith(b" ", start + 6) else 6)
                text_at = newline + (7 if data.startswith(b" ", newline + 6) else 6)
                try:
                    name = data[name_at:newline].decode("utf-8")
                    text = data[text_at:end].decode("utf-8")
                except UnicodeDecodeError:
                    self._error = UpstreamProtocolError(_NOT_UTF8)
                    return size
                events.append(_new_event(SSEEvent, (data[start:after], text, name, None)))
            else:
                for line in data[start:end].split(b"\n"):
                    self._field(line)
                try:
                    self._emit(data[start:after], events)
                except UpstreamProtocolError as exc:
                    self._error = exc
                    return size
            start = after
        return start

    def _field(self, line: bytes | bytearray) -> None:
        if line[0] == 0x3A:  # ':' comment
            return
        colon = line.find(b":")
        name: bytes | bytearray
        value: bytes | bytearray
        if colon < 0:
            name, value = line, b""
        else:
            name = line[:colon]
            value = line[colon + 2 :] if line[colon + 1 : colon + 2] == b" " else line[colon + 1 :]
        if name == b"data":
            text = value.decode("utf-8", "replace")
            if self._data is None:
                self._data = [text]
            else:
                self._data.append(text)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._id = value.decode("utf-8", "replace")

    def _end_block(self, buf: bytearray, after: int, events: list[SSEEvent]) -> None:
        start = self._block_start
        self._block_start = after
        if after - start > self._max_event_bytes:
            raise EventTooLarge(limit=self._max_event_bytes)
        if after - start <= 2 and not buf[start:after].strip(b"\r\n"):
            return  # a blank line outside any event
        self._emit(bytes(buf[start:after]), events)

    def _emit(self, raw: bytes, events: list[SSEEvent]) -> None:
        """End the block `raw` whose fields were parsed: append its event (unless dropped)."""
        data = self._data
        self._data = None
        if data is not None or self._keep_dataless:
            if not raw.isascii():
                # Every byte the client gets must be UTF-8, comments and unknown fields too
                # (the field values were decoded leniently: this is the judge).
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise UpstreamProtocolError(_NOT_UTF8) from None
            text = None if data is None else "\n".join(data)
            events.append(SSEEvent(raw, text, self._event, self._id))
        self._event = None
        self._id = None

    def _compact(self, buf: bytearray) -> None:
        """Drop consumed bytes so the buffer holds only the current incomplete event."""
        drop = self._block_start
        if drop:
            del buf[:drop]
            self._block_start = 0
            self._line_start -= drop
            self._scan -= drop
