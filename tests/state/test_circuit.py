"""`Circuit`: closed -> open after consecutive failures -> one probe after the cooldown ->
closed on its success, open again on its failure. Driven by a fake clock."""

from __future__ import annotations

import pytest

from gateway.state.circuit import Circuit, CircuitPolicy, CircuitState

CLOSED, HALF_OPEN, OPEN = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def circuit(clock: Clock, failures: int = 3, cooldown: float = 10.0) -> Circuit:
    return Circuit("up/model", CircuitPolicy(failures, cooldown), clock=clock)


def fail(subject: Circuit, times: int) -> None:
    for _ in range(times):
        assert subject.admit()
        subject.failed()


def test_consecutive_failures_open_it_and_a_success_resets_the_count(clock: Clock) -> None:
    subject = circuit(clock)
    fail(subject, 2)
    assert subject.admit()
    subject.succeeded()
    fail(subject, 2)
    assert subject.state is CLOSED
    fail(subject, 1)
    assert subject.state is OPEN
    assert not subject.admit()
    assert subject.retry_after() == 10.0


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes_it(
    clock: Clock,
) -> None:
    subject = circuit(clock)
    fail(subject, 3)
    clock.now += 9.9
    assert not subject.admit()
    clock.now += 0.1
    assert subject.admit()  # the probe
    assert subject.state is HALF_OPEN
    assert not subject.admit()  # one probe at a time
    subject.succeeded()
    assert subject.state is CLOSED
    assert subject.failures == 0
    assert subject.admit()
    assert subject.admit()


def test_a_failed_probe_opens_it_for_another_cooldown(clock: Clock) -> None:
    subject = circuit(clock)
    fail(subject, 3)
    clock.now += 10
    assert subject.admit()
    subject.failed()
    assert subject.state is OPEN
    assert not subject.admit()
    clock.now += 10
    assert subject.admit()


def test_a_probe_without_a_verdict_lets_the_next_request_probe(clock: Clock) -> None:
    subject = circuit(clock)
    fail(subject, 3)
    clock.now += 10
    assert subject.admit()
    assert not subject.admit()
    subject.released()  # e.g. the probe's client left
    assert subject.state is HALF_OPEN
    assert subject.admit()


def test_zero_failures_never_opens(clock: Clock) -> None:
    subject = circuit(clock, failures=0)
    fail(subject, 1000)
    assert subject.state is CLOSED


def test_every_transition_is_reported(clock: Clock) -> None:
    seen: list[CircuitState] = []
    subject = circuit(clock, failures=1)
    subject.watch(lambda c: seen.append(c.state))
    fail(subject, 1)
    clock.now += 10
    assert subject.admit()
    subject.succeeded()
    assert seen == [OPEN, HALF_OPEN, CLOSED]
