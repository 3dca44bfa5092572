"""`RetryPolicy.delay`: the upstream's hint as given (up to the cap), else full-jitter backoff."""

from __future__ import annotations

import random

import pytest

from gateway.errors import (
    ConnectFailed,
    UpstreamRateLimited,
    UpstreamServerError,
)
from gateway.routing.backoff import RetryPolicy, retry_hint


def with_delay(error: UpstreamServerError | UpstreamRateLimited, seconds: float):
    error.retry_delay = seconds
    return error


def test_a_hint_is_waited_for_as_given() -> None:
    policy = RetryPolicy(retry_after_max=20)
    rng = random.Random(1)
    assert policy.delay(with_delay(UpstreamServerError(), 0.25), 1, rng) == 0.25
    assert policy.delay(with_delay(UpstreamRateLimited(), 20.0), 2, rng) == 20.0


def test_a_hint_longer_than_the_cap_is_not_waited_for() -> None:
    policy = RetryPolicy(retry_after_max=5)
    assert policy.delay(with_delay(UpstreamRateLimited(), 5.5), 1, random.Random(1)) is None


def test_a_retry_after_header_text_counts_as_a_hint_when_no_delay_was_read() -> None:
    # A provider that raised with only the header's text (the mock does).
    assert retry_hint(UpstreamRateLimited(retry_after="5")) == 5.0
    assert retry_hint(UpstreamRateLimited(retry_after="Wed, 21 Oct 2015 07:28:00 GMT")) is None
    assert retry_hint(ConnectFailed()) is None


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 5, 6, 7])
def test_backoff_is_full_jitter_below_an_exponential_bound(retry: int) -> None:
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=8.0)
    bound = min(8.0, 0.5 * 2 ** (retry - 1))
    rng = random.Random(retry)
    delays = [policy.delay(ConnectFailed(), retry, rng) for _ in range(2000)]
    assert all(d is not None and 0 <= d <= bound for d in delays)
    spread = [d for d in delays if d is not None]
    # Spread over the whole interval, not bunched at the bound (that would be no jitter).
    assert min(spread) < bound * 0.05
    assert max(spread) > bound * 0.95
    assert 0.4 * bound < sum(spread) / len(spread) < 0.6 * bound


def test_policy_values_are_checked() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff_initial=0)
