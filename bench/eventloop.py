"""The bench's event loop: uvloop when it is installed (and wanted), else the stdlib's.

The harness (upstream and load generator) must cost less than the proxies it measures, so it
runs on uvloop when it can; `pip install uvloop` (bench/README.md). The gateway picks its own loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """Run `main` to completion on a new loop: uvloop if wanted and installed."""
    if use_uvloop and uvloop_available():
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
