"""`Context`: first cause wins, deadlines raise their typed error, parents reach children,
`close()` unlinks, and `scope()` interrupts a blocked task with the cause.

Deadlines are tiny (0.01 s) and the tests wait on the context or on futures, never on time.
Where a test must show that a deadline has *not* fired yet, it uses the `manual_clock` fixture.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from gateway.errors import (
    ClientDisconnected,
    DeadlineExceeded,
    FirstByteTimeout,
    GatewayError,
    GatewayTimeout,
    IdleTimeout,
    ServerShutdown,
)
from gateway.streaming import Context
from tests.streaming.conftest import ManualClock, spin

TINY = 0.01


def never() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


# --- cancel and cause ------------------------------------------------------------------------


async def test_new_context_is_live_without_cause_or_deadline():
    ctx = Context()
    assert not ctx.done()
    assert ctx.cause is None
    assert ctx.deadline is None
    assert ctx.remaining() is None


async def test_cancel_sets_the_cause_and_the_first_cause_wins():
    ctx = Context()
    first, second = ClientDisconnected(), ServerShutdown()
    assert ctx.cancel(first) is True
    assert ctx.cancel(second) is False
    assert ctx.done()
    assert ctx.cause is first


async def test_cancel_after_a_deadline_expired_keeps_the_deadline_error():
    ctx = Context.with_timeout(TINY)
    cause = await ctx.wait()
    assert ctx.cancel(ClientDisconnected()) is False
    assert ctx.cause is cause
    assert isinstance(cause, DeadlineExceeded)


# --- deadlines -------------------------------------------------------------------------------


async def test_deadline_expiry_ends_the_context_with_its_deadline_error_naming_the_limit():
    ctx = Context.with_timeout(TINY, functools.partial(IdleTimeout, limit=1.0))
    cause = await ctx.wait()
    assert ctx.done()
    assert ctx.cause is cause
    assert isinstance(cause, IdleTimeout)
    assert isinstance(cause, GatewayTimeout)
    assert isinstance(cause, TimeoutError)
    assert cause.limit == 1.0
    assert "idle" in cause.message
    assert "1s" in cause.message


async def test_default_deadline_error_is_deadline_exceeded():
    cause = await Context.with_timeout(TINY).wait()
    assert type(cause) is DeadlineExceeded
    assert cause.code == "deadline_exceeded"


async def test_with_timeout_none_never_expires(manual_clock: ManualClock) -> None:
    ctx = Context.with_timeout(None)
    manual_clock.advance(10_000)
    await spin()
    assert not ctx.done()
    assert ctx.deadline is None


async def test_a_deadline_in_the_past_expires_on_the_next_loop_turn():
    ctx = Context(deadline=asyncio.get_running_loop().time() - 1)
    assert not ctx.done()  # expiry is the loop's job, never synchronous in the constructor
    assert isinstance(await ctx.wait(), DeadlineExceeded)


# --- children --------------------------------------------------------------------------------


async def test_child_with_the_earlier_deadline_ends_with_its_own_error():
    parent = Context.with_timeout(60)
    child = parent.child(TINY, deadline_error=functools.partial(FirstByteTimeout, limit=TINY))
    cause = await child.wait()
    assert isinstance(cause, FirstByteTimeout)
    assert not parent.done()
    assert parent._children == set()  # a done child is unlinked from its parent
    parent.close()


async def test_parent_with_the_earlier_deadline_ends_the_child_with_the_parents_cause():
    parent = Context.with_timeout(TINY)
    child = parent.child(60, deadline_error=IdleTimeout)
    assert child.deadline == parent.deadline  # the effective deadline is the earliest
    cause = await child.wait()
    assert cause is parent.cause
    assert isinstance(cause, DeadlineExceeded)
    assert child._timer is None  # the child's own (later) timer was released


async def test_child_inherits_the_parents_deadline_error_unless_given_one():
    parent = Context(deadline_error=functools.partial(IdleTimeout, limit=TINY))
    cause = await parent.child(TINY).wait()
    assert isinstance(cause, IdleTimeout)
    assert not parent.done()


async def test_parent_cancel_reaches_children_and_grandchildren_with_the_same_cause():
    parent = Context()
    children = [parent.child(), parent.child(60)]
    grandchild = children[0].child()
    cause = ClientDisconnected()
    parent.cancel(cause)
    for ctx in (*children, grandchild):
        assert ctx.done()
        assert ctx.cause is cause
    assert parent._children == set()
    assert children[0]._children == set()


async def test_child_cancel_does_not_reach_the_parent_or_siblings():
    parent = Context()
    child, sibling = parent.child(), parent.child()
    child.cancel(ClientDisconnected())
    assert not parent.done()
    assert not sibling.done()
    assert parent._children == {sibling}


async def test_child_of_a_done_parent_is_done_at_once_with_the_parents_cause():
    parent = Context()
    cause = ServerShutdown()
    parent.cancel(cause)
    child = parent.child(60)
    assert child.done()
    assert child.cause is cause
    assert parent._children == set()
    assert child._timer is None


async def test_close_unlinks_the_child_and_releases_its_timer(manual_clock: ManualClock) -> None:
    parent = Context()
    child = parent.child(5)
    assert parent._children == {child}
    armed = child._timer is not None
    assert armed
    child.close()
    assert parent._children == set()
    assert child._timer is None
    assert not child.done()
    parent.cancel(ClientDisconnected())
    assert not child.done()  # no longer linked: the parent's cancel does not reach it
    manual_clock.advance(10)
    await spin()
    assert not child.done()  # and its deadline no longer fires


async def test_close_is_idempotent_and_leaves_a_done_context_done():
    ctx = Context.with_timeout(60)
    cause = ClientDisconnected()
    ctx.cancel(cause)
    ctx.close()
    ctx.close()
    assert ctx.cause is cause


# --- reschedule and remaining ----------------------------------------------------------------


async def test_reschedule_later_postpones_expiry(manual_clock: ManualClock) -> None:
    ctx = Context.with_timeout(1)
    ctx.reschedule(manual_clock.now + 5)
    manual_clock.advance(2)  # past the first deadline: its timer fires early and re-arms
    await spin()
    assert not ctx.done()
    manual_clock.advance(4)
    await spin()
    assert isinstance(ctx.cause, DeadlineExceeded)


async def test_reschedule_earlier_brings_expiry_forward(manual_clock: ManualClock) -> None:
    ctx = Context.with_timeout(60)
    ctx.reschedule(manual_clock.now + 1, functools.partial(IdleTimeout, limit=1.0))
    manual_clock.advance(2)
    await spin()
    assert isinstance(ctx.cause, IdleTimeout)


async def test_reschedule_none_removes_the_deadline(manual_clock: ManualClock) -> None:
    ctx = Context.with_timeout(1)
    ctx.reschedule(None)
    assert ctx.deadline is None
    assert ctx._timer is None
    manual_clock.advance(100)
    await spin()
    assert not ctx.done()


async def test_reschedule_replaces_the_deadline_error(manual_clock: ManualClock) -> None:
    ctx = Context.with_timeout(1)
    ctx.reschedule(manual_clock.now + 1, functools.partial(FirstByteTimeout, limit=1.0))
    ctx.reschedule(manual_clock.now + 2, functools.partial(IdleTimeout, limit=2.0))
    manual_clock.advance(3)
    await spin()
    assert isinstance(ctx.cause, IdleTimeout)


async def test_reschedule_of_a_done_context_is_ignored(manual_clock: ManualClock) -> None:
    ctx = Context()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    ctx.reschedule(manual_clock.now + 1, IdleTimeout)
    assert ctx._timer is None
    assert ctx.deadline is None
    manual_clock.advance(2)
    await spin()
    assert ctx.cause is cause


async def test_remaining_counts_down_to_the_deadline_and_never_goes_negative(
    manual_clock: ManualClock,
) -> None:
    ctx = Context.with_timeout(10)
    assert ctx.remaining() == pytest.approx(10)
    manual_clock.advance(4)
    assert ctx.remaining() == pytest.approx(6)
    manual_clock.advance(20)  # the timer has not run yet: remaining() clamps at zero
    assert ctx.remaining() == 0.0


async def test_remaining_of_a_child_follows_the_earlier_parent_deadline(
    manual_clock: ManualClock,
) -> None:
    parent = Context.with_timeout(3)
    child = parent.child(10)
    assert child.remaining() == pytest.approx(3)
    assert parent.child().remaining() == pytest.approx(3)


# --- wait and done callbacks -----------------------------------------------------------------


async def test_wait_returns_the_cause_once_another_task_cancels():
    ctx = Context()
    waiter = asyncio.create_task(ctx.wait())
    await spin(2)
    assert not waiter.done()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    assert await waiter is cause
    assert ctx._callbacks == []


async def test_wait_on_a_done_context_returns_at_once():
    ctx = Context()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    assert await ctx.wait() is cause


async def test_a_cancelled_wait_propagates_cancelled_error_and_unregisters():
    ctx = Context()
    waiter = asyncio.create_task(ctx.wait())
    await spin(2)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ctx._callbacks == []
    assert not ctx.done()


async def test_done_callback_is_called_once_with_the_context():
    ctx = Context()
    calls: list[Context] = []
    ctx.add_done_callback(calls.append)
    ctx.cancel(ClientDisconnected())
    ctx.cancel(ServerShutdown())
    assert calls == [ctx]


async def test_done_callback_added_to_a_done_context_is_called_at_once():
    ctx = Context()
    ctx.cancel(ClientDisconnected())
    calls: list[Context] = []
    ctx.add_done_callback(calls.append)
    assert calls == [ctx]


async def test_done_callbacks_run_on_deadline_expiry_and_parent_cancel():
    parent = Context()
    expiring = Context.with_timeout(TINY)
    child = parent.child()
    calls: list[Context] = []
    expiring.add_done_callback(calls.append)
    child.add_done_callback(calls.append)
    await expiring.wait()
    parent.cancel(ClientDisconnected())
    assert calls == [expiring, child]


async def test_removed_done_callback_is_not_called_and_removing_twice_is_harmless():
    ctx = Context()
    calls: list[Context] = []
    ctx.add_done_callback(calls.append)
    ctx.remove_done_callback(calls.append)
    ctx.remove_done_callback(calls.append)
    ctx.cancel(ClientDisconnected())
    assert calls == []


# --- scope -----------------------------------------------------------------------------------


async def blocked_in_scope(ctx: Context) -> asyncio.Task[None]:
    """A task blocked forever inside `ctx.scope()`, returned once it is in there."""
    entered = asyncio.Event()

    async def blocked() -> None:
        with ctx.scope():
            entered.set()
            await never()

    task = asyncio.create_task(blocked())
    await entered.wait()
    return task


async def test_scope_interrupts_a_task_blocked_forever_with_the_cause():
    ctx = Context()
    entered = asyncio.Event()
    outcome: list[object] = []

    async def blocked() -> None:
        try:
            with ctx.scope():
                entered.set()
                await never()
        except GatewayError as exc:
            outcome.append(exc)
            # the scope withdrew its own cancellation: the task is not left cancelling
            outcome.append(asyncio.current_task().cancelling())  # type: ignore[union-attr]
            await asyncio.sleep(0)  # and no cancellation is pending either
            outcome.append("still running")

    task = asyncio.create_task(blocked())
    await entered.wait()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    await task
    assert outcome == [cause, 0, "still running"]


async def test_scope_interrupts_a_blocked_task_when_the_deadline_expires():
    ctx = Context.with_timeout(TINY, functools.partial(IdleTimeout, limit=TINY))
    with pytest.raises(IdleTimeout) as excinfo, ctx.scope():
        await never()
    assert excinfo.value is ctx.cause
    assert excinfo.value.__suppress_context__  # the internal CancelledError is not chained
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_scope_interrupts_through_a_parents_cancel():
    parent = Context()
    child = parent.child()
    entered = asyncio.Event()

    async def blocked() -> None:
        with child.scope():
            entered.set()
            await never()

    task = asyncio.create_task(blocked())
    await entered.wait()
    cause = ServerShutdown()
    parent.cancel(cause)
    with pytest.raises(ServerShutdown) as excinfo:
        await task
    assert excinfo.value is cause


async def test_scope_cancelled_by_someone_else_reraises_cancelled_error_not_the_cause():
    ctx = Context()
    task = await blocked_in_scope(ctx)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not ctx.done()
    assert ctx._callbacks == []  # the scope unregistered itself


async def test_an_owners_cancel_wins_over_the_context_ending_at_the_same_time():
    ctx = Context()
    task = await blocked_in_scope(ctx)
    task.cancel()
    ctx.cancel(ClientDisconnected())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_entering_the_scope_of_a_done_context_raises_the_cause_at_once():
    ctx = Context()
    cause = ClientDisconnected()
    ctx.cancel(cause)
    reached = False
    with pytest.raises(ClientDisconnected) as excinfo, ctx.scope():
        reached = True
    assert excinfo.value is cause
    assert not reached
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_scope_that_ends_without_blocking_leaves_the_task_untouched():
    ctx = Context()
    with ctx.scope():
        pass
    assert ctx._callbacks == []
    ctx.cancel(ClientDisconnected())  # after the scope: nothing to interrupt
    await asyncio.sleep(0)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_task_that_ends_its_own_context_inside_a_scope_gets_no_stray_cancellation():
    # Regression: the scope used to cancel the running task itself; that cancellation was
    # only delivered at the task's next await, after the scope had been left (on Python 3.11
    # `uncancel()` does not withdraw it), so an unrelated later await raised CancelledError.
    ctx = Context()
    with ctx.scope():
        ctx.cancel(ClientDisconnected())
    await spin()  # would raise CancelledError
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_task_that_ends_its_own_context_is_interrupted_at_its_next_await_in_scope():
    ctx = Context()
    cause = ClientDisconnected()

    async def cancel_own_context_then_block() -> None:
        with ctx.scope():
            ctx.cancel(cause)
            await never()

    with pytest.raises(ClientDisconnected) as excinfo:
        await cancel_own_context_then_block()
    assert excinfo.value is cause
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_nested_scopes_of_parent_and_child_surface_the_cause_once():
    parent = Context()
    child = parent.child()
    entered = asyncio.Event()

    async def blocked() -> int:
        try:
            with parent.scope(), child.scope():
                entered.set()
                await never()
        except ClientDisconnected:
            return asyncio.current_task().cancelling()  # type: ignore[union-attr]
        raise AssertionError("not interrupted")

    task = asyncio.create_task(blocked())
    await entered.wait()
    parent.cancel(ClientDisconnected())
    assert await task == 0


async def test_scope_body_that_swallows_the_interruption_completes_normally():
    ctx = Context()
    entered = asyncio.Event()

    async def stubborn() -> str:
        with ctx.scope():
            entered.set()
            try:
                await never()
            except asyncio.CancelledError:
                return "swallowed"
        raise AssertionError("unreachable")

    task = asyncio.create_task(stubborn())
    await entered.wait()
    ctx.cancel(ClientDisconnected())
    assert await task == "swallowed"
    assert task.cancelling() == 0


async def test_a_failing_done_callback_does_not_stop_the_others_or_the_canceller():
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        ctx = Context()
        child = ctx.child()
        seen: list[str] = []

        def broken(_: Context) -> None:
            raise RuntimeError("boom")

        ctx.add_done_callback(broken)
        ctx.add_done_callback(lambda _: seen.append("after"))
        assert ctx.cancel(ClientDisconnected())
    finally:
        loop.set_exception_handler(None)
    assert seen == ["after"]
    assert child.done()
    assert [type(c["exception"]) for c in reported] == [RuntimeError]
