"""`Capacity` on its own, with a clock the test moves: the token bucket's refill, what a
refusal takes (nothing), and leases given back once only."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayOverloaded, KeyConcurrencyLimited, KeyRateLimited
from gateway.state.capacity import Capacity
from gateway.state.store import KeyLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_burst_its_minute_then_goes_at_the_steady_rate() -> None:
    clock = Clock()
    capacity = Capacity(100, clock=clock)
    key = KeyLimits("c", requests_per_minute=6)  # one every 10 s

    leases = [capacity.admit(key) for _ in range(6)]
    with pytest.raises(KeyRateLimited) as refused:
        capacity.admit(key)
    clock.now += 9.0
    with pytest.raises(KeyRateLimited) as again:
        capacity.admit(key)
    clock.now += 1.0
    leases.append(capacity.admit(key))

    assert refused.value.retry_after == "10"
    assert again.value.retry_after == "1"
    assert capacity.in_flight == 7


def test_the_bucket_refills_to_its_size_and_no_further() -> None:
    clock = Clock()
    capacity = Capacity(100, clock=clock)
    key = KeyLimits("c", requests_per_minute=2)
    clock.now += 3600

    for _ in range(2):
        capacity.admit(key).release()
    with pytest.raises(KeyRateLimited):
        capacity.admit(key)


def test_a_refused_request_takes_no_token_and_no_slot() -> None:
    clock = Clock()
    capacity = Capacity(1, clock=clock)
    key = KeyLimits("c", max_streams=5, requests_per_minute=2)
    held = capacity.admit(key)

    for _ in range(5):
        with pytest.raises(GatewayOverloaded):
            capacity.admit(key)  # refused overall: its token is not spent
    held.release()

    capacity.admit(key)  # the second token is still there
    assert capacity.in_flight == 1
    assert capacity.in_flight_for(key) == 1


def test_key_concurrency_is_per_key_and_released_once() -> None:
    capacity = Capacity(10)
    one, two = KeyLimits("one", max_streams=1), KeyLimits("two", max_streams=1)
    lease = capacity.admit(one)

    with pytest.raises(KeyConcurrencyLimited) as refused:
        capacity.admit(one)
    capacity.admit(two)
    lease.release()
    lease.release()  # idempotent: the slot is not given back twice

    assert refused.value.retry_after == "1"
    assert capacity.in_flight_for(one) == 0
    assert capacity.in_flight == 1
    capacity.admit(one)
    with pytest.raises(KeyConcurrencyLimited):
        capacity.admit(one)


def test_without_a_key_only_the_global_limit_applies() -> None:
    capacity = Capacity(2)
    leases = [capacity.admit(None), capacity.admit(KeyLimits("unlimited"))]

    with pytest.raises(GatewayOverloaded) as refused:
        capacity.admit(None)

    assert refused.value.http_status == 503
    assert refused.value.retry_after == "1"
    for lease in leases:
        lease.release()
    assert capacity.in_flight == 0
