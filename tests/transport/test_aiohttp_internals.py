"""Each aiohttp internal the transport relies on (gateway/transport/aiohttp_internals.py), held
by name: a test here that fails after an aiohttp upgrade names the internal that moved.

`StreamReader._read_nowait(n)`: the bytes a response still holds once a cut or reset connection
stored its exception (`held_bytes`); the third test says why it is needed: if aiohttp's public
reads ever hand those bytes out before raising, it fails, and the internal can go.
`BaseConnector._acquired` and `_conns`: the connections in use and idle (`acquired_count`,
`idle_count`, for `AiohttpClient.pool_stats`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.transport.aiohttp_internals import acquired_count, held_bytes, idle_count
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream

EVENTS = fake.openai_chunks(["Hel", "lo"], finish_reason=None)
BODY = json.dumps({"model": "m"}).encode()


@pytest.fixture
async def cut_response(upstream: FakeUpstream) -> AsyncIterator[aiohttp.ClientResponse]:
    """An answer whose connection was reset after the events, read by nobody until aiohttp has
    stored the cut: every byte received is still in its reader."""
    upstream.script("m", fake.cut_rst(len(EVENTS), chunked=True, chunks=EVENTS))
    async with aiohttp.ClientSession() as session:
        response = await session.post(upstream.base_url + "/chat/completions", data=BODY)
        async with asyncio.timeout(5):  # a hang guard: until aiohttp has seen the cut
            while response.content.exception() is None:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        try:
            yield response
        finally:
            response.close()


def test_stream_reader_read_nowait_takes_a_size() -> None:
    method = getattr(aiohttp.StreamReader, "_read_nowait", None)
    assert callable(method), "aiohttp.StreamReader._read_nowait is gone"
    assert list(inspect.signature(method).parameters) == ["self", "n"], (
        "aiohttp.StreamReader._read_nowait changed its signature"
    )


async def test_stream_reader_read_nowait_hands_out_the_bytes_held_after_a_cut(
    cut_response: aiohttp.ClientResponse,
) -> None:
    content = cut_response.content

    assert held_bytes(content) == b"".join(EVENTS)
    assert held_bytes(content) == b""  # taken out, not copied


async def test_public_reads_raise_a_stored_cut_before_the_bytes_held(
    cut_response: aiohttp.ClientResponse,
) -> None:
    """Why `held_bytes` exists; when this fails, aiohttp has a public way and it can go."""
    content = cut_response.content

    with pytest.raises(aiohttp.ClientPayloadError):
        await content.read(1024)
    with pytest.raises(aiohttp.ClientPayloadError):
        await content.readany()
    with pytest.raises(aiohttp.ClientPayloadError):
        content.read_nowait()
    assert held_bytes(content) == b"".join(EVENTS)  # still there: none was handed out


async def test_a_connectors_connections_in_use_and_idle_are_counted(
    upstream: FakeUpstream,
) -> None:
    upstream.script("stall", fake.stall_before_first_event())
    url = upstream.base_url + "/chat/completions"
    async with aiohttp.ClientSession() as session:
        connector = session.connector
        assert connector is not None
        stalled = await session.post(url, data=json.dumps({"model": "stall"}).encode())
        assert (acquired_count(connector), idle_count(connector)) == (1, 0)
        stalled.close()

        response = await session.post(url, data=BODY)
        await response.read()
        response.release()

        assert (acquired_count(connector), idle_count(connector)) == (0, 1)
