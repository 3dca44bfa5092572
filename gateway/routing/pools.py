"""Deployment pools: the order in which one request tries a target's deployments.

A target on an upstream with several deployments (`upstreams.<name>.deployments`, or several
keys) is a `Pool` of member targets, one per deployment, each with its own provider (URL, key,
connections) and its own backend (`gateway.state`: circuit and slots). The chain asks
`Pool.order()` once per request and tries the members in that order - the members whose
circuit is open are skipped as any target is - before it moves down the route's chain.

The strategies (`upstreams.<name>.strategy`) each put one figure first and break its ties at
random by weight (a weighted draw without replacement: a deployment of weight 2 comes first
twice as often as one of weight 1 among equals):

- `weighted`: the draw alone - the requests spread in proportion to the weights;
- `least_in_flight`: fewest calls in flight to the deployment in this process first;
- `lowest_latency`: lowest moving average (EWMA, `ALPHA`) of the time from a call's start to
  its answer (a stream's first event, a whole body) first; deployments not yet measured come
  before every measured one, so each is tried once.

Each deployment's figures live in its `Deployment`, fed by `DeploymentBackend`, which wraps
the store's backend of the deployment: every lease it hands out counts a call in flight until
its slot is given back, and times the call until it answered. The figures are this process's
(with several workers or replicas, each judges on its own); the circuit is the store's, shared
through Redis when the store is. `DeploymentObserver` hears of every call (the server's
metrics, labelled by the configured upstream, deployment and model names only).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from gateway.settings.deployments import Strategy
from gateway.state import Backend, CallLease, CircuitState

__all__ = [
    "ALPHA",
    "Deployment",
    "DeploymentBackend",
    "DeploymentObserver",
    "Pool",
    "ranked",
]

#: The weight of the latest measure in the moving average of `lowest_latency`.
ALPHA = 0.3

M = TypeVar("M")


class DeploymentObserver(Protocol):
    """What a pool's deployments report as their calls go (the server's metrics)."""

    def call_started(self, deployment: Deployment) -> None:
        """A call to `deployment` took its slot."""

    def call_ended(self, deployment: Deployment) -> None:
        """A call to `deployment` gave its slot back."""

    def answered(self, deployment: Deployment, seconds: float) -> None:
        """A call to `deployment` answered `seconds` after it started."""

    def verdict(self, deployment: Deployment, outcome: str) -> None:
        """A call's verdict: `succeeded`, `failed` (the deployment's fault) or `abandoned`."""


class Deployment:
    """One deployment as this process sees it: its labels (from the configuration only) and
    the figures the strategies read."""

    __slots__ = ("in_flight", "latency", "model", "name", "observer", "upstream", "weight")

    def __init__(
        self,
        upstream: str,
        name: str,
        model: str,
        weight: float,
        observer: DeploymentObserver | None = None,
    ) -> None:
        self.upstream = upstream
        self.name = name
        self.model = model  # the model sent, as configured (`*`: the client's)
        self.weight = weight
        self.observer = observer
        self.in_flight = 0
        #: Moving average of the seconds from a call's start to its answer; None: not yet.
        self.latency: float | None = None

    def measured(self, seconds: float) -> None:
        """Fold one call's time to its answer into the moving average."""
        latency = self.latency
        self.latency = seconds if latency is None else latency + ALPHA * (seconds - latency)


def ranked(strategy: Strategy, deployments: Sequence[Deployment], rng: random.Random) -> list[int]:
    """The indexes of `deployments` in the order a request tries them under `strategy`."""

    def draw(index: int) -> float:
        # Efraimidis-Spirakis: sorting by u ** (1 / w) draws without replacement by weight.
        return float(rng.random() ** (1.0 / deployments[index].weight))

    ties = {index: draw(index) for index in range(len(deployments))}

    def key(index: int) -> tuple[float, float, float]:
        deployment = deployments[index]
        if strategy == "least_in_flight":
            return (deployment.in_flight, 0.0, -ties[index])
        if strategy == "lowest_latency":
            latency = deployment.latency
            return (0.0 if latency is None else 1.0, latency or 0.0, -ties[index])
        return (0.0, 0.0, -ties[index])

    return sorted(range(len(deployments)), key=key)


class Pool(Generic[M]):
    """A target's deployments (`members`, each with its `Deployment` figures) and the strategy
    that orders them for each request."""

    __slots__ = ("_rng", "deployments", "members", "strategy")

    def __init__(
        self,
        members: Sequence[M],
        deployments: Sequence[Deployment],
        strategy: Strategy,
        rng: random.Random | None = None,
    ) -> None:
        if len(members) != len(deployments) or not members:
            raise ValueError("a pool needs one Deployment per member, and a member")
        self.members = tuple(members)
        self.deployments = tuple(deployments)
        self.strategy: Strategy = strategy
        self._rng = rng or random.Random()

    def order(self) -> list[M]:
        """Every member, in the order this request tries them."""
        members = self.members
        return [members[index] for index in ranked(self.strategy, self.deployments, self._rng)]


class DeploymentBackend:
    """A deployment's backend (the store's: its circuit and slots) that keeps the
    deployment's figures: calls in flight, and their time to an answer."""

    __slots__ = ("_clock", "backend", "deployment")

    def __init__(
        self,
        backend: Backend,
        deployment: Deployment,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.deployment = deployment
        self._clock = clock

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def circuit_state(self) -> CircuitState:
        return self.backend.circuit_state

    async def acquire(self, *, last_resort: bool = False) -> CallLease:
        lease = await self.backend.acquire(last_resort=last_resort)
        return _CountedCall(lease, self.deployment, self._clock)


class _CountedCall:
    """A `CallLease` of a deployment: in flight until released, timed until it answered."""

    __slots__ = ("_clock", "_deployment", "_held", "_lease", "_started")

    def __init__(
        self, lease: CallLease, deployment: Deployment, clock: Callable[[], float]
    ) -> None:
        self._lease = lease
        self._deployment = deployment
        self._clock = clock
        self._started: float | None = clock()  # None once the answer was timed
        self._held = True
        deployment.in_flight += 1
        if deployment.observer is not None:
            deployment.observer.call_started(deployment)

    def release(self) -> None:
        self._lease.release()
        if self._held:
            self._held = False
            deployment = self._deployment
            deployment.in_flight -= 1
            if deployment.observer is not None:
                deployment.observer.call_ended(deployment)

    def answered(self) -> None:
        self._lease.answered()
        self._timed()

    def succeeded(self) -> None:
        self._lease.succeeded()
        self._timed()
        self._verdict("succeeded")

    def failed(self) -> None:
        self._lease.failed()
        self._verdict("failed")

    def abandoned(self) -> None:
        self._lease.abandoned()
        self._verdict("abandoned")

    def _timed(self) -> None:
        started, self._started = self._started, None
        if started is None:
            return
        seconds = self._clock() - started
        deployment = self._deployment
        deployment.measured(seconds)
        if deployment.observer is not None:
            deployment.observer.answered(deployment, seconds)

    def _verdict(self, outcome: str) -> None:
        if self._deployment.observer is not None:
            self._deployment.observer.verdict(self._deployment, outcome)
