"""Every transport test runs on the stdlib's event loop and on uvloop's: the upstream clients are
asyncio protocols, and uvloop's transports and sockets are not the stdlib's classes (its
transport is no `asyncio.Transport` subclass; its socket refuses `shutdown`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
