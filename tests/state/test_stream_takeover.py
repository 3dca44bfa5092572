"""`StreamBuffers.take_over` on a real Redis: a stream whose producer is gone (its store
closed: nothing refreshes its lease) is claimed by one replica of two asking at once, with the
request kept at its creation and a writer that numbers on after the kept events; a reader past
the kept events cannot claim it; a live producer's stream is not claimed; the memory store
never has one to claim."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from gateway.state import COMPLETED, MemoryStreamBuffers, StreamInfo
from gateway.state.redis_store import RedisStore, redis_client
from tests.support.redis_server import RedisServer

_PREFIXES = itertools.count()
INFO = StreamInfo("owner", "openai_chat", route="m")
FRAMES = [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]


@pytest.fixture
async def stores(redis: RedisServer) -> AsyncIterator[list[RedisStore]]:
    """Three replicas' stores on one Redis, one prefix; a stream's lease lasts 0.3 s."""
    prefix = f"takeover-{next(_PREFIXES)}:"
    made = [
        RedisStore(
            redis_client(redis.url, timeout=2.0),
            max_streams=100,
            prefix=prefix,
            stream_lease_ttl=0.3,
        )
        for _ in range(3)
    ]
    yield made
    for store in made:
        await store.aclose()


async def orphaned(producer: RedisStore) -> None:
    """A stream `s` of three events whose producer dies (its store closes) before its end."""
    writer = await producer.streams.create("s", INFO, b'{"request": 1}')
    writer.append(1, FRAMES)
    await producer.link.flush()
    await producer.aclose()
    await asyncio.sleep(0.4)  # its lease expires: no way to wait for a key's expiry


async def test_an_orphaned_stream_is_taken_over_by_one_replica_of_two_asking_at_once(
    stores: list[RedisStore],
) -> None:
    producer, one, two = stores
    await orphaned(producer)

    taken = await asyncio.gather(one.streams.take_over("s", 3), two.streams.take_over("s", 3))

    (takeover,) = [t for t in taken if t is not None]
    assert (takeover.info, takeover.last_id, takeover.request) == (INFO, 3, b'{"request": 1}')
    taker = one if taken[0] is not None else two
    other = two if taker is one else one
    takeover.writer.append(4, [b"data: 4\n\n"])
    takeover.writer.end(COMPLETED)
    await taker.link.flush()
    reader = other.streams.reader("s", 0)
    data = b""
    async with asyncio.timeout(10):
        while (chunk := await reader.next()) is not None:
            data += chunk
    assert data == b"".join(FRAMES) + b"data: 4\n\n"
    assert reader.ending == COMPLETED


async def test_a_reader_past_the_kept_events_cannot_take_a_stream_over(
    stores: list[RedisStore],
) -> None:
    producer, one, _ = stores
    await orphaned(producer)
    assert await one.streams.take_over("s", 4) is None
    assert await one.streams.take_over("s", 2) is not None


async def test_a_stream_whose_producer_lives_is_not_taken_over(stores: list[RedisStore]) -> None:
    producer, one, _ = stores
    writer = await producer.streams.create("s", INFO, b"")
    writer.append(1, FRAMES)
    await producer.link.flush()
    assert await one.streams.take_over("s", 3) is None
    assert await producer.streams.take_over("s", 3) is None  # its own
    assert (await one.streams.info("s")) == INFO


async def test_the_memory_store_never_takes_a_stream_over() -> None:
    buffers = MemoryStreamBuffers(ttl=60, max_events=10, max_bytes=1000)
    writer = await buffers.create("s", INFO, b"request")
    writer.append(1, FRAMES)
    assert await buffers.take_over("s", 3) is None
