"""Fixtures for the fake upstream's self-tests only (the suite-wide fixture lives elsewhere)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.fake_upstream import FakeUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as up:
        yield up


@pytest.fixture
async def session(upstream: FakeUpstream) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client; it depends on `upstream` so that it is closed first."""
    async with aiohttp.ClientSession() as client:
        yield client
