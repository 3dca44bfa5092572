"""One request the fake upstream received (`UpstreamCall`), and what answers it (`Behaviour`).

Split from `tests.support.fake_upstream` (which re-exports both): the server records calls, the
behaviours in `tests.support.fake_behaviours` answer them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web

__all__ = ["Behaviour", "UpstreamCall"]


@dataclass(eq=False, slots=True)
class UpstreamCall:
    """One request received by the fake, and what became of its connection.

    ``model`` is ``body["model"]`` ("" when absent); ``body`` is the parsed JSON object ({} when
    the body is not a JSON object); ``raw_body`` is the bytes as received. ``headers`` are the
    request headers as received (case-insensitive).

    ``arrived`` is the loop time the request's body had been read at (the attempt's timestamp).
    ``started``/``finished`` bracket the behaviour. ``closed_by_peer`` (with ``close_time``, the
    loop time it was seen) means the peer left while the handler ran. ``cut_by_upstream`` means
    the fake closed the connection itself (a cut, or the end of a close-delimited body).
    """

    model: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    method: str = "POST"
    path: str = "/v1/chat/completions"
    raw_body: bytes = b""
    query: str = ""  # the query string as received (Azure's `api-version=...`)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_peer: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    close_time: float | None = None
    cut_by_upstream: bool = False
    bytes_sent: int = 0  # body bytes handed to the connection by the `flood` behaviour
    arrived: float = field(default_factory=lambda: asyncio.get_running_loop().time())

    async def wait_closed_by_peer(self, timeout: float = 10) -> None:  # noqa: ASYNC109 - a hang guard
        """Wait until the peer closed the connection mid-handler; the timeout only catches hangs."""
        try:
            async with asyncio.timeout(timeout):
                await self.closed_by_peer.wait()
        except TimeoutError:
            raise AssertionError(
                f"the peer did not close the upstream connection for model {self.model!r} "
                f"within {timeout}s (handler finished: {self.finished.is_set()}, "
                f"cut by upstream: {self.cut_by_upstream})"
            ) from None

    async def wait_finished(self, timeout: float = 10) -> None:  # noqa: ASYNC109 - a hang guard
        """Wait until the handler ended for any reason; the timeout only catches hangs."""
        try:
            async with asyncio.timeout(timeout):
                await self.finished.wait()
        except TimeoutError:
            raise AssertionError(
                f"the upstream handler for model {self.model!r} still runs after {timeout}s"
            ) from None

    def _mark_closed_by_peer(self) -> None:
        if not self.closed_by_peer.is_set():
            self.close_time = asyncio.get_running_loop().time()
            self.closed_by_peer.set()


Behaviour: TypeAlias = Callable[[web.Request, UpstreamCall], Awaitable[web.StreamResponse]]
"""Answers one request. It may write raw bytes and close; it must re-raise CancelledError."""
