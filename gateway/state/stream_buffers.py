"""`StreamBuffers`: where the events of resumable streams are kept, for the clients that come
back for them.

A resumable stream's events are numbered by the server (1, 2, 3 ... per stream: the `id:` line
each event carries) and kept, in order, in the stream's buffer: its producer (the task reading
the upstream) `append`s each relayed batch - one call per batch, never one per event - and
`end`s it with its final status; readers (`reader(stream_id, after)`) replay what came after
an id and then follow the live tail to the end. A buffer is kept `resume_ttl` seconds after its
end, at most `max_events` events and `max_bytes` bytes (the oldest go first: a reader that
asks for events no longer kept is told so, `GAP`, and never given a stream with a hole).

Each buffer belongs to the gateway key's holder that made it (`StreamInfo.owner`); the server
checks it before any read or cancel. A buffer may also be found by another name (`name`): the
id of the response a translated background stream made, so its Responses follow-ups find it.

`MemoryStreamBuffers` (`gateway.state.memory_streams`) keeps them in this process;
`RedisStreamBuffers` (`gateway.state.redis_streams`) in Redis, so that any replica resumes any
stream, and keeps a lease per live stream: a reader that finds the lease gone while the stream
is not over knows its producer died (`ORPHANED`).

A stream may be *taken over* (`take_over`): a replica that finds a stream orphaned claims it
(one taker only: the claim is the lease itself, set only where none is held), gets the
client's request the stream was made for (`create(..., request=)`: opaque bytes to this
package, kept with the stream's metadata for as long as its events are) and a writer that
goes on numbering after the last event kept; it continues the answer there, and every reader
follows its tail as it followed the dead producer's. The memory store never has a stream to
take over: its producer is this process, which either still runs it or ended it with a final
status, and a restart loses its buffers with it (so it keeps no request, and `take_over`
answers None).

What runs in a producer's hot path never waits (`append`, `end`): a shared store sends those
in the background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "GAP",
    "LIVE",
    "ORPHANED",
    "StreamBuffers",
    "StreamInfo",
    "StreamReader",
    "StreamWriter",
    "Takeover",
]

#: A stream still being produced.
LIVE: Final = "live"
#: Final statuses a producer ends its stream with.
COMPLETED: Final = "completed"
FAILED: Final = "failed"  # it ended with an error event (which is kept, as its last event)
CANCELLED: Final = "cancelled"
#: How a read can end without a final status: the events asked for are no longer kept, or the
#: stream's producer is gone (its replica died) before it ended the stream.
GAP: Final = "gap"
ORPHANED: Final = "orphaned"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Whose a stream is, in which API it speaks, and how far it got."""

    owner: str | None  # the gateway key holder's name (None: no gateway keys)
    api: str  # the client's API (`Api.name`): errors about the stream are in its dialect
    status: str = LIVE
    #: The route it was relayed on (a continuation after its producer died needs it).
    route: str = ""


class StreamWriter(Protocol):
    """The producer's side of one buffer."""

    def append(self, first_id: int, frames: Sequence[bytes]) -> None:
        """Keep `frames`, numbered `first_id`, `first_id + 1` ... (consecutive across calls).
        Never waits."""
        ...

    def end(self, status: str) -> None:
        """The stream is over with `status` (`COMPLETED`, `FAILED`, `CANCELLED`); it is kept
        `resume_ttl` from now. Idempotent; never waits."""
        ...

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once) when the stream is cancelled (`StreamBuffers.cancel`, from
        any replica) before it ended."""
        ...


@dataclass(frozen=True, slots=True)
class Takeover:
    """An orphaned stream this replica now produces (`StreamBuffers.take_over`)."""

    info: StreamInfo
    writer: StreamWriter  # appends from `last_id + 1`; refreshes the claimed lease
    last_id: int  # the last event kept when it was taken over
    request: bytes  # the request given at `create` (b"": none was kept)


class StreamReader(Protocol):
    """One reader of one buffer: the events after an id, then the live tail."""

    @property
    def last_id(self) -> int:
        """The id of the last event read (the `after` given, before the first)."""
        ...

    @property
    def ending(self) -> str:
        """Once `next()` returned None: the stream's final status, `GAP` or `ORPHANED`."""
        ...

    async def next(self) -> bytes | None:
        """The next events (whole frames, joined), waiting for the producer when the reader
        has caught up; None once the stream is over and every kept event was read."""
        ...


class StreamBuffers(Protocol):
    """The buffers of the resumable streams."""

    async def create(self, stream_id: str, info: StreamInfo, request: bytes = b"") -> StreamWriter:
        """A new buffer (`stream_id`: unguessable, made by the server); `request` (the
        client's, as the server encodes it) is kept with it where a stream can be taken
        over."""
        ...

    async def take_over(self, stream_id: str, after: int) -> Takeover | None:
        """Claim `stream_id` if it is orphaned (live, its producer's lease gone) and a reader
        that read through event `after` can go on from what is kept (`after` is not past
        the last event kept): one caller wins, every other gets None, as does a stream that
        is not orphaned (ended, or produced: by this replica or another)."""
        ...

    async def info(self, stream_id: str) -> StreamInfo | None:
        """Whose `stream_id` is and its status; None if unknown or expired."""
        ...

    def reader(self, stream_id: str, after: int) -> StreamReader:
        """A reader of the events after id `after` (0: from the start)."""
        ...

    async def cancel(self, stream_id: str) -> None:
        """Ask the stream's producer (wherever it runs) to stop; a stream that is over stays
        as it ended."""
        ...

    async def name(self, alias: str, stream_id: str) -> None:
        """`alias` (a response id) finds `stream_id` from now on, as long as it is kept."""
        ...

    async def named(self, alias: str) -> str | None:
        """The stream `alias` names, if any."""
        ...
