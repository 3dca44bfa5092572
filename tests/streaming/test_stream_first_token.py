"""`ContextAwareStream`'s first-token limit: request sent -> the first item that carries answer
content, as the caller marks it (`marks_content`, `content_arrived()`); for a stream whose
first item is its content, the earlier of the first-byte and first-token limits bounds it.

Deadlines are judged on the manual clock (`manual_clock`): "not fired yet" is asserted without
sleeping.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ClientDisconnected, FirstByteTimeout, FirstTokenTimeout
from gateway.streaming import Context, ContextAwareStream, Timeouts
from tests.streaming.conftest import ManualClock, spin
from tests.streaming.test_stream import Upstream

#: A first-token limit alone (the first byte and idle gaps unbounded).
TOKEN_ONLY = Timeouts(connect=None, first_byte=None, idle=None, first_token=10)


def marked(
    ctx: Context, upstream: Upstream, timeouts: Timeouts = TOKEN_ONLY
) -> ContextAwareStream[object]:
    return ContextAwareStream(ctx, upstream.iterator, timeouts, marks_content=True)


async def assert_no_deadline_fires(
    stream: ContextAwareStream[object], upstream: Upstream, clock: ManualClock
) -> None:
    """A read that waits on a silent upstream is still waiting 100 s later."""
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    clock.advance(100)
    await spin()
    assert not reader.done()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_a_marked_stream_whose_content_never_begins_fails_at_the_first_token_limit(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(["role", "ping"], then="block")
    stream = marked(Context(), upstream)
    assert [await stream.__anext__(), await stream.__anext__()] == ["role", "ping"]
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(9)
    await spin()
    assert not reader.done()
    manual_clock.advance(2)
    with pytest.raises(FirstTokenTimeout) as raised:
        await reader
    assert (
        raised.value.message
        == "upstream sent no answer content within the first_token deadline (10s)"
    )
    assert upstream.closed.is_set()
    error = stream.get_stream_error()
    assert error is not None
    assert (error.type.value, error.code) == ("timeout", "first_token_timeout")


async def test_content_arrived_meets_the_first_token_limit(manual_clock: ManualClock) -> None:
    upstream = Upstream(["role", "text"], then="block")
    stream = marked(Context(), upstream)
    await stream.__anext__()
    await stream.__anext__()
    stream.content_arrived()
    await assert_no_deadline_fires(stream, upstream, manual_clock)


async def test_the_first_token_clock_runs_while_the_caller_holds_an_item(
    manual_clock: ManualClock,
) -> None:
    # Unlike the idle gap, the first-token limit is the upstream's whole opening.
    upstream = Upstream(["role"], then="block")
    stream = marked(Context(), upstream)
    await stream.__anext__()
    manual_clock.advance(11)
    await spin()
    with pytest.raises(FirstTokenTimeout):
        await stream.__anext__()


async def test_while_connecting_the_first_token_clock_restarts_with_the_first_byte_clock(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(then="block")
    timeouts = Timeouts(connect=5, first_byte=None, idle=None, first_token=10)
    stream = ContextAwareStream(
        Context(), upstream.iterator, timeouts, connecting=True, marks_content=True
    )
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(3)
    stream.restart_first_byte_clock()  # the request went out after 3 s: deadline at 13 s
    manual_clock.advance(9.5)
    await spin()
    assert not reader.done()
    manual_clock.advance(1)
    with pytest.raises(FirstTokenTimeout):
        await reader


async def test_a_first_byte_limit_shorter_than_the_first_token_limit_still_fires_first(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(then="block")
    stream = marked(Context(), upstream, Timeouts(first_byte=2, idle=None, first_token=10))
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(3)
    with pytest.raises(FirstByteTimeout):
        await reader


@pytest.mark.parametrize(
    ("first_byte", "fired"),
    [(60.0, FirstTokenTimeout), (5.0, FirstByteTimeout), (None, FirstTokenTimeout)],
)
async def test_an_unmarked_stream_takes_the_earlier_of_first_byte_and_first_token(
    manual_clock: ManualClock, first_byte: float | None, fired: type[Exception]
) -> None:
    upstream = Upstream(then="block")
    timeouts = Timeouts(first_byte=first_byte, idle=None, first_token=10)
    stream = ContextAwareStream(Context(), upstream.iterator, timeouts)
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(min(first_byte or 10, 10) + 1)
    with pytest.raises(fired):
        await reader


async def test_an_unmarked_stream_meets_the_first_token_limit_with_its_first_item(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream([1], then="block")
    stream = ContextAwareStream(
        Context(), upstream.iterator, Timeouts(first_byte=None, idle=None, first_token=10)
    )
    assert await stream.__anext__() == 1
    await assert_no_deadline_fires(stream, upstream, manual_clock)


async def test_without_a_first_token_limit_a_marked_stream_adds_no_context() -> None:
    ctx = Context()
    stream = marked(ctx, Upstream([1]), Timeouts())
    (phase,) = ctx._children
    assert phase._children == frozenset()  # the reads' scope is the phase, as without marks
    stream.content_arrived()  # free, and harmless
    await stream.aclose()


async def test_the_callers_cancel_reaches_a_read_through_the_first_token_context() -> None:
    ctx = Context()
    upstream = Upstream(then="block")
    stream = marked(ctx, upstream)
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    ctx.cancel(ClientDisconnected())
    with pytest.raises(ClientDisconnected):
        await reader
    assert upstream.closed.is_set()


async def test_aclose_releases_the_first_token_timer_and_the_link_to_the_callers_context(
    manual_clock: ManualClock,
) -> None:
    ctx = Context()
    stream = marked(ctx, Upstream([1]))
    assert len(ctx._children) == 1
    await stream.aclose()
    assert ctx._children == set()
    manual_clock.advance(50)
    await spin()
    assert stream.get_stream_error() is None  # the first-token deadline no longer fires
