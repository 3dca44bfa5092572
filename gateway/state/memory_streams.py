"""`MemoryStreamBuffers`: the buffers of resumable streams in this process.

Each buffer is a deque of `(id, frame)` within `max_events` and `max_bytes` (the oldest go
first), and the readers waiting for more: a future per waiting reader, woken by the next
`append` or `end` - so a live reader costs nothing while it waits and one wake-up per batch.
An ended buffer is dropped `ttl` seconds later (a timer), with its aliases. No stream here is
ever taken over (`gateway.state.stream_buffers`): the request given at `create` is not kept.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from gateway.state.stream_buffers import CANCELLED, GAP, LIVE, StreamInfo, Takeover

__all__ = ["MemoryStream", "MemoryStreamBuffers", "MemoryStreamReader"]


class MemoryStream:
    """One buffer: the kept frames, the stream's status, its waiting readers."""

    __slots__ = (
        "_cancel",
        "_max_bytes",
        "_max_events",
        "_on_end",
        "_waiters",
        "dropped_through",
        "frames",
        "info",
        "kept_after",
        "last_id",
        "size",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: str,
        info: StreamInfo,
        *,
        max_events: int,
        max_bytes: int,
        on_end: Callable[[MemoryStream], None] | None = None,
        after: int = 0,
    ) -> None:
        """`after`: the id its first event follows (a stream taken over: those before are
        elsewhere, not here)."""
        self.stream_id = stream_id
        self.info = info
        self.frames: deque[tuple[int, bytes]] = deque()
        self.size = 0
        self.last_id = after
        self.dropped_through = after  # every id up to this one is no longer kept
        self.kept_after = after  # the events up to this one were never kept here
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._waiters: list[asyncio.Future[None]] = []
        self._cancel: Callable[[], None] | None = None
        self._on_end = on_end

    @property
    def live(self) -> bool:
        return self.info.status == LIVE

    def append(self, first_id: int, frames: Sequence[bytes]) -> None:
        if not self.live:
            return
        kept = self.frames
        for offset, frame in enumerate(frames):
            kept.append((first_id + offset, frame))
            self.size += len(frame)
        self.last_id = first_id + len(frames) - 1
        while kept and (len(kept) > self._max_events or self.size > self._max_bytes):
            dropped_id, dropped = kept.popleft()
            self.size -= len(dropped)
            self.dropped_through = dropped_id
        self._wake()

    def end(self, status: str) -> None:
        if not self.live:
            return
        self.info = StreamInfo(self.info.owner, self.info.api, status, self.info.route)
        self._cancel = None
        self._wake()
        if self._on_end is not None:
            self._on_end(self)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        self._cancel = callback

    def cancel(self) -> None:
        """Stop the producer; a producer that never listened (or is gone) is ended here."""
        callback, self._cancel = self._cancel, None
        if callback is not None:
            callback()
        elif self.live:
            self.end(CANCELLED)

    def after(self, last_id: int) -> bytes | None:
        """The frames after `last_id`, joined (None: nothing new)."""
        if self.last_id <= last_id:
            return None
        kept = self.frames
        start = len(kept) - (self.last_id - last_id)
        if start <= 0:
            return b"".join(frame for _, frame in kept)
        return b"".join(kept[i][1] for i in range(start, len(kept)))

    async def changed(self) -> None:
        """Return at the next append or end."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class MemoryStreamReader:
    """A `StreamReader` of one `MemoryStream` (None: a stream that does not exist)."""

    __slots__ = ("_ending", "_stream", "last_id")

    def __init__(self, stream: MemoryStream | None, after: int) -> None:
        self._stream = stream
        self.last_id = after
        self._ending = GAP if stream is None else ""

    @property
    def ending(self) -> str:
        return self._ending

    async def next(self) -> bytes | None:
        stream = self._stream
        if stream is None or self._ending:
            return None
        if self.last_id < stream.dropped_through:
            self._ending = GAP
            return None
        while True:
            data = stream.after(self.last_id)
            if data is not None:
                self.last_id = stream.last_id
                return data
            if not stream.live:
                self._ending = stream.info.status
                return None
            await stream.changed()


class MemoryStreamBuffers:
    """`StreamBuffers` in this process: each buffer kept `ttl` seconds after its end."""

    def __init__(self, *, ttl: float, max_events: int, max_bytes: int) -> None:
        self._ttl = ttl
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._streams: dict[str, MemoryStream] = {}
        self._aliases: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._streams)

    async def create(self, stream_id: str, info: StreamInfo, request: bytes = b"") -> MemoryStream:
        return self.make(stream_id, info)

    async def take_over(self, stream_id: str, after: int) -> Takeover | None:
        return None  # see the module: no stream of this process is ever orphaned

    def make(self, stream_id: str, info: StreamInfo, after: int = 0) -> MemoryStream:
        """`create` without waiting (a shared store keeps its local copies here); `after`:
        the id its first event follows."""
        stream = MemoryStream(
            stream_id,
            info,
            max_events=self._max_events,
            max_bytes=self._max_bytes,
            on_end=self._ended,
            after=after,
        )
        self._streams[stream_id] = stream
        return stream

    def stream(self, stream_id: str) -> MemoryStream | None:
        return self._streams.get(stream_id)

    async def info(self, stream_id: str) -> StreamInfo | None:
        stream = self._streams.get(stream_id)
        return None if stream is None else stream.info

    def reader(self, stream_id: str, after: int) -> MemoryStreamReader:
        return MemoryStreamReader(self._streams.get(stream_id), after)

    async def cancel(self, stream_id: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.cancel()

    async def name(self, alias: str, stream_id: str) -> None:
        if stream_id in self._streams:
            self._aliases[alias] = stream_id

    async def named(self, alias: str) -> str | None:
        stream_id = self._aliases.get(alias)
        if stream_id is not None and stream_id not in self._streams:
            del self._aliases[alias]
            return None
        return stream_id

    def close(self) -> None:
        """Drop every buffer and its timer (the app stops)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._streams.clear()
        self._aliases.clear()

    def _ended(self, stream: MemoryStream) -> None:
        stream_id = stream.stream_id
        if self._streams.get(stream_id) is not stream:
            return
        loop = asyncio.get_running_loop()
        self._timers[stream_id] = loop.call_later(self._ttl, self._drop, stream_id)

    def _drop(self, stream_id: str) -> None:
        self._timers.pop(stream_id, None)
        self._streams.pop(stream_id, None)
        for alias in [a for a, s in self._aliases.items() if s == stream_id]:
            del self._aliases[alias]
