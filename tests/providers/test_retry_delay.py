"""`GatewayError.retry_delay`: the wait an upstream's error answer asked for, in seconds, as
precise as it said it (`retry-after-ms` first, then `Retry-After` in seconds or as a date).

This is what the retry policy waits; what a client is passed on is `retry_after`, the header's
text (`tests/providers/test_http_errors.py`).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator

import pytest

from gateway.errors import UpstreamRetryableStatus, UpstreamServerError
from gateway.providers import Provider
from tests.providers.test_http_errors import error_of, openai_provider
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import FakeUpstream


@pytest.fixture
async def provider(upstream: FakeUpstream) -> AsyncIterator[Provider]:
    subject = openai_provider(upstream)
    await subject.start()
    yield subject
    await subject.aclose()


@pytest.mark.parametrize(
    ("code", "headers", "expected"),
    [
        pytest.param(429, {"retry-after-ms": "250"}, 0.25, id="ms"),
        pytest.param(429, {"retry-after-ms": "250", "Retry-After": "1"}, 0.25, id="ms-is-precise"),
        pytest.param(429, {"Retry-After": "3"}, 3.0, id="seconds"),
        pytest.param(503, {"Retry-After": "2"}, 2.0, id="503-too"),
        pytest.param(529, {"retry-after-ms": "1500"}, 1.5, id="529-too"),
        pytest.param(429, {"retry-after-ms": "-5", "Retry-After": "4"}, 4.0, id="bad-ms-then-s"),
        pytest.param(429, {"Retry-After": "soon"}, None, id="garbage"),
        pytest.param(500, {}, None, id="absent"),
    ],
)
async def test_the_upstreams_hint_is_read_in_seconds(
    upstream: FakeUpstream,
    provider: Provider,
    code: int,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    upstream.script("m", fake.status(code, headers=headers))
    error = await error_of(provider, "m")
    assert error.retry_delay == expected


async def test_a_retry_after_date_is_the_time_until_it(
    upstream: FakeUpstream, provider: Provider
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    upstream.script("m", fake.status(503, headers={"Retry-After": when}))
    error = await error_of(provider, "m")
    assert isinstance(error, UpstreamServerError)
    assert error.retry_delay is not None
    assert 28 <= error.retry_delay <= 30


@pytest.mark.parametrize("code", [408, 409])
async def test_408_and_409_are_retryable(
    upstream: FakeUpstream, provider: Provider, code: int
) -> None:
    upstream.script("m", fake.status(code))
    error = await error_of(provider, "m")
    assert isinstance(error, UpstreamRetryableStatus)
    assert error.retryable
    assert error.http_status == 502
