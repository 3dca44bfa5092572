"""The wire-dialect protocol: what a stream's events mean, and how errors are written.

A `Dialect` is the streaming core's view of one API family; the families themselves live in
`gateway.apis` (one package each), so the relay never branches on a provider's or an API's
name. A dialect says:

- per event, through a per-stream `StreamTracker`: forward it, skip it (it cannot be what the
  dialect promises, e.g. OpenAI `data:` that is not JSON), drop it (it only answers what the
  gateway itself asked the upstream for: the client never asked for it), or end the stream
  after it (the terminal marker, or the upstream's own error payload); and whether the answer
  is complete (a final chunk with `finish_reason` / a `message_delta` with `stop_reason`);
- per event of an answer that has not begun (`opening`): whether it is only the answer's
  preamble (a role chunk, `message_start`, a ping, an empty delta), its content (text, a tool
  call, reasoning, its end), or the upstream's own error; until the content begins, the
  gateway may still restart the request elsewhere (contract section 2);
- what to append when an upstream ended cleanly after a complete answer but forgot its marker;
- how an error is written after the response is committed (`error_event`, contract section 5)
  and before (`error_body`, contract section 4);
- the tokens of the upstream's usage object, by kind (`tokens`: input, output, cached,
  reasoning, where this API's usage reports them).

Everything the gateway itself writes is built with `json.dumps` (ASCII-only, one line), so no
message, model name or upstream text can inject a line break into a frame.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any, ClassVar, TypeGuard, TypeVar

import msgspec

from gateway.streaming.sse import SSEEvent
from gateway.streaming.stream_error import StreamError

_fast_loads: Callable[[str], Any]
try:  # optional: the core stays pure stdlib (see `loads_object`)
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency of the gateway
    _fast_loads = json.loads

__all__ = [
    "HEARTBEAT",
    "TOKEN_KINDS",
    "Dialect",
    "Opening",
    "StreamTracker",
    "TokenCounts",
    "Verdict",
    "compact_json",
    "is_count",
    "loads_object",
    "shape_reader",
]

HEARTBEAT = b": ping\n\n"
_Shape = TypeVar("_Shape", bound=msgspec.Struct)


class Verdict(enum.IntEnum):
    """What the relay does with one upstream event."""

    FORWARD = 0
    SKIP = 1  # never reaches the client; counted and logged once per stream
    END = 2  # forward it, then end the stream cleanly (terminal marker)
    END_WITH_ERROR = 3  # forward it, then end: the upstream reported its own error
    #: Never reaches the client, by design: it answers only what the gateway itself asked the
    #: upstream for (e.g. stream usage); not malformed, neither counted nor logged as skipped.
    DROP = 4


class Opening(enum.IntEnum):
    """What one event is to an answer whose content has not begun (`Dialect.opening`)."""

    CONTENT = 0  # carries the answer (or ends it): the answer has begun
    PREAMBLE = 1  # carries none of it (a role, an id, a ping, an empty delta)
    ERROR = 2  # the upstream's own error, before any content: the call failed


#: Tokens an upstream reported, by kind (`TOKEN_KINDS`); a kind it did not report is absent.
TokenCounts = dict[str, int]

#: The kinds of tokens the gateway counts: every prompt token (`input`, cached ones included),
#: every generated one (`output`, reasoning included), and of those the prompt tokens read from
#: the provider's cache (`cached`) and the output tokens spent reasoning (`reasoning`).
TOKEN_KINDS = ("input", "output", "cached", "reasoning")


class StreamTracker:
    """Per-stream state a dialect keeps while events pass; one instance per stream."""

    __slots__ = ("answer_id", "complete", "skipped", "unasked_usage", "usage")

    def __init__(self) -> None:
        self.complete = False  # a chunk said the answer is complete
        self.skipped = 0  # events skipped as malformed
        self.usage: dict[str, Any] | None = None  # the latest usage object the upstream sent
        #: The current call's upstream was asked for stream usage its client did not ask for:
        #: the events that carry only that usage are dropped (`Verdict.DROP`). Set per call by
        #: the relay; a dialect that never asks ignores it.
        self.unasked_usage = False
        #: The id the upstream keeps this answer under, once an event said it (an API with
        #: stored answers: Responses' `response.created`); the relay takes it (sets None).
        self.answer_id: str | None = None

    def inspect(self, event: SSEEvent) -> Verdict:
        raise NotImplementedError


class Dialect:
    """Conventions of one API family. Stateless; safe to share across streams."""

    name: ClassVar[str]
    #: Appended when the upstream ended cleanly after a complete answer without its marker.
    completion_trailer: ClassVar[bytes]
    heartbeat: ClassVar[bytes] = HEARTBEAT
    #: Where this API's usage object holds each kind of token (`TOKEN_KINDS`): a path of keys.
    usage_paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "input": ("prompt_tokens",),
        "output": ("completion_tokens",),
        "cached": ("prompt_tokens_details", "cached_tokens"),
        "reasoning": ("completion_tokens_details", "reasoning_tokens"),
    }

    def tracker(self) -> StreamTracker:
        raise NotImplementedError

    def opening(self, event: SSEEvent) -> Opening:
        """What `event` is to an answer that has not begun. Asked of each event only until
        the first that is not `PREAMBLE`; the default takes every event for content (the
        answer begins at the first event)."""
        return Opening.CONTENT

    def answer_id(self, answer: Any) -> str | None:
        """The id a whole (JSON) answer is kept under by its upstream, for an API with stored
        answers; None for the others."""
        return None

    def error_event(self, error: StreamError, tracker: StreamTracker | None = None) -> bytes:
        """The one SSE frame that ends a committed stream with `error` (`tracker`: the
        stream's, for a dialect whose frames number themselves)."""
        raise NotImplementedError

    def error_body(self, error: StreamError) -> bytes:
        """The JSON body of an error answered with a real HTTP status."""
        raise NotImplementedError

    def tokens(self, usage: object) -> TokenCounts:
        """The tokens of an upstream's usage object by kind (whatever it is: only
        non-negative integers at this API's `usage_paths` count)."""
        if not isinstance(usage, dict):
            return {}
        counts: TokenCounts = {}
        for kind, path in self.usage_paths.items():
            value: object = usage
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if is_count(value):
                counts[kind] = value
        return counts


def is_count(value: object) -> TypeGuard[int]:
    """Whether `value` is a token count: a non-negative integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def compact_json(value: object) -> bytes:
    """`value` as one line of ASCII-only compact JSON: what the gateway itself writes."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def loads_object(data: str) -> dict[str, Any] | None:
    """An event's `data` parsed as a JSON object, or None if it is not one (the one parser
    of event JSON: trackers and the continuation splice use it).

    orjson when it is installed (several times faster, and this runs once per event); json
    when it is not, and as the judge when orjson refuses: orjson is stricter than the JSON
    the upstreams may send (integers beyond 64 bits, NaN), and a valid event must never be
    skipped.
    """
    try:
        value = _fast_loads(data)
    except ValueError:
        try:
            value = json.loads(data)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def shape_reader(shape: type[_Shape]) -> Callable[[str], _Shape | None]:
    """A reader of event JSON into `shape`: a `msgspec.Struct` naming only the fields a tracker
    looks at (each with a default), so the rest of the event is checked but never built.

    The reader answers None whenever the data is not a JSON object of that shape - malformed,
    not an object, a field of another type than the shape says, JSON msgspec refuses that
    `json` reads: the tracker then judges the event by `loads_object` (the judge), so the fast
    reading only ever decides what the judge would have decided. About twice as fast as
    `loads_object` on a typical chunk (it builds a delta's text, not the whole chunk).
    """
    decode = msgspec.json.Decoder(shape).decode

    def read(data: str) -> _Shape | None:
        try:
            return decode(data)
        except msgspec.MsgspecError:
            return None

    return read
