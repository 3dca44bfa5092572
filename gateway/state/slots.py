"""`Slots`: how many requests a backend may have in flight at once, in this process.

A target with `max_streams` set holds one slot per request it serves, from the attempt that
opens the call until the response is over (a stream's last byte, a body read to its end).
`acquire()` never waits: a full target is skipped, and the chain tries the next one - a
queue in front of a busy upstream would only move the wait where no deadline names it.
"""

from __future__ import annotations

__all__ = ["Slots"]


class Slots:
    """A non-blocking counter of requests in flight; `limit` None means unlimited."""

    __slots__ = ("_in_use", "limit")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self) -> bool:
        """Take a slot if one is free; False (and nothing taken) when the target is full."""
        if self.limit is not None and self._in_use >= self.limit:
            return False
        self._in_use += 1
        return True

    def release(self) -> None:
        """Give back a slot taken by `acquire()`."""
        if self._in_use <= 0:
            raise RuntimeError("Slots.release() without a matching acquire()")
        self._in_use -= 1
