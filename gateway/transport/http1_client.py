"""`Http1Client`: the `HTTPClient` on asyncio protocols and httptools' C parser, and
`Http1Response`, its answer: aiohttp's client without its per-request machinery (session,
request and response objects, tracing, timers, a task-safe stream reader).

One upstream's calls go through pools per (stream or not, scheme, host, port) of keep-alive
connections (`IdlePool`: the last returned first out, idle ones closed after `_KEEP_ALIVE`
seconds by one timer per pool). The connections in use are bounded by a `ConnectionLimiter`
(`max_connections`): a call takes its place before it connects, and gives it back when its
response is closed, or when `send` raises. A stream's sockets get a small receive buffer before
they connect and its connections a small read buffer (`_STREAM_RCVBUF`, `_STREAM_HIGH_WATER`:
what a stream holds for a client that reads slowly is bounded by them, as in `aiohttp_client`);
whole answers keep the kernel's autotuned window and a larger buffer.

The request: `Host` (with the port unless it is the scheme's default), `User-Agent:
sse-gateway` unless the caller gave one, `Content-Length` for a body, head and body in one
write, then `on_sent`. Redirects are never followed (a 3xx is returned as any status), no proxy
and no environment are used. Names are resolved by `loop.getaddrinfo` and cached for
`_DNS_TTL` seconds; the addresses are tried in order (no happy eyeballs: an upstream is one
host whose first address answers, and a dead one fails within the `connect` deadline). TLS is
`ssl.create_default_context()`: verification on, SNI the host.

A body compressed with gzip or deflate (which a whole answer asks for, and an upstream may send
a stream anyway) is inflated as it is read, at most the read's size at a time
(`decompressobj.decompress(data, max_length)`): `read_bounded(limit)` never inflates much past
`limit`, whatever the ratio. Every foreign error leaves through `http1_errors.translate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from gateway.errors import InvalidRequest, StreamInterrupted
from gateway.state.lease import Lease
from gateway.streaming import Context
from gateway.transport.client import PoolStats
from gateway.transport.http1_errors import translate
from gateway.transport.http1_inflater import Inflater
from gateway.transport.http1_protocol import Http1Connection, IdlePool
from gateway.transport.limiter import ConnectionLimiter

__all__ = ["Http1Client", "Http1Response"]

_STREAM_RCVBUF = 32 * 1024
_STREAM_HIGH_WATER = 16 * 1024
_ANSWER_HIGH_WATER = 128 * 1024
_READ_MAX = 16 * 1024
_KEEP_ALIVE = 15.0  # seconds an idle connection is kept (aiohttp's default)
_DNS_TTL = 300.0
_ORIGINS_MAX = 64  # distinct origins whose parsed form is kept
_USER_AGENT = "sse-gateway"
_DEFAULT_PORTS = {False: 80, True: 443}
#: The media type of an answer without `Content-Type` (aiohttp's, RFC 9110 section 8.3).
_DEFAULT_TYPE = "application/octet-stream"

#: (stream, tls, host, port): the key of a pool.
_PoolKey = tuple[bool, bool, str, int]
#: (family, type, proto, address) of one way to reach a host.
_Address = tuple[int, int, int, tuple[Any, ...]]


class _Origin:
    """Where a URL goes: the scheme, host and port, and the `Host` header's value."""

    __slots__ = ("host", "host_header", "port", "tls")

    def __init__(self, tls: bool, host: str, port: int, host_header: str) -> None:
        self.tls = tls
        self.host = host
        self.port = port
        self.host_header = host_header


class Http1Client:
    """The connections to one upstream over HTTP/1.1: at most `max_connections` in use."""

    __slots__ = ("_active", "_dns", "_limiter", "_origins", "_pools", "_tls")

    def __init__(self, max_connections: int) -> None:
        self._limiter = ConnectionLimiter(max_connections)
        self._pools: dict[_PoolKey, IdlePool] = {}
        self._active: set[Http1Connection] = set()
        self._origins: dict[str, _Origin] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[_Address]]] = {}
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Nothing to acquire ahead: pools are made as calls need them."""

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            pool.close()
        active = list(self._active)
        self._active.clear()
        for conn in active:
            conn.abort()

    def pool_stats(self) -> PoolStats:
        idle = sum(len(pool) for pool in self._pools.values())
        return PoolStats(in_use=len(self._active), idle=idle, limit=self._limiter.limit)

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
    ) -> Http1Response:
        loop = asyncio.get_running_loop()
        origin, target = self._split(url)
        request = _request_head(method, target, origin, headers, body)
        started = loop.time()
        lease = await self._limiter.acquire(connect)
        key = (stream, origin.tls, origin.host, origin.port)
        conn: Http1Connection | None = None
        try:
            pool = self._pools.get(key)
            conn = pool.checkout() if pool is not None else None
            if conn is None:
                left = None if connect is None else max(connect - (loop.time() - started), 0.001)
                conn = await self._connect(loop, origin, stream, left, connect)
            self._active.add(conn)
            conn.begin(no_body=method == "HEAD")
            assert conn.transport is not None
            conn.transport.write(request + body if body else request)
            if on_sent is not None:
                on_sent()
            await _read_head(conn, ctx)
        except BaseException:
            lease.release()
            if conn is not None:
                self._active.discard(conn)
                conn.abort()
            raise
        return Http1Response(self, conn, lease, key)

    def _release(self, conn: Http1Connection, key: _PoolKey) -> None:
        """Take back a connection whose response is closed: to its pool if reusable."""
        if conn not in self._active:  # the client was closed meanwhile: aborted already
            return
        self._active.discard(conn)
        if not conn.reusable():
            conn.drop()
            return
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = IdlePool(asyncio.get_running_loop(), _KEEP_ALIVE)
        pool.checkin(conn)

    def _split(self, url: str) -> tuple[_Origin, str]:
        """(origin, request target) of `url`, the origin parsed once per scheme and authority."""
        scheme_end = url.find("://")
        rest = url.find("/", scheme_end + 3)
        query = url.find("?", scheme_end + 3)
        cut = min(end for end in (rest, query, len(url)) if end >= 0)
        prefix, target = url[:cut], url[cut:]
        if not target.startswith("/"):
            target = "/" + target
        origin = self._origins.get(prefix)
        if origin is None:
            origin = _parse_origin(prefix)
            if len(self._origins) >= _ORIGINS_MAX:
                self._origins.clear()
            self._origins[prefix] = origin
        return origin, target

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: _Origin,
        stream: bool,
        left: float | None,
        limit: float | None,
    ) -> Http1Connection:
        """A new connection to `origin`, within `left` seconds (resolving, connecting, the TLS
        handshake); a `ConnectTimeout` naming `limit` if that is not enough."""
        try:
            async with asyncio.timeout(left):
                sock = await self._connected_socket(loop, origin, stream)
                tls = self._tls_context() if origin.tls else None
                high_water = _STREAM_HIGH_WATER if stream else _ANSWER_HIGH_WATER
                try:
                    _, conn = await loop.create_connection(
                        lambda: Http1Connection(loop, high_water),
                        sock=sock,
                        ssl=tls,
                        server_hostname=origin.host if tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except (OSError, ssl.SSLError) as exc:  # TimeoutError among them: the deadline
            raise translate(exc, "connect", connect_limit=limit) from exc
        return conn

    async def _connected_socket(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, stream: bool
    ) -> socket.socket:
        """A non-blocking socket connected to one of `origin`'s addresses, tried in order; a
        stream's receive buffer is set before it connects (the window scale is agreed then)."""
        error: OSError | None = None
        for family, kind, proto, address in await self._addresses(loop, origin):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if stream:
                    with contextlib.suppress(OSError):  # a platform without it: the default
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _STREAM_RCVBUF)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error if error is not None else OSError("no address to connect to")

    async def _addresses(self, loop: asyncio.AbstractEventLoop, origin: _Origin) -> list[_Address]:
        host, port = origin.host, origin.port
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if ip.version == 4:
                return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))]
            return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port, 0, 0))]
        now = loop.time()
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[_Address] = [(f, k, p, a) for f, k, p, _, a in infos]
        self._dns[(host, port)] = (now + _DNS_TTL, addresses)
        return addresses

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


class Http1Response:
    """An answer on an `Http1Connection`; closes it unless the body was read to the end (then
    it goes back to its pool), and gives its place in the upstream's connections back either
    way."""

    __slots__ = (
        "_client",
        "_conn",
        "_inflater",
        "_key",
        "_lease",
        "content_type",
        "headers",
        "status",
    )

    def __init__(
        self, client: Http1Client, conn: Http1Connection, lease: Lease, key: _PoolKey
    ) -> None:
        self._client: Http1Client | None = client
        self._conn = conn
        self._lease = lease
        self._key = key
        self.status: int = conn.status
        self.headers: Mapping[str, str] = conn.headers
        kind = self.headers.get("content-type")
        self.content_type: str = (
            kind.split(";", 1)[0].strip().lower() if kind is not None else _DEFAULT_TYPE
        )
        self._inflater = Inflater.for_encoding(self.headers.get("content-encoding"))

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            data = await self._read(_READ_MAX)
            if not data:
                return
            # Handed on, not kept in a local: while the relay's write waits on a slow client,
            # this generator waits here and holds none of the body.
            yield data

    async def read_bounded(self, limit: int) -> bytes:
        """At most `limit` bytes of the body (decompressed: never inflated past `limit`); the
        rest is not read."""
        body = bytearray()
        while len(body) < limit:
            data = await self._read(min(limit - len(body), _READ_MAX))
            if not data:
                break
            body += data
        return bytes(body)

    def abort(self) -> None:
        if self._client is not None:
            self._conn.abort()  # `aclose` then finds it closing: never pooled

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client._release(self._conn, self._key)
        finally:
            self._lease.release()

    async def _read(self, limit: int) -> bytes:
        """At most `limit` bytes of the (decoded) body as soon as there are some; b"" at its
        end."""
        inflater = self._inflater
        if inflater is None:
            return await self._conn.read(limit)
        while True:
            data = inflater.pending(limit)
            if data:
                return data
            raw = await self._conn.read(_READ_MAX)
            if not raw:
                return b""
            data = inflater.feed(raw, limit)
            if data:
                return data


async def _read_head(conn: Http1Connection, ctx: Context | None) -> None:
    """`conn`'s answer's head; `conn` is closed at once if `ctx` ends meanwhile (in the loop
    turn it ended: the task's cancellation would reach `send` a turn later)."""
    if ctx is None:
        await conn.read_head()
        return

    def abort(_: Context) -> None:
        conn.abort()

    ctx.add_done_callback(abort)
    try:
        await conn.read_head()
    finally:
        ctx.remove_done_callback(abort)


def _parse_origin(prefix: str) -> _Origin:
    """`scheme://host[:port]` as an `_Origin`."""
    scheme, sep, authority = prefix.partition("://")
    tls = scheme.lower() == "https"
    if not sep or not (tls or scheme.lower() == "http") or not authority or "@" in authority:
        raise StreamInterrupted("the upstream URL is not a plain http(s) URL")
    default = _DEFAULT_PORTS[tls]
    if authority.startswith("["):
        host, _, after = authority[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise StreamInterrupted("the upstream URL's port is not a number") from None
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    return _Origin(tls, host, port, host_header)


_SKIPPED = frozenset({"host", "content-length", "transfer-encoding"})


def _request_head(
    method: str, target: str, origin: _Origin, headers: Mapping[str, str], body: bytes
) -> bytes:
    """The request's head: the caller's headers as given, with `Host`, `User-Agent` and
    `Content-Length` the client's unless the caller set `Host` or `User-Agent`."""
    host = origin.host_header
    agent = True
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers.items():
        lower = name.lower()
        if lower in _SKIPPED:
            if lower == "host":
                host = value
            continue
        if lower == "user-agent":
            agent = False
        lines.append(f"{name}: {value}")
    if agent:
        lines.append(f"User-Agent: {_USER_AGENT}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.insert(1, f"Host: {host}")
    head = "\r\n".join(lines)
    breaks = len(lines) - 1  # the separators: any other CR or LF came in a name or value
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise InvalidRequest("a header of the upstream request holds a line break")
    return (head + "\r\n\r\n").encode("utf-8", "surrogateescape")
