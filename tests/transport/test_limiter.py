"""`ConnectionLimiter`: a place at once when one is free, else within the deadline or a 503
`GatewayOverloaded`; a `Lease` gives its place back once, however often it is released."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import GatewayOverloaded
from gateway.state.lease import Lease
from gateway.transport import ConnectionLimiter


async def test_a_free_place_is_leased_at_once() -> None:
    limiter = ConnectionLimiter(2)

    leases = [await limiter.acquire(0) for _ in range(2)]

    assert all(isinstance(lease, Lease) for lease in leases)


async def test_a_full_limiter_waits_at_most_the_deadline_then_is_overloaded() -> None:
    limiter = ConnectionLimiter(1)
    await limiter.acquire(None)

    with pytest.raises(GatewayOverloaded) as raised:
        await limiter.acquire(0.02)

    assert raised.value.http_status == 503
    assert raised.value.retryable
    assert raised.value.retry_after == "1"
    assert raised.value.message == "all 1 connections to the upstream stayed in use for 0.02s"


async def test_a_place_released_while_waiting_is_taken_by_the_waiter() -> None:
    limiter = ConnectionLimiter(1)
    held = await limiter.acquire(None)
    waiting = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)  # the waiter is queued
    assert not waiting.done()

    held.release()

    assert isinstance(await waiting, Lease)


async def test_a_lease_released_twice_gives_back_one_place() -> None:
    limiter = ConnectionLimiter(1)
    lease = await limiter.acquire(None)

    lease.release()
    lease.release()

    await limiter.acquire(0)  # the one place
    with pytest.raises(GatewayOverloaded):
        await limiter.acquire(0.01)  # not a second one
