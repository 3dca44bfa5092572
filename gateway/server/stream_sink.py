"""`StreamSink`: where the relay writes a resumable stream - its buffer, not a client.

The relay writes to it as it writes to an `SSEResponse` (`write`, `write_eof`, `committed`,
`bytes_written`, the heartbeat calls that do nothing here), and also hands it each batch's
frames (`write_frames`), so that every event is numbered and kept as one entry: a resume
after any id is exact. Numbering inserts one `id: N` line into each frame, just before the
blank line that ends it, and changes nothing else (`numbered`): an upstream's own `id:` line,
if it sent one, comes before it, so the gateway's is the one a client keeps.

Until the first frame is kept, the stream is committed only if the client's own response is
(`client_committed`: its first heartbeat); so an error before the first event still becomes a
real status for the client who is there to hear it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from gateway.errors import GatewayError, ServerShutdown, StreamCancelled
from gateway.state import StreamWriter

__all__ = ["StreamSink", "numbered"]


def numbered(event_id: int, frame: bytes) -> bytes:
    """`frame` (one whole SSE event) with the line `id: <event_id>` before its final blank
    line, in the frame's own line ending."""
    eol = 2 if frame.endswith(b"\r\n") else 1
    return b"%sid: %d\n%s" % (frame[:-eol], event_id, frame[-eol:])


class StreamSink:
    """The producer's side of one resumable stream (see the module)."""

    __slots__ = (
        "_writer",
        "bytes_written",
        "cancel_cause",
        "client_committed",
        "early",
        "next_id",
        "response",
    )

    def __init__(self, writer: StreamWriter, first_id: int = 1) -> None:
        """`first_id`: the id of the first event it keeps (a stream taken over goes on after
        the events kept of it)."""
        self._writer = writer
        self.next_id = first_id
        self.bytes_written = 0
        #: Whether the first client's response has been committed (its first heartbeat).
        self.client_committed: Callable[[], bool] = lambda: False
        #: The answer an error before the first event got: the client that is still there
        #: and has heard nothing is told it as a real status.
        self.early: web.StreamResponse | None = None
        #: What the relay returns when the stream went into the buffer.
        self.response = web.StreamResponse()
        #: Why the stream's task is cancelled, when it is: the server stops, unless its key
        #: cancelled it (`cancelled()`).
        self.cancel_cause: GatewayError = ServerShutdown()

    def cancelled(self) -> None:
        """Its key asked to cancel the stream: the task's cancellation is that."""
        self.cancel_cause = StreamCancelled()

    @property
    def committed(self) -> bool:
        return self.next_id > 1 or self.client_committed()

    def write_frames(self, frames: Sequence[bytes]) -> int:
        """Number and keep whole frames (one upstream read's); their size once numbered."""
        first = self.next_id
        kept = [numbered(first + offset, frame) for offset, frame in enumerate(frames)]
        self.next_id = first + len(kept)
        self._writer.append(first, kept)
        size = sum(map(len, kept))
        self.bytes_written += size
        return size

    async def write(self, data: bytes) -> None:
        """One frame the relay wrote itself (a trailer, an error event)."""
        if data:
            self.write_frames((data,))

    async def write_eof(self) -> None:
        pass

    def end(self, status: str) -> None:
        """The stream is over (`gateway.state.COMPLETED`, `FAILED`, `CANCELLED`)."""
        self._writer.end(status)

    def ends_at_once(self, size: int) -> bool:
        return True  # nothing here waits on a client

    def start_heartbeat(self) -> None:
        pass

    async def stop_heartbeat(self) -> None:
        pass
