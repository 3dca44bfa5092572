"""The bench's wire format, shared by the mock upstream and the load generator.

A bench request is an ordinary OpenAI streaming request whose user message carries the stream's
shape, `bench n=<chunks> d=<seconds between chunks> rid=<request id>`: the gateway forwards the
client's body, so the upstream reads the same words whichever proxy sits in between.

Every chunk the upstream sends is a valid `chat.completion.chunk` whose `id` holds the
CLOCK_MONOTONIC time (ns, 20 digits) at which it was written. The proxies relay bytes, so the
stamp is found at the same offset in the client's copy (`STAMP_SLICE`), and receive time minus
stamp is the event's latency through the whole path (one host, one clock for all processes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = [
    "CHAT_PATH",
    "CLOSES_PATH",
    "DONE_EVENT",
    "FINISH_PATH",
    "MODEL",
    "STAMP_SLICE",
    "StreamShape",
    "chunk_bytes",
    "final_chunk_bytes",
    "first_chunk_bytes",
    "request_body",
]

MODEL = "m"
CHAT_PATH = "/v1/chat/completions"
#: The upstream's control endpoint: GET returns and forgets the recorded connection closes.
CLOSES_PATH = "/_bench/closes"
#: The upstream's control endpoint: GET sends the rest of every paced stream at once.
FINISH_PATH = "/_bench/finish"

_PREFIX = b'data: {"id":"chatcmpl-'
_HEAD = (
    b'","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,'
)
#: Where the 20-digit send stamp sits in every data event (the event starts at `data:`).
STAMP_SLICE = slice(len(_PREFIX), len(_PREFIX) + 20)
_TEMPLATE = _PREFIX + b"%020d" + _HEAD + b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
_FIRST = (
    _PREFIX
    + b"%020d"
    + _HEAD
    + (b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n')
)
_FINAL = _PREFIX + b"%020d" + _HEAD + b'"delta":{},"finish_reason":"stop"}]}\n\n'
DONE_EVENT = b"data: [DONE]"

_SHAPE = re.compile(rb"bench n=(\d+) d=([0-9.]+) rid=(\d+)")


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What the upstream streams for one request: `chunks` data events, `delay` apart.

    The first is the role chunk, the last the `finish_reason: "stop"` chunk (so `chunks >= 2`),
    then `data: [DONE]`. The first is sent at once, the others `delay` seconds apart.
    """

    chunks: int
    delay: float
    rid: int

    def marker(self) -> str:
        return f"bench n={self.chunks} d={self.delay:g} rid={self.rid}"

    @classmethod
    def parse(cls, body: bytes) -> StreamShape | None:
        found = _SHAPE.search(body)
        if found is None:
            return None
        return cls(int(found[1]), float(found[2]), int(found[3]))


def request_body(shape: StreamShape) -> bytes:
    """The JSON body of a streaming chat request asking for `shape`."""
    return json.dumps(
        {
            "model": MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": shape.marker()}],
        },
        separators=(",", ":"),
    ).encode()


def first_chunk_bytes(stamp_ns: int) -> bytes:
    """The role-announcing first chunk, as OpenAI sends it."""
    return _FIRST % stamp_ns


def chunk_bytes(stamp_ns: int) -> bytes:
    """One content chunk (about 190 bytes on the wire, like a real one-token chunk)."""
    return _TEMPLATE % stamp_ns


def final_chunk_bytes(stamp_ns: int) -> bytes:
    """The chunk with `finish_reason: "stop"`, followed on the wire by `data: [DONE]`."""
    return _FINAL % stamp_ns
