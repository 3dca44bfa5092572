"""A raw HTTP/1.1 upstream on 127.0.0.1 for the transport's tests: answers that no aiohttp
server would write (garbage, heads too large, interim answers, compressed or close-delimited
bodies, a keep-alive connection it closes), byte for byte as scripted.

Each connection reads requests one after another (a head, then a `Content-Length` body) and
answers each with the next of `answers` (the last one repeats); `then` says what follows an
answer: wait for the next request (`keep`), close (`close`, a FIN) or send nothing more
(`stall`). What the server saw is recorded: the raw requests, the connections accepted, and
for each connection an event set once the peer closed it (the client's close, seen by the
server). Synchronisation is by events; waits have hang guards only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["RawUpstream", "raw_upstream"]

_GUARD = 10.0


@dataclass
class RawUpstream:
    answers: list[bytes]
    then: Literal["keep", "close", "stall"] = "keep"
    requests: list[bytes] = field(default_factory=list)
    #: One event per accepted connection, set when the server saw the peer close it.
    peer_closed: list[asyncio.Event] = field(default_factory=list)
    #: One event per accepted connection, set when the server closed it itself.
    server_closed: list[asyncio.Event] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @property
    def connections(self) -> int:
        return len(self.peer_closed)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()  # each handler then ends on its own
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def wait_peer_closed(self, index: int = 0) -> None:
        async with asyncio.timeout(_GUARD):
            await self.peer_closed[index].wait()

    async def wait_server_closed(self, index: int = 0) -> None:
        async with asyncio.timeout(_GUARD):
            await self.server_closed[index].wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        peer_closed, server_closed = asyncio.Event(), asyncio.Event()
        self.peer_closed.append(peer_closed)
        self.server_closed.append(server_closed)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    peer_closed.set()
                    return
                body = await reader.readexactly(_content_length(head))
                self.requests.append(head + body)
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                writer.write(answer)
                await writer.drain()
                if self.then == "close":
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()
                    server_closed.set()
                    return
                if self.then == "stall":
                    with contextlib.suppress(ConnectionError):
                        while await reader.read(65536):
                            pass
                    peer_closed.set()
                    return
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@contextlib.asynccontextmanager
async def raw_upstream(
    *answers: bytes, then: Literal["keep", "close", "stall"] = "keep"
) -> AsyncIterator[RawUpstream]:
    server = RawUpstream(list(answers), then)
    await server.start()
    try:
        yield server
    finally:
        await server.close()
