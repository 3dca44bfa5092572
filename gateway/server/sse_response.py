"""`SSEResponse`: the client side of a stream - when headers are committed, and heartbeats.

Headers are committed (contract section 2) at the first write: the first relayed upstream
event, or the first heartbeat, whichever comes first. Until then the handler may still answer
with a real HTTP status instead.

Heartbeats: while nothing has been written for `heartbeat` seconds, an SSE comment (`: ping`)
is written at an event boundary. The timer is one `TimerHandle`, re-armed lazily (a write costs
one clock read, no timer operation); a short-lived task is spawned only when a ping is due, so
a busy stream pays nothing for the feature. Each write is a whole frame in one call, so a ping
can never split an event; and no ping starts while a write waits on the client, so none can
follow a stream's last frame (the relay stops the heartbeat once that write returned).

Backpressure: the client connection's write buffer pauses writing above `_WRITE_HIGH` bytes
(asyncio's default is 64 KiB), and a write waits for the client before it is handed to the
transport while writing is paused (aiohttp itself waits only every 64 KiB written). So a
client that reads slowly leaves at most `_WRITE_HIGH` plus one write in the gateway's buffer,
whatever the upstream sends; the relay's next read waits on that write.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["SSE_HEADERS", "SSEResponse"]

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


#: Bytes of chunked framing around a last frame and the terminating chunk, with room to spare.
_CHUNK_FRAMING = 64
#: The client connection's write-buffer marks: writing pauses above the high one and resumes
#: below the low one. The kernel's socket buffer sits in front of it, so a small mark costs a
#: client that reads no throughput.
_WRITE_HIGH = 16 * 1024
_WRITE_LOW = 4 * 1024


class SSEResponse:
    """Owns one client's `web.StreamResponse`: lazy commit, writes, heartbeats."""

    def __init__(
        self,
        request: web.Request,
        *,
        heartbeat: float | None,
        heartbeat_frame: bytes,
        headers: dict[str, str],
    ) -> None:
        self._request = request
        self._writer = request.writer
        self._loop = asyncio.get_running_loop()
        transport = request.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=_WRITE_HIGH, low=_WRITE_LOW)
        self._response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers})
        self._commit: asyncio.Future[None] | None = None  # set while/after committing
        self._heartbeat = heartbeat
        self._heartbeat_frame = heartbeat_frame
        self._last_write = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._ping: asyncio.Task[None] | None = None
        self._writing = 0  # writes in flight (a relay's and a ping's may overlap)
        self._stopped = False
        self.bytes_written = 0

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    @property
    def committed(self) -> bool:
        """Whether the status line and headers have been (or are being) sent."""
        return self._commit is not None

    async def write(self, data: bytes) -> None:
        """Write whole frames; the first write commits the headers."""
        commit = self._commit
        if commit is None or not commit.done():
            await self._committed()
        self._writing += 1
        try:
            if self._request.protocol.writing_paused:
                await self._writer.drain()  # the client takes the buffer's bytes first
            await self._response.write(data)
        finally:
            self._writing -= 1
            self._last_write = self._loop.time()
        self.bytes_written += len(data)

    async def _committed(self) -> None:
        """Send the headers once; a concurrent writer waits for the first one to finish."""
        commit = self._commit
        if commit is not None:
            await asyncio.shield(commit)
            return
        commit = self._commit = self._loop.create_future()
        try:
            await self._response.prepare(self._request)
        except BaseException as exc:
            commit.set_exception(ConnectionResetError("the response could not be committed"))
            commit.exception()  # retrieved here; other writers get their own error
            raise exc
        commit.set_result(None)

    def ends_at_once(self, size: int) -> bool:
        """Whether writing `size` more bytes and then the end cannot wait on the client: the
        headers are out, writing is not paused, and the transport's buffer stays at or under
        its high-water mark with them (asyncio pauses writing only above it)."""
        commit, transport = self._commit, self._request.transport
        if commit is None or not commit.done() or transport is None:
            return False
        if self._request.protocol.writing_paused:
            return False
        _, high = transport.get_write_buffer_limits()
        return transport.get_write_buffer_size() + size + _CHUNK_FRAMING <= high

    async def write_eof(self) -> None:
        if self._commit is None:
            await self._committed()
        await self._response.write_eof()

    def start_heartbeat(self) -> None:
        if self._heartbeat is not None and not self._stopped:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(self._last_write + self._heartbeat, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._stopped or self._heartbeat is None:
            return
        now = self._loop.time()
        if self._writing or self._ping is not None:
            # A write still waits on the client - perhaps the stream's last frame, which a
            # ping must never follow - so the client is not idle: look again a period later.
            self._timer = self._loop.call_at(now + self._heartbeat, self._on_timer)
            return
        due = self._last_write + self._heartbeat
        if now < due:
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        self._ping = asyncio.ensure_future(self._send_ping())

    async def _send_ping(self) -> None:
        try:
            await self.write(self._heartbeat_frame)
        except (ConnectionError, RuntimeError):
            # The client is gone (or the response already ended); the relay's own read or
            # write notices and records it. Nothing to do here.
            return
        finally:
            self._ping = None
        self.start_heartbeat()

    async def stop_heartbeat(self) -> None:
        """Stop the heartbeat and wait for a ping in flight; idempotent."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ping = self._ping
        if ping is not None:
            ping.cancel()
            await asyncio.wait([ping])
