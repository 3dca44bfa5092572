"""`SSEResponse`'s heartbeats against a client that is slow to take a write.

The response's `web.StreamResponse` is replaced by one whose writes wait until the test lets
them drain: a write carrying the stream's last frame that waits on the client longer than the
heartbeat period must not be followed by a ping (found by the chaos suite).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from gateway.server.sse_response import SSEResponse

PING = b": ping\n\n"
DONE = b"data: [DONE]\n\n"


class SlowClientResponse:
    """Stands in for `web.StreamResponse`: every write is taken at once, then waits for
    `drained`."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.drained = asyncio.Event()

    async def prepare(self, request: Any) -> None:
        return None

    async def write(self, data: bytes) -> None:
        self.sent += data
        await self.drained.wait()


class UnpausedRequest:
    """Stands in for `web.Request`: no transport of its own, writing never paused (the slow
    client is `SlowClientResponse`'s)."""

    transport = None
    writer = None
    protocol = SimpleNamespace(writing_paused=False)


def slow_response(heartbeat: float) -> tuple[SSEResponse, SlowClientResponse]:
    request: Any = UnpausedRequest()
    sse = SSEResponse(request, heartbeat=heartbeat, heartbeat_frame=PING, headers={})
    slow = SlowClientResponse()
    sse._response = slow  # type: ignore[assignment]
    return sse, slow


async def test_no_ping_follows_a_last_frame_that_waited_on_the_client() -> None:
    sse, slow = slow_response(heartbeat=0.02)
    sse.start_heartbeat()
    last = asyncio.create_task(sse.write(DONE))
    await asyncio.sleep(0.2)  # ten heartbeat periods while the write waits
    slow.drained.set()
    await last
    await sse.stop_heartbeat()

    assert bytes(slow.sent) == DONE


async def test_pings_resume_a_period_after_a_slow_write_returned() -> None:
    sse, slow = slow_response(heartbeat=0.02)
    slow.drained.set()
    sse.start_heartbeat()
    await sse.write(b"data: {}\n\n")
    await asyncio.sleep(0.1)
    await sse.stop_heartbeat()

    assert bytes(slow.sent).startswith(b"data: {}\n\n" + PING)
