"""The soak's measures can fail: each leak the soak looks for, made on purpose, is seen.

A socket left open and a task left pending raise the counts the soak compares with its
baseline, a socket whose peer closed is counted in CLOSE_WAIT, a connection to the upstream's
port is counted as one, retained memory shows in RSS, and an unclosed aiohttp session or a
pending task that is garbage-collected is reported by `LeakWatch`.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from tests.chaos.resources import LeakWatch, holdings, trim_heap


@contextmanager
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


async def test_a_socket_and_a_task_left_behind_raise_the_counts() -> None:
    before = holdings(upstream_port=0)
    with socket.socket():
        task = asyncio.create_task(asyncio.Event().wait())
        during = holdings(upstream_port=0)
        task.cancel()
        await asyncio.wait([task])
    assert during.own_fds == before.own_fds + 1
    assert during.own_tasks == before.own_tasks + 1


async def test_a_socket_whose_peer_closed_is_counted_in_close_wait() -> None:
    loop = asyncio.get_running_loop()
    before = holdings(upstream_port=0).close_wait
    with listener() as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with accepted:
            client.close()
            accepted.setblocking(False)
            assert await loop.sock_recv(accepted, 1) == b""  # the FIN has come
            assert holdings(upstream_port=0).close_wait == before + 1
        assert holdings(upstream_port=0).close_wait == before


async def test_connections_to_the_upstream_port_are_counted() -> None:
    with listener() as upstream:
        port = upstream.getsockname()[1]
        before = holdings(port)
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = upstream.accept()
            with accepted:
                during = holdings(port)
    assert (before.upstream_connections, during.upstream_connections) == (0, 1)
    # Both ends are this process's: the pool's share of descriptors is left out.
    assert during.own_fds == before.own_fds


async def test_retained_memory_shows_in_rss() -> None:
    trim_heap()
    before = holdings(upstream_port=0).rss_kib
    retained = b"x" * (64 * 1024 * 1024)
    assert holdings(upstream_port=0).rss_kib - before >= 60 * 1024
    del retained


async def test_leak_watch_reports_an_unclosed_session() -> None:
    with LeakWatch() as watch:
        session = aiohttp.ClientSession()
        del session
    assert any("Unclosed client session" in leak for leak in watch.found), watch.found


async def test_leak_watch_reports_a_task_destroyed_while_pending() -> None:
    async def forever() -> None:
        await asyncio.get_running_loop().create_future()

    with LeakWatch() as watch:
        task = asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)  # the task now waits on a future only it references
        del task
        gc.collect()
    assert any("Task was destroyed but it is pending" in leak for leak in watch.found), watch.found


async def test_leak_watch_finds_nothing_when_nothing_leaks() -> None:
    with LeakWatch() as watch:
        async with aiohttp.ClientSession():
            pass
    assert watch.found == []
