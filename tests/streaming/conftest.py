"""Shared fixtures of the streaming core's tests.

`manual_clock` replaces the running loop's clock with one the test advances by hand, so that
"this deadline has not fired yet" can be asserted without sleeping or measuring time: the
loop only runs a timer once the manual clock has passed its deadline. Tests that use it must
not `asyncio.sleep()` for a positive delay (that sleep would only end when the clock moves).
"""

from __future__ import annotations

import asyncio

import pytest


class ManualClock:
    """A monotonic clock for the event loop that moves only when `advance()` is called."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def spin(turns: int = 10) -> None:
    """Let the loop run due timers and ready callbacks (and the tasks they wake) a few times."""
    for _ in range(turns):
        await asyncio.sleep(0)


@pytest.fixture
async def manual_clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    loop = asyncio.get_running_loop()
    clock = ManualClock(loop.time())
    monkeypatch.setattr(loop, "time", clock)
    return clock
