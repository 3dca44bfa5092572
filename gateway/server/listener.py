"""Listening sockets, and the site that accepts on one so that accepting can stop at once.

`listening_socket(host, port)` binds and listens (IPv4 or IPv6 by the host's address family).

`ListenerSite` serves a runner on such a socket, accepting itself. aiohttp's sites hand the
socket to `loop.create_server`, whose asyncio server owns the accepting and can stop only by
closing; on CPython 3.11, closing it while a connection is between its `accept()` and its
transport (a later loop turn) fails `Server._attach`'s assertion and leaves that connection
open and unread. Here no asyncio server is involved: the site watches its socket with a
reader of its own (`loop.add_reader`), accepts up to `backlog` connections per wake-up as
asyncio does (and, out of file descriptors or memory, stops watching for a second as asyncio
does), and hands each one to `loop.connect_accepted_socket` with the runner's protocol factory
(`runner.server`). So `stop()` is exact: once it returns, nothing more is accepted, the socket
is closed (the kernel refuses new connections once no process holds it), and every
connection accepted before is set up and served by the runner like any other (its `cleanup()`
closes them).
"""

from __future__ import annotations

import asyncio
import errno
import socket

import structlog
from aiohttp import web
from yarl import URL

__all__ = ["ListenerSite", "listening_socket"]

_log = structlog.get_logger("gateway.server")
#: accept() errors that leave the socket readable: watching it again at once would spin.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 1.0  # seconds, as asyncio's


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking TCP socket listening on `host`:`port` (port 0: any free port).

    `reuse_port`: several sockets may listen on the port (`SO_REUSEPORT`), and the kernel
    spreads new connections over them.
    """
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ListenerSite(web.BaseSite):
    """Serves `runner` on the listening socket `sock`, which it closes when it stops."""

    __slots__ = (
        "_factory",
        "_listener",
        "_listener_backlog",
        "_port",
        "_retry",
        "_setting_up",
        "_url",
    )

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *, backlog: int = 128):
        super().__init__(runner, backlog=backlog)
        factory = runner.server
        assert factory is not None  # BaseSite refuses a runner that is not set up
        self._factory = factory
        self._listener = sock
        self._listener_backlog = backlog
        self._retry: asyncio.TimerHandle | None = None
        self._setting_up: set[asyncio.Task[None]] = set()
        host, port = sock.getsockname()[:2]
        self._port = int(port)
        self._url = str(URL.build(scheme="http", host=host, port=port))

    @property
    def name(self) -> str:
        return self._url

    @property
    def port(self) -> int:
        """The port the socket listens (or listened) on."""
        return self._port

    async def start(self) -> None:
        await super().start()
        self._listener.listen(self._listener_backlog)  # as asyncio's server does
        self._watch()

    async def stop(self) -> None:
        """Accept no more, close the socket, and return once every connection accepted before
        is set up (a connection of the runner's server)."""
        loop = asyncio.get_running_loop()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._listener.fileno() >= 0:
            loop.remove_reader(self._listener.fileno())
            self._listener.close()
        if self._setting_up:
            await asyncio.wait(set(self._setting_up))
        await super().stop()

    def _watch(self) -> None:
        self._retry = None
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)

    def _accept(self) -> None:
        """The socket is readable: accept what is waiting, up to `backlog` connections."""
        loop = asyncio.get_running_loop()
        for _ in range(self._listener_backlog):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing more waiting
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise  # the loop logs it, as it logs asyncio's own
                _log.error("accept_failed", problem=errno.errorcode.get(exc.errno or 0))
                loop.remove_reader(self._listener.fileno())
                self._retry = loop.call_later(_ACCEPT_RETRY_DELAY, self._watch)
                return
            task = loop.create_task(self._set_up(conn))
            self._setting_up.add(task)
            task.add_done_callback(self._setting_up.discard)

    async def _set_up(self, conn: socket.socket) -> None:
        """`conn` as a transport and a connection of the runner (`connect_accepted_socket`
        makes it non-blocking); closed if that fails (the client went away meanwhile)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(self._factory, conn)
        except Exception as exc:  # one connection's failure: logged, not raised
            conn.close()
            _log.info("connection_setup_failed", problem=type(exc).__name__)
