"""`Context`: Go's `context.Context` for asyncio, with a typed cause.

A context is done once, for one reason: its owner called `cancel(cause)`, its deadline passed
(the cause is then an instance of its `deadline_error`, a `GatewayTimeout` subclass naming the
limit), or its parent became done (the parent's cause propagates to every child). The first
cause wins; later cancels are no-ops.

Unlike Go, where code polls `ctx.Err()` between operations, a context here *interrupts* the
task that waits on it: `with ctx.scope(): await something()` cancels the task the moment the
context is done and turns the `CancelledError` into the context's cause when it leaves the
scope. Foreign cancellations (a task cancelled by someone else) pass through untouched.

Invariants:
- a context holds at most one timer, armed only while it has a deadline and is not done;
- a child is unlinked from its parent when it is done or `close()`d, so a long-lived parent does
  not accumulate dead children;
- deadlines and timers use the running loop's monotonic clock (`loop.time()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Self

from gateway.errors import DeadlineExceeded, GatewayError, GatewayTimeout

__all__ = ["CancelScope", "Context", "DeadlineError"]

DoneCallback = Callable[["Context"], None]
#: Builds the cause of a deadline's expiry: a `GatewayTimeout` class, or a partial that also
#: records the limit, e.g. `functools.partial(IdleTimeout, limit=120.0)`.
DeadlineError = Callable[[], GatewayTimeout]
#: The children of a context that has none: shared, so that a leaf context (most are) holds
#: no set of its own.
_NO_CHILDREN: frozenset[Context] = frozenset()


class Context:
    """A cancellation and deadline scope that can be shared by several tasks."""

    __slots__ = (
        "_callbacks",
        "_cause",
        "_children",
        "_deadline",
        "_deadline_error",
        "_loop",
        "_parent",
        "_timer",
    )

    def __init__(
        self,
        *,
        deadline: float | None = None,
        deadline_error: DeadlineError = DeadlineExceeded,
        parent: Context | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._cause: GatewayError | None = None
        self._children: set[Context] | frozenset[Context] = _NO_CHILDREN
        self._callbacks: list[DoneCallback] = []
        self._parent = parent
        self._deadline: float | None = None
        self._deadline_error = deadline_error
        self._timer: asyncio.TimerHandle | None = None
        if parent is not None:
            if parent._cause is not None:
                self._cause = parent._cause
                return
            parent._adopt(self)
        if deadline is not None:
            self.reschedule(deadline, deadline_error)

    @classmethod
    def with_timeout(
        cls, timeout: float | None, deadline_error: DeadlineError = DeadlineExceeded
    ) -> Context:
        """A root context that expires `timeout` seconds from now (never, if None)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        return cls(deadline=deadline, deadline_error=deadline_error)

    def child(
        self,
        timeout: float | None = None,
        *,
        deadline_error: DeadlineError | None = None,
    ) -> Context:
        """A context that ends when this one does, or earlier at its own deadline.

        The earlier deadline wins: a child's timeout beyond the parent's deadline is harmless,
        the parent's expiry reaches the child with the parent's cause.
        """
        deadline = None if timeout is None else self._loop.time() + timeout
        return Context(
            deadline=deadline,
            deadline_error=deadline_error or self._deadline_error,
            parent=self,
        )

    # --- state ---------------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """The effective deadline on the loop clock: the earliest of this context's ancestry."""
        deadline = self._deadline
        parent = self._parent
        while parent is not None:
            if parent._deadline is not None and (deadline is None or parent._deadline < deadline):
                deadline = parent._deadline
            parent = parent._parent
        return deadline

    def remaining(self) -> float | None:
        """Seconds until the effective deadline (never negative), None if there is none."""
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - self._loop.time())

    def done(self) -> bool:
        return self._cause is not None

    @property
    def cause(self) -> GatewayError | None:
        """Why the context is done, or None while it is live."""
        return self._cause

    # --- transitions ---------------------------------------------------------------------------

    def cancel(self, cause: GatewayError) -> bool:
        """End the context with `cause`; returns False if it had already ended."""
        if self._cause is not None:
            return False
        self._cause = cause
        self._cancel_timer()
        if self._parent is not None:
            self._parent._disown(self)
            self._parent = None
        children, self._children = self._children, _NO_CHILDREN
        for child in children:
            child._parent = None
            child.cancel(cause)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            # One failing callback must not keep the others (or the canceller) from running:
            # report it the way asyncio reports a failing loop callback.
            try:
                callback(self)
            except Exception as exc:
                self._loop.call_exception_handler(
                    {"message": "Context done callback failed", "exception": exc, "context": self}
                )
        return True

    def reschedule(self, deadline: float | None, error: DeadlineError | None = None) -> None:
        """Move this context's own deadline (and the error its expiry raises).

        Meant for phase contexts owned by one component (first byte, then idle gaps); a
        context shared with others should be given a child instead. The timer is re-armed
        lazily: moving a deadline later costs no timer operation.
        """
        if self._cause is not None:
            return
        if error is not None:
            self._deadline_error = error
        self._deadline = deadline
        if deadline is None:
            self._cancel_timer()
        elif self._timer is None or self._timer.when() > deadline:
            self._cancel_timer()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def close(self) -> None:
        """Release the context's timer and its link to the parent without ending it.

        Go's `defer cancel()`: call it when the work the context guarded is over. A closed
        context no longer ends by itself (no deadline, no parent), so nothing should still be
        waiting on it; its done callbacks are dropped.
        """
        self._cancel_timer()
        if self._parent is not None:
            self._parent._disown(self)
            self._parent = None
        self._callbacks.clear()

    def add_done_callback(self, callback: DoneCallback) -> None:
        """Call `callback(self)` once when the context ends (at once if it has ended)."""
        if self._cause is not None:
            callback(self)
        else:
            self._callbacks.append(callback)

    def remove_done_callback(self, callback: DoneCallback) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    async def wait(self) -> GatewayError:
        """Wait until the context ends; returns its cause."""
        if self._cause is None:
            future: asyncio.Future[None] = self._loop.create_future()

            def wake(_: Context) -> None:
                if not future.done():
                    future.set_result(None)

            self.add_done_callback(wake)
            try:
                await future
            finally:
                self.remove_done_callback(wake)
        assert self._cause is not None
        return self._cause

    def scope(self) -> CancelScope:
        """`with ctx.scope(): ...` interrupts the current task when the context ends."""
        return CancelScope(self)

    # --- internals -----------------------------------------------------------------------------

    def _adopt(self, child: Context) -> None:
        if isinstance(self._children, set):
            self._children.add(child)
        else:
            self._children = {child}

    def _disown(self, child: Context) -> None:
        if isinstance(self._children, set):
            self._children.discard(child)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._cause is not None:
            return
        now = self._loop.time()
        if now < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self.cancel(self._deadline_error())

    def __repr__(self) -> str:
        state = f"done cause={self._cause!r}" if self._cause else f"deadline={self.deadline}"
        return f"<Context {state}>"


class CancelScope:
    """Interrupts the entering task when its context ends; re-raises the context's cause.

    A synchronous context manager on purpose: entering and leaving costs two attribute writes
    and a callback registration, cheap enough to wrap every read of a stream. Only the
    cancellation this scope requested is converted; any other `CancelledError` propagates.
    """

    __slots__ = ("_cancelling", "_ctx", "_task")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._task: asyncio.Task[object] | None = None
        self._cancelling = False

    def __enter__(self) -> Self:
        cause = self._ctx.cause
        if cause is not None:
            raise cause
        # The context's loop is the running one: naming it spares `current_task` looking it up
        # (on 3.11 a Python function, and this runs once per read of a stream).
        task = asyncio.current_task(self._ctx._loop)
        if task is None:
            raise RuntimeError("Context.scope() must be entered inside a task")
        self._task = task
        self._ctx.add_done_callback(self._interrupt)
        return self

    def _interrupt(self, ctx: Context) -> None:
        task = self._task
        if task is None or self._cancelling:
            return
        if asyncio.current_task(ctx._loop) is not task:
            self._cancelling = True
            task.cancel()
            return
        # The task ended its own context, so it is running: a cancel() now would only be
        # delivered at its next suspension, perhaps after it left this scope, where nobody
        # uncancels it (and on 3.11 `uncancel()` does not withdraw a pending cancel). Ask from
        # the loop instead, if the task is still inside the scope by then.
        ctx._loop.call_soon(self._interrupt_later, task)

    def _interrupt_later(self, task: object) -> None:
        current = self._task
        if current is not None and current is task and not self._cancelling:
            self._cancelling = True
            current.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        self._ctx.remove_done_callback(self._interrupt)
        if not self._cancelling or task is None:
            return
        self._cancelling = False
        if task.uncancel() == 0 and isinstance(exc, asyncio.CancelledError):
            cause = self._ctx.cause
            assert cause is not None
            raise cause from None
