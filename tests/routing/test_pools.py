"""The pools' strategies and the figures they read, without sockets: `ranked` over
`Deployment`s, and `DeploymentBackend` counting calls in flight and timing answers over a
`MemoryStore` backend with a driven clock."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway.routing.pools import ALPHA, Deployment, DeploymentBackend, Pool, ranked
from gateway.state import CircuitOpen, CircuitPolicy, MemoryStore


def deployments(*weights: float) -> list[Deployment]:
    return [Deployment("up", f"d{i}", "m", weight) for i, weight in enumerate(weights)]


def firsts(strategy: str, pool: list[Deployment], draws: int, seed: int = 7) -> Counter[int]:
    rng = random.Random(seed)
    return Counter(ranked(strategy, pool, rng)[0] for _ in range(draws))  # type: ignore[arg-type]


def test_weighted_puts_each_deployment_first_in_proportion_to_its_weight() -> None:
    counts = firsts("weighted", deployments(3, 1, 1), 5000)

    assert counts[0] / 5000 == pytest.approx(0.6, abs=0.03)
    assert counts[1] / 5000 == pytest.approx(0.2, abs=0.03)
    assert counts[2] / 5000 == pytest.approx(0.2, abs=0.03)


def test_every_order_holds_every_deployment_once() -> None:
    pool = deployments(5, 1, 2, 1)
    rng = random.Random(1)
    for strategy in ("weighted", "least_in_flight", "lowest_latency"):
        for _ in range(50):
            assert sorted(ranked(strategy, pool, rng)) == [0, 1, 2, 3]


def test_least_in_flight_puts_the_least_busy_first_whatever_the_weights() -> None:
    pool = deployments(10, 1, 1)
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 3, 1, 2

    counts = firsts("least_in_flight", pool, 200)

    assert counts == {1: 200}
    assert ranked("least_in_flight", pool, random.Random(3)) == [1, 2, 0]


def test_least_in_flight_breaks_ties_by_weight() -> None:
    pool = deployments(3, 1)  # nothing in flight: a tie

    counts = firsts("least_in_flight", pool, 4000)

    assert counts[0] / 4000 == pytest.approx(0.75, abs=0.03)


def test_lowest_latency_tries_the_unmeasured_first_then_the_fastest() -> None:
    pool = deployments(1, 1, 1)
    pool[0].measured(0.5)
    pool[2].measured(0.1)

    assert firsts("lowest_latency", pool, 100) == {1: 100}  # never measured: tried first
    pool[1].measured(0.9)
    assert ranked("lowest_latency", pool, random.Random(0)) == [2, 0, 1]


def test_the_latency_is_a_moving_average_of_the_measures() -> None:
    (deployment,) = deployments(1)
    deployment.measured(1.0)
    deployment.measured(2.0)

    assert deployment.latency == pytest.approx(1.0 + ALPHA * 1.0)


def test_a_pool_orders_its_members_as_its_strategy_ranks_their_deployments() -> None:
    figures = deployments(1, 1)
    figures[0].in_flight = 1
    pool = Pool(["a", "b"], figures, "least_in_flight")

    assert pool.order() == ["b", "a"]
    with pytest.raises(ValueError, match="one Deployment per member"):
        Pool(["a"], figures, "weighted")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_deployment_counts_its_calls_in_flight_until_their_slots_are_given_back() -> None:
    store = MemoryStore(max_streams=10)
    (figures,) = deployments(1)
    backend = DeploymentBackend(
        store.backend("up/m@d0", max_streams=None, circuit=CircuitPolicy()), figures
    )

    first, second = await backend.acquire(), await backend.acquire()
    assert figures.in_flight == 2
    first.release()
    first.release()  # idempotent: counted once
    assert figures.in_flight == 1
    second.release()
    assert figures.in_flight == 0
    assert backend.name == "up/m@d0"


async def test_a_deployment_times_each_call_until_its_answer_once() -> None:
    clock = Clock()
    store = MemoryStore(max_streams=10)
    (figures,) = deployments(1)
    inner = store.backend("up/m@d0", max_streams=None, circuit=CircuitPolicy())
    backend = DeploymentBackend(inner, figures, clock=clock)

    lease = await backend.acquire()
    clock.now += 0.25
    lease.answered()  # a stream's first event
    clock.now += 5.0
    lease.succeeded()  # its end: not a second measure
    lease.release()

    assert figures.latency == pytest.approx(0.25)


async def test_a_deployments_failures_open_its_own_circuit() -> None:
    store = MemoryStore(max_streams=10)
    policy = CircuitPolicy(failures=2, cooldown=60)
    a, b = (
        DeploymentBackend(store.backend(name, max_streams=None, circuit=policy), *deployments(1))
        for name in ("up/m@a", "up/m@b")
    )

    for _ in range(2):
        lease = await a.acquire()
        lease.failed()
        lease.release()

    with pytest.raises(CircuitOpen):
        await a.acquire()
    (await b.acquire()).release()  # the other deployment is untouched
