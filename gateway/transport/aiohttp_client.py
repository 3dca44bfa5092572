"""`AiohttpClient`: the `HTTPClient` over aiohttp, and `AiohttpResponse`, its answer.

One upstream's calls go through two pooled `aiohttp.ClientSession`s (`create_session`): one
for long-lived streams, whose connections buffer little, and one for whole answers. The
connections in use are bounded by a `ConnectionLimiter` (`max_connections`), taken before
connecting and given back when the response is closed.

Per-stream buffering of an upstream body is bounded for a client that stops reading (the relay
then stops asking for more): the kernel holds at most what the socket's receive buffer takes
(`_STREAM_RCVBUF`, which also bounds what one `recv()` returns: at most twice it), aiohttp
stops reading the socket once twice `_STREAM_READ_BUFFER` bytes wait (plus what the `recv()`
that crossed the mark brought, kept unparsed), and one read hands the relay at most `_READ_MAX`
bytes (one batch of events, one client write). A window of 32 KiB carries about 300 kB/s at
100 ms of round trip, a hundred times what the fastest model streams. Whole answers (`stream:
false`) are read into memory anyway, bounded by the caller: their connections keep the kernel's
autotuned window, whose throughput an embeddings batch of megabytes needs
(`_ANSWER_READ_BUFFER`).

Every aiohttp/OS error leaves through `translate_errors()`. The request's `on_sent` hook is
reported by aiohttp's public tracing (`TraceConfig.on_request_headers_sent`), carried per
request as its `trace_request_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from types import SimpleNamespace

import aiohttp
from aiohappyeyeballs import AddrInfoType

from gateway.state.lease import Lease
from gateway.streaming import Context
from gateway.transport.aiohttp_errors import translate_errors
from gateway.transport.aiohttp_internals import acquired_count, held_bytes, idle_count
from gateway.transport.client import PoolStats
from gateway.transport.limiter import ConnectionLimiter

__all__ = ["AiohttpClient", "AiohttpResponse", "create_session"]

_STREAM_RCVBUF = 32 * 1024
_STREAM_READ_BUFFER = 8 * 1024
_ANSWER_READ_BUFFER = 64 * 1024
_READ_MAX = 16 * 1024


class AiohttpClient:
    """The connections to one upstream through aiohttp: at most `max_connections` in use."""

    __slots__ = ("_limiter", "_sessions")

    def __init__(self, max_connections: int) -> None:
        self._limiter = ConnectionLimiter(max_connections)
        # Streams and whole answers each have their pool (`create_session`), by `stream`.
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        if not self._sessions:
            for stream in (True, False):
                self._sessions[stream] = create_session(self._limiter.limit, stream=stream)

    async def aclose(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await session.close()

    def pool_stats(self) -> PoolStats:
        connectors = [session.connector for session in self._sessions.values()]
        return PoolStats(
            in_use=sum(acquired_count(c) for c in connectors if c is not None),
            idle=sum(idle_count(c) for c in connectors if c is not None),
            limit=self._limiter.limit,
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes,
        headers: Mapping[str, str],
        stream: bool,
        connect: float | None,
        on_sent: Callable[[], None] | None = None,
        ctx: Context | None = None,
    ) -> AiohttpResponse:
        """`HTTPClient.send`; `ctx` is not watched: aiohttp's public API gives no handle on a
        connection before its response, so a call whose context ends while its head is
        awaited is closed by its task's cancellation, a loop turn later."""
        await self.start()
        session = self._sessions[stream]
        loop = asyncio.get_running_loop()
        started = loop.time()
        lease = await self._limiter.acquire(connect)
        # What is left of `connect` to get connected, once the wait for a place took its part.
        left = None if connect is None else max(connect - (loop.time() - started), 0.001)
        try:
            with translate_errors(connect_limit=connect):
                response = await session.request(
                    method,
                    url,
                    data=body or None,
                    headers=headers,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None, connect=left, sock_connect=left, sock_read=None
                    ),
                    trace_request_ctx=on_sent,
                )
        except BaseException:
            lease.release()
            raise
        return AiohttpResponse(response, lease)


class AiohttpResponse:
    """An aiohttp answer; closes its connection unless the body was read to the end, and gives
    its place in the upstream's connections back either way."""

    __slots__ = ("_closed", "_lease", "_response", "content_type", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, lease: Lease) -> None:
        self._response = response
        self._lease = lease
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers
        self.content_type: str = response.content_type
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with translate_errors():
            while not content.at_eof():
                try:
                    # Handed on, not kept in a local: while the relay's write waits on a slow
                    # client, this generator waits here and holds none of the body.
                    yield await content.read(_READ_MAX)
                except aiohttp.ClientError:
                    # aiohttp raises a cut or reset connection before the bytes it still holds,
                    # which the upstream did send (complete events, maybe): those come first.
                    held = held_bytes(content)
                    if held:
                        yield held
                    raise

    async def read_bounded(self, limit: int) -> bytes:
        """At most `limit` bytes of the body as it arrives (decompressed: aiohttp inflates a
        compressed body as it is read, a bounded piece at a time, so a small gzip body that
        inflates to gigabytes costs at most `limit` plus what aiohttp inflated ahead); the rest
        is not read."""
        content = self._response.content
        body = bytearray()
        with translate_errors():
            while len(body) < limit:
                chunk = await content.read(min(limit - len(body), _READ_MAX))
                if not chunk:
                    break
                body += chunk
        return bytes(body)

    def abort(self) -> None:
        """The socket is shut down first (`TransportSocket.shutdown`, public): the FIN leaves
        now, where aiohttp's `close()` leaves the socket to the loop's next turn."""
        if self._closed:
            return
        connection = self._response.connection
        transport = None if connection is None else connection.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is not None:
            # Gone already (OSError), or uvloop's pseudo-socket, which refuses shutdown
            # (TypeError): the close below then closes it.
            with contextlib.suppress(OSError, TypeError):
                sock.shutdown(socket.SHUT_RDWR)
        self._response.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._response.content.at_eof():
                self._response.release()
            else:
                self._response.close()
        finally:
            self._lease.release()


def create_session(max_connections: int, *, stream: bool = True) -> aiohttp.ClientSession:
    """A pooled session sized for long-lived streams (`stream`) or for whole answers, with no
    hidden total timeout.

    A stream's connections have a small receive buffer and aiohttp a small read buffer: what
    a stream holds for a client that reads slowly is bounded by them (see the module's
    docstring), and set on the socket before it connects (the window scale is agreed on then);
    public means (`socket_factory`, `read_bufsize`) where the transport's read size is not.

    aiohttp's default `ClientTimeout(total=300)` would cut every stream at five minutes; the
    gateway's own deadlines (a `Context` per request) bound each call instead. Redirects are
    never followed, environment proxies are not trusted, and each request reports to its
    `trace_request_ctx` (the call's `on_sent` hook, or None) once its head is written, so the
    first-byte clock starts when the request is sent.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=max_connections,
        ttl_dns_cache=300,
        socket_factory=_stream_socket if stream else None,
    )
    sent = aiohttp.TraceConfig()
    sent.on_request_headers_sent.append(_report_sent)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None),
        trace_configs=[sent],
        trust_env=False,
        auto_decompress=True,
        read_bufsize=_STREAM_READ_BUFFER if stream else _ANSWER_READ_BUFFER,
    )


async def _report_sent(
    session: aiohttp.ClientSession,
    trace: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    """Calls the request's `on_sent` hook (its `trace_request_ctx`) as its head is written."""
    hook = trace.trace_request_ctx
    if hook is not None:
        hook()


def _stream_socket(addr_info: AddrInfoType) -> socket.socket:
    """A socket for a stream's connection: its receive buffer set before it connects."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    with contextlib.suppress(OSError):  # a platform without it: the kernel's default
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _STREAM_RCVBUF)
    return sock
