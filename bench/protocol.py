"""The bench's wire format, shared by the mock upstream and the load generator.

A bench request is an ordinary OpenAI streaming request whose user text carries the stream's
shape, `bench n=<chunks> d=<seconds between chunks> rid=<request id>`: the gateway forwards the
client's body, so the upstream reads the same words whichever proxy sits in between.

Three APIs stream it (`WireApi`: `CHAT`, `RESPONSES`, `MESSAGES`), with the same number of
events, each of its API's real size, so a relay's cost per event compares across them:

- `chat`, `POST /v1/chat/completions`: `n` `chat.completion.chunk` data events (the first with
  the role, the last with `finish_reason: "stop"`), then `data: [DONE]`;
- `responses`, `POST /v1/responses`: `n` typed events numbered by `sequence_number` from 0,
  `response.created`, `n - 2` `response.output_text.delta`, then `response.completed` with the
  usage (the terminal event: there is no `[DONE]`);
- `messages`, `POST /v1/messages` (Anthropic's): `message_start` (the input usage),
  `content_block_start` of a text block, `n - 5` `content_block_delta` text deltas (about 130
  bytes, as Anthropic's are), `content_block_stop`, `message_delta` (`stop_reason: end_turn`, the
  output usage), `message_stop`.

A route whose target speaks another API than its client's translates the stream event by event
(`StreamShape.upstream`): Messages served to a chat client arrive as chat chunks, and
`WireApi.relayed_as` says how many a client counts.

Every event carries the CLOCK_MONOTONIC time (ns, 20 digits) at which it was written: in the
chunk's `id` on chat (at a fixed offset, `STAMP_SLICE`), in the `obfuscation` field on
Responses (the padding field OpenAI puts on delta events; on the two framing events too, so
every event has one). The proxies relay bytes, so the client finds the stamp in its copy, and
receive time minus stamp is the event's latency through the whole path (one host, one clock).
On Messages, which has no padding field, the stamp is the text of each delta (and the id of
`message_start`); its other framing events carry none (`stamp` raises), so per-event latencies
are not measured there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "APIS",
    "CHAT",
    "CLOSES_PATH",
    "FINISH_PATH",
    "MESSAGES",
    "MODEL",
    "RESPONSES",
    "STAMP_SLICE",
    "WIRES",
    "StreamShape",
    "WireApi",
]

MODEL = "m"
#: The upstream's control endpoint: GET returns and forgets the recorded connection closes.
CLOSES_PATH = "/_bench/closes"
#: The upstream's control endpoint: GET sends the rest of every paced stream at once.
FINISH_PATH = "/_bench/finish"


class WireApi:
    """One API a bench stream speaks: its path, its request, its events, how a client reads them.

    A client counts the events that start with one of `counted` (the stream's data events,
    `StreamShape.chunks` of them), and the stream is over at the event that starts with
    `done` (on Responses that event is itself counted: `done_is_counted`).
    """

    name: str
    path: str  # the client's path; the upstream's ends with what follows `/v1`
    counted: tuple[bytes, ...]
    done: bytes
    done_is_counted: bool
    end_name: str  # what ends a stream, in error messages

    @property
    def upstream_suffix(self) -> str:
        return self.path.removeprefix("/v1")

    def request_body(self, shape: StreamShape) -> bytes:
        """The JSON body of a streaming request asking for `shape`."""
        return json.dumps(
            {"model": MODEL, "stream": True, **self._input(shape.marker())}, separators=(",", ":")
        ).encode()

    def _input(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def event(self, index: int, total: int, stamp_ns: int) -> bytes:
        """Event `index` of a stream of `total` (what ends the stream included), stamped."""
        raise NotImplementedError

    def stamp(self, event: bytes) -> int:
        """The send stamp in a counted event; ValueError if it has none."""
        raise NotImplementedError

    def relayed_stamp(self, client: WireApi) -> Callable[[bytes], int | None]:
        """How a client of `client` finds the send stamp in an event of this API's stream
        translated for it (`reaches`): None for an event that carries none."""
        if client is self:
            return client.stamp
        raise ValueError(f"the bench does not translate {self.name} for {client.name} clients")

    def reaches(self, client: WireApi) -> bool:
        """Whether the bench counts this API's stream translated for a client of `client`
        (its own API always: nothing is translated)."""
        return client is self

    def relayed_as(self, client: WireApi, chunks: int) -> int:
        """The events a client of `client` counts when a stream of `chunks` events on this API
        reaches it (`reaches`; ValueError otherwise)."""
        if client is self:
            return chunks
        raise ValueError(f"the bench does not translate {self.name} for {client.name} clients")


_PREFIX = b'data: {"id":"chatcmpl-'
_HEAD = (
    b'","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,'
)
#: Where the 20-digit send stamp sits in every chat data event (the event starts at `data:`).
STAMP_SLICE = slice(len(_PREFIX), len(_PREFIX) + 20)
_CHUNK = _PREFIX + b"%020d" + _HEAD + b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
_FIRST = (
    _PREFIX
    + b"%020d"
    + _HEAD
    + (b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n')
)
_FINAL = _PREFIX + b"%020d" + _HEAD + b'"delta":{},"finish_reason":"stop"}]}\n\n'
_DONE = b"data: [DONE]"


class _Chat(WireApi):
    name = "chat"
    path = "/v1/chat/completions"
    counted = (b"data: {",)
    done = _DONE
    done_is_counted = False
    end_name = "[DONE]"

    def _input(self, text: str) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": text}]}

    def event(self, index: int, total: int, stamp_ns: int) -> bytes:
        """The role chunk, content chunks of about 190 bytes (a real one-token chunk's size),
        the `finish_reason: "stop"` chunk followed by `data: [DONE]`."""
        if index == 0:
            return _FIRST % stamp_ns
        if index < total - 1:
            return _CHUNK % stamp_ns
        return _FINAL % stamp_ns + _DONE + b"\n\n"

    def stamp(self, event: bytes) -> int:
        return int(event[STAMP_SLICE])


_STAMP_KEY = b'"obfuscation":"'
_RESPONSE = (
    b'"response":{"id":"resp_bench","object":"response","created_at":1700000000,'
    b'"status":"%s","model":"m","output":[],"usage":%s}}\n\n'
)
_CREATED = (
    b'event: response.created\ndata: {"type":"response.created","sequence_number":%d,'
    + _STAMP_KEY
    + b'%020d",'
    + _RESPONSE
)
_DELTA = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":%d,"item_id":"msg_bench","output_index":0,"content_index":0,'
    b'"delta":"tok ","logprobs":[],' + _STAMP_KEY + b'%020d"}\n\n'
)
_COMPLETED = (
    b'event: response.completed\ndata: {"type":"response.completed","sequence_number":%d,'
    + _STAMP_KEY
    + b'%020d",'
    + _RESPONSE
)
_USAGE = (
    b'{"input_tokens":8,"input_tokens_details":{"cached_tokens":0},"output_tokens":%d,'
    b'"output_tokens_details":{"reasoning_tokens":0},"total_tokens":%d}'
)


class _Responses(WireApi):
    name = "responses"
    path = "/v1/responses"
    counted = (
        b"event: response.output_text.delta\n",
        b"event: response.created\n",
        b"event: response.completed\n",
    )
    done = b"event: response.completed\n"
    done_is_counted = True
    end_name = "response.completed"

    def _input(self, text: str) -> dict[str, Any]:
        return {"input": text}

    def event(self, index: int, total: int, stamp_ns: int) -> bytes:
        """`response.created`, deltas of about 220 bytes, `response.completed` with usage."""
        if index == 0:
            return _CREATED % (index, stamp_ns, b"in_progress", b"null")
        if index < total - 1:
            return _DELTA % (index, stamp_ns)
        usage = _USAGE % (total - 2, total + 6)
        return _COMPLETED % (index, stamp_ns, b"completed", usage)

    def stamp(self, event: bytes) -> int:
        at = event.find(_STAMP_KEY)
        if at < 0:
            raise ValueError("no stamp")
        start = at + len(_STAMP_KEY)
        return int(event[start : start + 20])


def _anthropic(kind: bytes, json_body: bytes) -> bytes:
    return b"event: " + kind + b'\ndata: {"type":"' + kind + b'"' + json_body + b"}\n\n"


_MESSAGE_START = _anthropic(
    b"message_start",
    b',"message":{"id":"msg_%020d","type":"message","role":"assistant","model":"m",'
    b'"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":8,'
    b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}',
)
_BLOCK_START = _anthropic(
    b"content_block_start", b',"index":0,"content_block":{"type":"text","text":""}'
)
_TEXT_KEY = b'"text_delta","text":"'
_TEXT_DELTA = _anthropic(
    b"content_block_delta", b',"index":0,"delta":{"type":' + _TEXT_KEY + b'%020d "}'
)
_BLOCK_STOP = _anthropic(b"content_block_stop", b',"index":0')
_MESSAGE_DELTA = _anthropic(
    b"message_delta",
    b',"delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":%d}',
)
_MESSAGE_STOP = _anthropic(b"message_stop", b"")
_MESSAGE_ID = b'"id":"msg_'


class _Messages(WireApi):
    name = "messages"
    path = "/v1/messages"
    counted = tuple(
        b"event: %s\n" % kind
        for kind in (
            b"message_start",
            b"content_block_start",
            b"content_block_delta",
            b"content_block_stop",
            b"message_delta",
            b"message_stop",
        )
    )  # every event of the stream is one of the `chunks`; `ping` and `error` are not
    done = b"event: message_stop\n"
    done_is_counted = True
    end_name = "message_stop"

    def _input(self, text: str) -> dict[str, Any]:
        return {"max_tokens": 100_000, "messages": [{"role": "user", "content": text}]}

    def event(self, index: int, total: int, stamp_ns: int) -> bytes:
        """`message_start`, `content_block_start`, text deltas whose text is the stamp and a
        space (a delta of a few tokens), `content_block_stop`, `message_delta`, `message_stop`.
        A stream of fewer than 6 events has no delta (and of 4, no `content_block_stop`)."""
        if index == 0:
            return _MESSAGE_START % stamp_ns
        if index == total - 1:
            return _MESSAGE_STOP
        if index == total - 2:
            return _MESSAGE_DELTA % max(0, total - 5)
        if index == 1:
            return _BLOCK_START
        if index == total - 3:
            return _BLOCK_STOP
        return _TEXT_DELTA % stamp_ns

    def stamp(self, event: bytes) -> int:
        for key in (_TEXT_KEY, _MESSAGE_ID):
            at = event.find(key)
            if at >= 0:
                start = at + len(key)
                return int(event[start : start + 20])
        raise ValueError("no stamp")

    def relayed_as(self, client: WireApi, chunks: int) -> int:
        """A chat client counts the role chunk (from `message_start`), one chunk per text delta
        and the finish chunk (`message_delta`); the block's start and stop and `message_stop`
        have no chunk (the usage chunk the gateway writes at the end is dropped for a client
        that did not ask for it, and `[DONE]` is not counted)."""
        if client is CHAT:
            return max(0, chunks - 5) + 2
        return super().relayed_as(client, chunks)

    def reaches(self, client: WireApi) -> bool:
        return client is self or client is CHAT

    def relayed_stamp(self, client: WireApi) -> Callable[[bytes], int | None]:
        """A chat client finds the stamp of a text delta in its chunk's `content` (the text
        is the stamp and a space); the role and finish chunks carry none."""
        if client is not CHAT:
            return super().relayed_stamp(client)
        return _content_stamp


_CONTENT_KEY = b'"content":"'


def _content_stamp(event: bytes) -> int | None:
    at = event.find(_CONTENT_KEY)
    digits = event[at + len(_CONTENT_KEY) : at + len(_CONTENT_KEY) + 20] if at >= 0 else b""
    return int(digits) if len(digits) == 20 and digits.isdigit() else None


CHAT: WireApi = _Chat()
RESPONSES: WireApi = _Responses()
MESSAGES: WireApi = _Messages()
#: The APIs a bench client speaks through a relay, by name (`bench.run --apis`).
APIS: dict[str, WireApi] = {api.name: api for api in (CHAT, RESPONSES)}
#: Every API the bench upstream streams: those, and Messages for a translating route.
WIRES: dict[str, WireApi] = {**APIS, MESSAGES.name: MESSAGES}

_SHAPE = re.compile(rb"bench n=(\d+) d=([0-9.]+) rid=(\d+)")


@dataclass(frozen=True, slots=True)
class StreamShape:
    """What the upstream streams for one request on `api`: `chunks` events, `delay` apart.

    The first and the last are the API's framing events (so `chunks >= 2`); the first is sent
    at once, the others `delay` seconds apart. `api` is the client's; `upstream` is the API
    the upstream streams it in when the route translates (None: the client's own).
    """

    chunks: int
    delay: float
    rid: int
    api: WireApi = CHAT
    upstream: WireApi | None = None

    @property
    def expected_events(self) -> int:
        """The events the client counts: `chunks`, or what a translation makes of them."""
        if self.upstream is None:
            return self.chunks
        return self.upstream.relayed_as(self.api, self.chunks)

    def marker(self) -> str:
        return f"bench n={self.chunks} d={self.delay:g} rid={self.rid}"

    @classmethod
    def parse(cls, body: bytes, api: WireApi) -> StreamShape | None:
        found = _SHAPE.search(body)
        if found is None:
            return None
        return cls(int(found[1]), float(found[2]), int(found[3]), api)
