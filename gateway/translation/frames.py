"""The client events an encoder writes (`StreamEncoder.events`), made from what it knows.

An encoder writes its payloads as compact JSON (`compact_json`): one line, no CR or LF, ASCII
only. An event built here from such a payload is exactly the `SSEEvent` an `SSEDecoder` reads
from the event's frame (a property test holds the two to that), so a translated stream reads
back none of the frames it writes itself. A frame made elsewhere - a dialect's error event -
is read as a decoder reads it (`read_frame`). `json_string` writes the one variable field of
a frame an encoder makes once per stream or item (a delta's text) as `compact_json` would.
"""

from __future__ import annotations

import json

import orjson

from gateway.streaming import SSEDecoder, SSEEvent

__all__ = ["data_event", "json_string", "named_event", "read_frame"]

#: `SSEEvent(...)` without the named tuple's Python-level `__new__` (once per written event).
_new_event = tuple.__new__


def data_event(frame: bytes) -> SSEEvent:
    """The event of the frame `data: <payload>\\n\\n`, its payload one line of ASCII JSON."""
    return _new_event(SSEEvent, (frame, frame[6:-2].decode("ascii"), None, None))


def named_event(name: str, payload: bytes) -> SSEEvent:
    """The event `event: <name>` with `data: <payload>` (one line of ASCII JSON)."""
    frame = b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"
    return _new_event(SSEEvent, (frame, payload.decode("ascii"), name, None))


def read_frame(frame: bytes) -> list[SSEEvent]:
    """The events of a whole frame written elsewhere (a dialect's error event), as an
    `SSEDecoder` reads them."""
    decoder = SSEDecoder(max_event_bytes=len(frame) + 1, keep_dataless=False)
    return decoder.feed(frame)


def json_string(text: str) -> bytes:
    """`text` as a JSON string, ASCII-only as `compact_json` writes it: a delta's variable
    field, written into a frame made once (several times cheaper than dumping the delta).

    orjson for ASCII text (`str.isascii` is a flag, not a scan) without DEL, which `json`
    escapes and orjson does not; there the two write the same bytes (a property test holds
    them to it). `json` for the rest: orjson writes other text as UTF-8, not `\\u` escapes."""
    if text.isascii():
        dumped = orjson.dumps(text)
        if 0x7F not in dumped:  # a byte's value: a memchr (a one-byte bytes needle is not)
            return dumped
    return json.dumps(text).encode("ascii")
