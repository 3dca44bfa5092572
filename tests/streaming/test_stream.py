"""`ContextAwareStream` / `stream_from_context`: items in order, blocked reads interrupted by the
context and the first-byte / idle limits, the base always closed, errors categorised.

Bases are async generators whose `finally` sets an event, so "the base was closed" is observed,
not assumed. Blocked bases wait on futures that never complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

import pytest

from gateway.errors import (
    Canceled,
    ClientDisconnected,
    ConnectionReset,
    DeadlineExceeded,
    ErrorCategory,
    FirstByteTimeout,
    GatewayError,
    IdleTimeout,
    StreamInterrupted,
    UpstreamTruncated,
)
from gateway.streaming import (
    Context,
    ContextAwareStream,
    StreamError,
    Timeouts,
    stream_from_context,
)
from tests.streaming.conftest import ManualClock, spin

T = TypeVar("T")

TINY = 0.01
NO_LIMITS = Timeouts(connect=None, first_byte=None, idle=None, total=None)


class Upstream:
    """A scripted base: yields `items`, then blocks forever, raises `error`, or ends."""

    def __init__(
        self,
        items: Sequence[object] = (),
        *,
        then: str = "end",
        error: BaseException | None = None,
    ) -> None:
        self.items = list(items)
        self.then = then
        self.error = error
        self.blocked = asyncio.Event()  # set when the base waits for an item that never comes
        self.closed = asyncio.Event()  # set by the generator's `finally`
        self.iterator = self._run()

    async def _run(self) -> AsyncIterator[object]:
        try:
            for item in self.items:
                yield item
            if self.then == "block":
                self.blocked.set()
                await asyncio.get_running_loop().create_future()
            elif self.then == "raise":
                assert self.error is not None
                raise self.error
        finally:
            self.closed.set()


class CountingIterator:
    """A plain async iterator (not a generator) that counts `aclose()` calls.

    Unlike a generator it does not finalise itself when an exception passes through it, so
    only the stream's own `aclose()` releases it. With `block=True` it waits forever once its
    items are used up; `on_cancel` is raised in place of the `CancelledError` that interrupts
    that wait (like a client library that reports a closed connection instead).
    """

    def __init__(
        self,
        items: Sequence[object],
        *,
        block: bool = False,
        on_cancel: Exception | None = None,
    ) -> None:
        self._items = iter(items)
        self._block = block
        self._on_cancel = on_cancel
        self.blocked = asyncio.Event()
        self.aclose_calls = 0

    def __aiter__(self) -> CountingIterator:
        return self

    async def __anext__(self) -> object:
        try:
            return next(self._items)
        except StopIteration:
            if not self._block:
                raise StopAsyncIteration from None
        self.blocked.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            if self._on_cancel is None:
                raise
            raise self._on_cancel from None
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self.aclose_calls += 1


async def collect(stream: ContextAwareStream[T]) -> list[T]:
    return [item async for item in stream]


# --- clean streams ---------------------------------------------------------------------------


async def test_yields_the_items_of_the_base_in_order_then_ends_cleanly():
    upstream = Upstream([b"a", b"b", b"c"])
    stream = stream_from_context(Context(), upstream.iterator, Timeouts())
    assert await collect(stream) == [b"a", b"b", b"c"]
    assert stream.items == 3
    assert upstream.closed.is_set()
    assert stream.get_stream_error() is None
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_stream_from_context_defaults_to_the_standard_timeouts():
    upstream = Upstream([1, 2])
    stream = stream_from_context(Context(), upstream.iterator)
    assert isinstance(stream, ContextAwareStream)
    assert await collect(stream) == [1, 2]


async def test_a_context_cancelled_after_a_clean_end_does_not_become_the_streams_error():
    ctx = Context()
    stream = stream_from_context(ctx, Upstream([1]).iterator, Timeouts())
    await collect(stream)
    ctx.cancel(ClientDisconnected())
    assert stream.get_stream_error() is None


async def test_a_base_without_aclose_is_supported():
    class Plain:
        def __init__(self) -> None:
            self.left = [1, 2]

        def __aiter__(self) -> Plain:
            return self

        async def __anext__(self) -> int:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop(0)

    stream = stream_from_context(Context(), Plain(), Timeouts())
    assert await collect(stream) == [1, 2]
    await stream.aclose()


# --- interrupted reads -----------------------------------------------------------------------


async def test_cancelling_the_context_interrupts_a_blocked_read_with_the_cause():
    ctx = Context()
    upstream = Upstream([b"first"], then="block")
    stream = stream_from_context(ctx, upstream.iterator, NO_LIMITS)
    received: list[object] = []

    async def consume() -> int:
        try:
            async for item in stream:
                received.append(item)
        except ClientDisconnected as exc:
            received.append(exc)
        return asyncio.current_task().cancelling()  # type: ignore[union-attr]

    consumer = asyncio.create_task(consume())
    await upstream.blocked.wait()
    cause = ClientDisconnected(phase="streaming")
    ctx.cancel(cause)
    assert await consumer == 0  # the stream's own interruption left no cancel request behind
    assert received == [b"first", cause]
    assert upstream.closed.is_set()
    error = stream.get_stream_error()
    assert error is not None
    assert (error.type, error.code) == (ErrorCategory.CONTEXT_CANCELED, "client_disconnected")


async def test_first_byte_timeout_fires_when_the_base_never_yields():
    upstream = Upstream(then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=TINY))
    with pytest.raises(FirstByteTimeout) as excinfo:
        await stream.__anext__()
    assert excinfo.value.limit == TINY
    assert "first_byte" in excinfo.value.message
    assert upstream.closed.is_set()
    assert stream.items == 0


async def test_idle_timeout_interrupts_a_blocked_read_after_some_items():
    upstream = Upstream([1, 2], then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(idle=TINY))
    assert await stream.__anext__() == 1
    assert await stream.__anext__() == 2
    with pytest.raises(IdleTimeout) as excinfo:
        await stream.__anext__()
    assert excinfo.value.limit == TINY
    assert "idle" in excinfo.value.message
    assert upstream.closed.is_set()


async def test_the_callers_deadline_interrupts_a_blocked_read():
    ctx = Context.with_timeout(TINY)
    upstream = Upstream([1], then="block")
    stream = stream_from_context(ctx, upstream.iterator, NO_LIMITS)
    with pytest.raises(DeadlineExceeded) as excinfo:
        await collect(stream)
    assert excinfo.value is ctx.cause
    assert upstream.closed.is_set()


async def test_a_stream_over_a_done_context_fails_at_once_and_closes_the_base():
    ctx = Context()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    base = CountingIterator([1])
    stream = stream_from_context(ctx, base, Timeouts())
    with pytest.raises(ClientDisconnected) as excinfo:
        await stream.__anext__()
    assert excinfo.value is cause
    assert base.aclose_calls == 1


async def test_no_first_byte_limit_after_the_first_item_when_idle_is_unlimited():
    # Regression: without an idle limit the first-byte deadline stayed armed after the first
    # item and ended a healthy stream with FirstByteTimeout.
    async def slow_second_item() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(5 * TINY)
        yield 2

    stream = stream_from_context(
        Context(), slow_second_item(), Timeouts(first_byte=TINY, idle=None)
    )
    assert await collect(stream) == [1, 2]
    assert stream.get_stream_error() is None


async def test_an_idle_limit_longer_than_the_first_byte_limit_replaces_it():
    # The phase timer is moved later lazily: it fires at the old first-byte deadline, finds the
    # idle deadline ahead and re-arms instead of ending the stream.
    async def slow_second_item() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(5 * TINY)
        yield 2

    stream = stream_from_context(Context(), slow_second_item(), Timeouts(first_byte=TINY, idle=30))
    assert await collect(stream) == [1, 2]


async def test_an_idle_limit_shorter_than_the_first_byte_limit_applies_after_the_first_item():
    upstream = Upstream([1], then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=60, idle=TINY))
    with pytest.raises(IdleTimeout):
        await collect(stream)


async def test_time_the_caller_holds_an_item_is_not_upstream_idleness(
    manual_clock: ManualClock,
) -> None:
    # Regression (found by tests/chaos): the idle clock ran while the relay was blocked writing
    # an item to a client that read slowly, and the next read - whose item was already there -
    # failed with "upstream did not respond within the idle deadline".
    upstream = Upstream([1, 2], then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=None, idle=10))
    assert await stream.__anext__() == 1
    manual_clock.advance(60)  # the caller is busy with item 1
    await spin()
    assert await stream.__anext__() == 2
    assert stream.get_stream_error() is None
    await stream.aclose()


async def test_the_idle_clock_starts_when_the_caller_asks_for_the_next_item(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream([1], then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=None, idle=10))
    assert await stream.__anext__() == 1
    manual_clock.advance(60)
    await spin()
    reader = asyncio.create_task(stream.__anext__())
    await spin()
    assert upstream.blocked.is_set()
    manual_clock.advance(9)
    await spin()
    assert not reader.done()
    manual_clock.advance(2)
    with pytest.raises(IdleTimeout):
        await reader
    assert upstream.closed.is_set()


async def test_restart_first_byte_clock_starts_the_limit_afresh(manual_clock: ManualClock) -> None:
    gate = asyncio.Event()

    async def late_first_item() -> AsyncIterator[str]:
        await gate.wait()
        yield "first"

    stream = stream_from_context(Context(), late_first_item(), Timeouts(first_byte=10, idle=None))
    manual_clock.advance(8)
    stream.restart_first_byte_clock()  # e.g. the upstream request has only now been sent
    manual_clock.advance(8)  # 16 s since the stream was made, 8 s since the restart
    reader = asyncio.create_task(stream.__anext__())
    await spin()
    assert not reader.done()
    gate.set()
    assert await reader == "first"
    await stream.aclose()


async def test_without_a_restart_the_first_byte_clock_runs_from_creation(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=10, idle=None))
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(11)
    with pytest.raises(FirstByteTimeout):
        await reader


async def test_restart_first_byte_clock_after_the_first_item_changes_nothing(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream([1], then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=1, idle=None))
    assert await stream.__anext__() == 1
    stream.restart_first_byte_clock()
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(100)
    await spin()
    assert not reader.done()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_while_connecting_the_first_byte_clock_starts_after_the_connect_limit(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(then="block")
    stream = ContextAwareStream(
        Context(), upstream.iterator, Timeouts(connect=5, first_byte=10), connecting=True
    )
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(12)  # past first_byte alone, within connect + first_byte
    await spin()
    assert not reader.done()
    manual_clock.advance(4)
    with pytest.raises(FirstByteTimeout):
        await reader


async def test_while_connecting_a_restart_starts_the_first_byte_clock_at_once(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(then="block")
    stream = ContextAwareStream(
        Context(), upstream.iterator, Timeouts(connect=5, first_byte=10), connecting=True
    )
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(1)
    stream.restart_first_byte_clock()  # the request went out after 1 s: deadline at 11 s
    manual_clock.advance(10.5)
    with pytest.raises(FirstByteTimeout):
        await reader


async def test_while_connecting_without_a_connect_limit_the_first_byte_clock_runs_at_once(
    manual_clock: ManualClock,
) -> None:
    upstream = Upstream(then="block")
    stream = ContextAwareStream(
        Context(), upstream.iterator, Timeouts(connect=None, first_byte=10), connecting=True
    )
    reader = asyncio.create_task(stream.__anext__())
    await upstream.blocked.wait()
    manual_clock.advance(11)
    with pytest.raises(FirstByteTimeout):
        await reader


# --- errors ----------------------------------------------------------------------------------


def ctx_cancelled_by_client(ctx: Context) -> None:
    ctx.cancel(ClientDisconnected())


ENDINGS = [
    pytest.param(
        [1], NO_LIMITS, None, ctx_cancelled_by_client, ("context_canceled", "client_disconnected"),
        id="client-disconnected",
    ),
    pytest.param(
        [], Timeouts(first_byte=TINY), None, None, ("timeout", "first_byte_timeout"),
        id="first-byte",
    ),
    pytest.param([1], Timeouts(idle=TINY), None, None, ("timeout", "idle_timeout"), id="idle"),
    pytest.param(
        [1], NO_LIMITS, ConnectionResetError(104, "reset by peer"), None,
        ("network", "connection_reset"), id="connection-reset",
    ),
    pytest.param(
        [1], NO_LIMITS, ConnectionRefusedError(), None, ("network", "connect_failed"),
        id="connection-refused",
    ),
    pytest.param(
        [1], NO_LIMITS, TimeoutError(), None, ("timeout", "deadline_exceeded"),
        id="foreign-timeout",
    ),
    pytest.param(
        [1], NO_LIMITS, ValueError("bad chunk"), None, ("stream_interrupted", "stream_interrupted"),
        id="foreign-value-error",
    ),
    pytest.param(
        [], NO_LIMITS, UpstreamTruncated(), None, ("stream_interrupted", "upstream_truncated"),
        id="gateway-error-from-base",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("items", "timeouts", "error", "action", "expected"), ENDINGS)
async def test_get_stream_error_reports_how_the_stream_ended(
    items, timeouts, error, action, expected
):
    ctx = Context()
    upstream = Upstream(items, then="raise" if error else "block", error=error)
    stream = stream_from_context(ctx, upstream.iterator, timeouts)
    for item in items:
        assert await stream.__anext__() == item
    assert stream.get_stream_error() is None
    reader = asyncio.create_task(stream.__anext__())
    if action is not None:
        await upstream.blocked.wait()
        action(ctx)
    with pytest.raises(GatewayError) as excinfo:
        await reader
    stream_error = stream.get_stream_error()
    assert isinstance(stream_error, StreamError)
    assert (stream_error.type.value, stream_error.code) == expected
    assert stream_error.message == excinfo.value.message
    assert upstream.closed.is_set()


@pytest.mark.parametrize(
    ("foreign", "translated"),
    [
        pytest.param(ConnectionResetError(104, "peer reset"), ConnectionReset, id="reset"),
        pytest.param(ValueError("could not parse"), StreamInterrupted, id="value-error"),
    ],
)
async def test_a_foreign_exception_from_the_base_is_translated_and_chained(foreign, translated):
    upstream = Upstream([1], then="raise", error=foreign)
    stream = stream_from_context(Context(), upstream.iterator, NO_LIMITS)
    with pytest.raises(translated) as excinfo:
        await collect(stream)
    assert excinfo.value.__cause__ is foreign
    assert str(foreign) not in excinfo.value.message  # the foreign text is not shown to clients


async def test_a_gateway_error_from_the_base_is_raised_as_is():
    error = UpstreamTruncated()
    stream = stream_from_context(Context(), Upstream(then="raise", error=error).iterator)
    with pytest.raises(UpstreamTruncated) as excinfo:
        await stream.__anext__()
    assert excinfo.value is error


async def test_after_an_error_further_reads_reraise_the_same_error():
    upstream = Upstream(then="raise", error=ConnectionResetError())
    stream = stream_from_context(Context(), upstream.iterator, NO_LIMITS)
    with pytest.raises(ConnectionReset) as first:
        await stream.__anext__()
    for _ in range(2):
        with pytest.raises(ConnectionReset) as again:
            await stream.__anext__()
        assert again.value is first.value


async def test_after_a_timeout_further_reads_reraise_the_timeout():
    upstream = Upstream(then="block")
    stream = stream_from_context(Context(), upstream.iterator, Timeouts(first_byte=TINY))
    with pytest.raises(FirstByteTimeout) as first:
        await stream.__anext__()
    with pytest.raises(FirstByteTimeout) as again:
        await stream.__anext__()
    assert again.value is first.value


# --- cancellation by the owner and aclose ----------------------------------------------------


async def test_an_external_task_cancel_propagates_cancelled_error_and_closes_the_base():
    ctx = Context()
    upstream = Upstream([1], then="block")
    stream = stream_from_context(ctx, upstream.iterator, Timeouts())
    reader = asyncio.create_task(collect(stream))
    await upstream.blocked.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert upstream.closed.is_set()
    assert not ctx.done()  # the caller's context is not the stream's to end
    assert stream.get_stream_error() is None
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_an_external_task_cancel_acloses_a_base_that_is_not_a_generator():
    base = CountingIterator([1], block=True)
    stream = stream_from_context(Context(), base, Timeouts())
    reader = asyncio.create_task(collect(stream))
    await base.blocked.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert base.aclose_calls == 1


@pytest.mark.parametrize(
    "end",
    [
        pytest.param(lambda ctx: ctx.cancel(ClientDisconnected()), id="context-cancelled"),
        pytest.param(None, id="first-byte-timeout"),
    ],
)
async def test_an_interrupted_read_acloses_a_base_that_is_not_a_generator(end):
    ctx = Context()
    base = CountingIterator([], block=True)
    stream = stream_from_context(ctx, base, Timeouts(first_byte=None if end else TINY))
    reader = asyncio.create_task(stream.__anext__())
    await base.blocked.wait()
    if end is not None:
        end(ctx)
    with pytest.raises(GatewayError):
        await reader
    assert base.aclose_calls == 1


async def test_the_contexts_cause_wins_over_the_error_the_interruption_provoked_in_the_base():
    ctx = Context()
    provoked = ConnectionResetError("closed by the gateway")
    base = CountingIterator([], block=True, on_cancel=provoked)
    stream = stream_from_context(ctx, base, NO_LIMITS)
    reader = asyncio.create_task(stream.__anext__())
    await base.blocked.wait()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    with pytest.raises(ClientDisconnected) as excinfo:
        await reader
    assert excinfo.value is cause
    assert excinfo.value.__cause__ is None  # the shared cause carries no one stream's noise
    stream_error = stream.get_stream_error()
    assert stream_error is not None
    assert stream_error.code == "client_disconnected"
    assert reader.cancelling() == 0


async def test_aclose_closes_the_base_and_is_idempotent():
    base = CountingIterator([1, 2, 3])
    stream = stream_from_context(Context(), base, Timeouts())
    assert await stream.__anext__() == 1
    await stream.aclose()
    await stream.aclose()
    assert base.aclose_calls == 1
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert stream.get_stream_error() is None


async def test_aclose_runs_the_base_generators_cleanup():
    upstream = Upstream([1, 2])
    stream = stream_from_context(Context(), upstream.iterator, Timeouts())
    assert await stream.__anext__() == 1
    await stream.aclose()
    assert upstream.closed.is_set()


async def test_aclose_releases_the_phase_timer_and_the_link_to_the_callers_context(
    manual_clock: ManualClock,
) -> None:
    ctx = Context()
    stream = stream_from_context(ctx, CountingIterator([]), Timeouts(first_byte=1))
    assert len(ctx._children) == 1
    await stream.aclose()
    assert ctx._children == set()
    manual_clock.advance(5)
    await spin()
    assert stream.get_stream_error() is None  # the first-byte deadline no longer fires


async def test_the_phase_context_is_unlinked_after_each_kind_of_ending():
    ctx = Context()
    for upstream, timeouts in (
        (Upstream([1]), NO_LIMITS),
        (Upstream(then="raise", error=ValueError()), NO_LIMITS),
        (Upstream(then="block"), Timeouts(first_byte=TINY)),
    ):
        stream = stream_from_context(ctx, upstream.iterator, timeouts)
        with contextlib.suppress(GatewayError):
            await collect(stream)
        assert upstream.closed.is_set()
    assert ctx._children == set()
    assert not ctx.done()


async def test_idle_error_names_the_configured_limit():
    stream = stream_from_context(
        Context(), Upstream([1], then="block").iterator, Timeouts(idle=TINY)
    )
    with pytest.raises(IdleTimeout) as excinfo:
        await collect(stream)
    expected = functools.partial(IdleTimeout, limit=TINY)()
    assert excinfo.value.message == expected.message


async def test_aclose_from_another_task_interrupts_a_blocked_read_and_closes_the_base():
    closed = asyncio.Event()
    reading = asyncio.Event()

    async def never() -> AsyncIterator[int]:
        try:
            reading.set()
            await asyncio.Event().wait()
            yield 1
        finally:
            closed.set()

    stream = stream_from_context(Context.with_timeout(None), never(), Timeouts(first_byte=None))
    reader = asyncio.ensure_future(stream.__anext__())
    await reading.wait()
    await stream.aclose()
    with pytest.raises(Canceled):
        await reader
    assert closed.is_set()
    assert stream.get_stream_error().code == "context_canceled"
    with pytest.raises(Canceled):
        await stream.__anext__()
