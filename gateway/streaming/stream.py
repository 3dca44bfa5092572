"""`ContextAwareStream`: an upstream stream bound to a `Context` and to per-phase deadlines.

The Go seed's `StreamFromContext` checked the context only before each blocking read, so a
stalled upstream held a cancelled request forever. Here the wait itself is interrupted: each
`__anext__` runs inside the stream's own phase context (a child of the caller's), which cancels
the waiting task the moment the caller's context ends, the first-byte deadline passes (before the
first item) or the idle gap runs out (between items). The stream then closes its base and raises
the cause, a `GatewayError`; `get_stream_error()` reports it categorised.

Invariants:
- after the stream raised or was `aclose()`d, its base iterator has been closed (`aclose()`),
  and it yields nothing more;
- `aclose()` is idempotent and safe from `finally` blocks;
- a foreign exception from the base is translated once (`as_gateway_error`) and chained;
- a `CancelledError` that this stream did not cause (the task cancelled by its owner) is
  re-raised as is, after closing the base.
- the idle clock runs only while a read waits on the base: it starts when the caller asks for
  the next item and stops when the item is handed out, so a caller slow to take the items (a
  relay blocked on a client that reads slowly) is never taken for a silent upstream. Each
  start and stop costs one clock read: the phase timer is re-armed lazily, only when it fires
  early.
- the first-token limit runs from the request sent until the caller says the answer's content
  began (`content_arrived()`, for a stream opened with `marks_content`), or, for any other
  stream, until its first item (it is then a first-byte limit). It lives on a context of its
  own between the caller's and the phase's, made only when the limit is set: one timer for the
  stream's opening, never a timer or a scope per read, so an unset limit costs nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from gateway.errors import (
    Canceled,
    FirstByteTimeout,
    FirstTokenTimeout,
    GatewayError,
    IdleTimeout,
)
from gateway.streaming.context import Context, DeadlineError
from gateway.streaming.stream_error import StreamError, as_gateway_error, make_stream_error
from gateway.streaming.timeouts import Timeouts

__all__ = ["ContextAwareStream", "stream_from_context"]

T = TypeVar("T")

#: Seconds: the idle deadline while the caller holds an item, out of reach (a finite time, so
#: that any event loop can arm a timer for it). Moving a deadline later costs no timer
#: operation; the next read brings it back to `idle` seconds ahead.
_HELD = 86400.0 * 365


class ContextAwareStream(Generic[T]):
    """Async-iterates `base` under `ctx` and the first-byte / first-token / idle limits of
    `timeouts`."""

    __slots__ = (
        "_base",
        "_closed",
        "_error",
        "_first_byte",
        "_first_byte_error",
        "_first_token",
        "_idle",
        "_idle_error",
        "_items",
        "_loop",
        "_phase",
        "_reading",
        "_token",
    )

    def __init__(
        self,
        ctx: Context,
        base: AsyncIterator[T],
        timeouts: Timeouts,
        *,
        connecting: bool = False,
        marks_content: bool = False,
    ) -> None:
        """`connecting=True`: the base still has to connect and send its request, so the
        first-byte and first-token limits start `timeouts.connect` later, or when
        `restart_first_byte_clock()` reports the request sent - whichever comes first.

        `marks_content=True`: the caller tells when the first item that carries answer
        content arrived (`content_arrived()`); until then the first-token limit runs. Without
        it, the first item is the content, and the first-token limit bounds it as the
        first-byte limit does (the earlier of the two fires)."""
        self._loop = asyncio.get_running_loop()
        self._base = base
        first_byte, first_token = timeouts.first_byte, timeouts.first_token
        self._first_byte_error: DeadlineError = functools.partial(
            FirstByteTimeout, limit=first_byte
        )
        self._token: Context | None = None
        if first_token is None:
            self._phase = ctx.child()
        elif marks_content:
            self._token = ctx.child(
                deadline_error=functools.partial(FirstTokenTimeout, limit=first_token)
            )
            self._phase = self._token.child()
        else:
            self._phase = ctx.child()
            if first_byte is None or first_token < first_byte:
                first_byte = first_token
                self._first_byte_error = functools.partial(FirstTokenTimeout, limit=first_token)
            first_token = None
        self._first_byte = first_byte
        self._first_token = first_token  # None once met (or when the phase context has it)
        self._idle = timeouts.idle
        self._idle_error: DeadlineError = functools.partial(IdleTimeout, limit=timeouts.idle)
        self._error: GatewayError | None = None
        self._closed = False
        self._items = 0
        self._reading = False  # a task is inside `__anext__`, awaiting the base
        self._arm_first_byte((timeouts.connect or 0.0) if connecting else 0.0)

    @property
    def items(self) -> int:
        """How many items the stream has yielded so far."""
        return self._items

    def restart_first_byte_clock(self) -> None:
        """Start the first-byte (and first-token) limit now (call it when the upstream request
        has been sent)."""
        self._arm_first_byte(0.0)

    def content_arrived(self) -> None:
        """The answer's content began (with the item just yielded): the first-token limit is
        met. For a stream opened with `marks_content`; idempotent, and free when no
        first-token limit is set."""
        if self._first_token is not None:
            self._first_token = None
            assert self._token is not None  # made with the limit
            self._token.reschedule(None)

    def _arm_first_byte(self, grace: float) -> None:
        start = self._loop.time() + grace
        if self._items == 0 and self._first_byte is not None:
            self._phase.reschedule(start + self._first_byte, self._first_byte_error)
        if self._first_token is not None:
            assert self._token is not None  # made with the limit
            self._token.reschedule(start + self._first_token)

    def __aiter__(self) -> ContextAwareStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        phase = self._phase
        if self._items and self._idle is not None:
            phase.reschedule(self._loop.time() + self._idle)
        self._reading = True
        try:
            with phase.scope():
                item = await self._base.__anext__()
        except StopAsyncIteration:
            self._reading = False
            await self.aclose()
            raise
        except (asyncio.CancelledError, GeneratorExit):
            self._reading = False
            await self.aclose()
            raise
        except Exception as exc:
            self._reading = False
            cause = phase.cause
            error = cause or as_gateway_error(exc)
            await self._fail(error)
            if error is exc:
                raise
            if error is cause:
                # The context's cause is shared by every scope and child that raises it: chain
                # nothing onto it (what the interruption provoked in the base is noise).
                raise error from None
            raise error from exc
        self._reading = False
        self._items += 1
        if self._idle is not None:
            phase.reschedule(self._loop.time() + _HELD, self._idle_error)
        elif self._items == 1:
            phase.reschedule(None)  # the first-byte limit is met; no idle limit follows it
        return item

    async def _fail(self, error: GatewayError) -> None:
        if self._error is None:
            self._error = error
        await self.aclose()

    async def aclose(self) -> None:
        """Close the base stream and release the phase timer; idempotent.

        From another task while a read is blocked, it interrupts that read instead (the
        reader gets `Canceled` and closes the base itself: an async generator cannot be
        closed while it runs).
        """
        if self._reading:
            self._phase.cancel(Canceled("the stream was closed while a read was waiting"))
            return
        if self._closed:
            return
        self._closed = True
        self._phase.close()
        if self._token is not None:
            self._token.close()
        aclose = getattr(self._base, "aclose", None)
        if aclose is not None:
            await aclose()

    def get_stream_error(self) -> StreamError | None:
        """The categorised error that ended the stream, or that its context ended with."""
        error = self._error or self._phase.cause
        return None if error is None else make_stream_error(error)


def stream_from_context(
    ctx: Context, base: AsyncIterator[T], timeouts: Timeouts | None = None
) -> ContextAwareStream[T]:
    """Wrap `base` so that `ctx` and the phase limits of `timeouts` interrupt its reads."""
    return ContextAwareStream(ctx, base, timeouts or Timeouts())
