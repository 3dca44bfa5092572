"""`ListenerSite`: a runner served on a listening socket the site accepts on itself.

It serves like aiohttp's sites; `stop()` refuses new connections at once while connections
already open stay served; and a connection accepted just before `stop()` - at any point of
its set-up - is served to its end, never left open unread (what closing an asyncio server at
that moment does on CPython 3.11). Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gateway.server.listener import ListenerSite, listening_socket

GUARD = 10.0  # seconds: only catches hangs
REQUEST = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def runner() -> AsyncIterator[web.AppRunner]:
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    yield runner
    await runner.cleanup()


async def serve(runner: web.AppRunner) -> ListenerSite:
    site = ListenerSite(runner, listening_socket("127.0.0.1", 0))
    await site.start()
    return site


async def ask(port: int) -> bytes:
    """Everything answered to one request on a new connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(REQUEST)
        async with asyncio.timeout(GUARD):
            return await reader.read()
    finally:
        writer.close()


def connect_now(port: int) -> socket.socket:
    """A connection the kernel completes at once (it waits in the listener's backlog)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def answer_or_refusal(sock: socket.socket) -> bytes:
    """What the server answers a request on `sock`: the response, or b"" when the connection
    was reset or closed unanswered (refused). A connection left open unread hangs: the guard
    fails the test."""
    loop = asyncio.get_running_loop()
    received = b""
    try:
        await loop.sock_sendall(sock, REQUEST)
        async with asyncio.timeout(GUARD):
            while chunk := await loop.sock_recv(sock, 65536):
                received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    return received


async def test_a_listener_site_serves_its_runner(runner: web.AppRunner) -> None:
    site = await serve(runner)
    answer = await ask(site.port)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert answer.endswith(b"hello")
    assert site in runner.sites
    assert site.name == f"http://127.0.0.1:{site.port}"


async def test_stop_refuses_new_connections_while_open_ones_stay_served(
    runner: web.AppRunner,
) -> None:
    site = await serve(runner)
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    try:
        await site.stop()
        assert site not in runner.sites
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(REQUEST)
        async with asyncio.timeout(GUARD):
            answer = await reader.read()
        assert answer.startswith(b"HTTP/1.1 200 OK")
    finally:
        writer.close()


async def test_connections_waiting_in_the_backlog_at_stop_are_refused_or_served(
    runner: web.AppRunner,
) -> None:
    site = await serve(runner)
    clients = [connect_now(site.port) for _ in range(20)]
    await site.stop()
    answers = await asyncio.gather(*(answer_or_refusal(sock) for sock in clients))
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 200 OK"), answer[:100]


async def test_connections_accepted_but_not_yet_set_up_at_stop_are_served(
    runner: web.AppRunner,
) -> None:
    """The window where closing an asyncio server loses them: accepted, no transport yet."""
    sock = listening_socket("127.0.0.1", 0)
    site = ListenerSite(runner, sock)
    await site.start()
    clients = [connect_now(site.port) for _ in range(20)]
    async with asyncio.timeout(GUARD):
        # Until the site has accepted them all (the kernel says so; nothing to await).
        while select.select([sock], [], [], 0)[0]:  # noqa: ASYNC110
            await asyncio.sleep(0)
    assert runner.server is not None
    assert len(runner.server.connections) < len(clients), "not in the window any more"
    await site.stop()
    answers = await asyncio.gather(*(answer_or_refusal(sock) for sock in clients))
    assert all(answer.startswith(b"HTTP/1.1 200 OK") for answer in answers), answers
