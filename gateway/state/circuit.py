"""`Circuit`: one backend's health as this process has seen it - the memory store's breaker.

    CLOSED --(`failures` consecutive failures)--> OPEN --(`cooldown` passed; one call)--> HALF_OPEN
    HALF_OPEN --(the probe succeeds)--> CLOSED        HALF_OPEN --(the probe fails)--> OPEN

- CLOSED: every request may call the target; each failure that is the target's fault
  (`gateway.routing.policy.hurts_target`) counts - before the first byte or after it (a cut
  stream) - and an answer that ends well resets the count.
- OPEN: requests skip the target at once (the chain goes to its next target) until the
  cooldown has passed since it opened.
- HALF_OPEN: exactly one request is let through as the probe; the others still skip the
  target. Its answer (a stream's first event) closes the circuit, its failure opens it for
  another cooldown. A probe
  that ends with no verdict (the client left, the request's own deadline or fault) lets the
  next request probe instead.

A success reported by a call that was let through before the circuit opened closes it too:
the target answered. The state lives in this process only (see the README on several
replicas; a shared store keeps it elsewhere, `gateway.state.store`); time is the monotonic
clock given (`time.monotonic` by default), so a test can drive it. `on_change` hears of every
transition (metrics, logs).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Circuit", "CircuitPolicy", "CircuitState"]


class CircuitState(enum.IntEnum):
    """A circuit's state; the value is what the `gateway_circuit_state` gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    failures: int = 5  # consecutive failures that open the circuit; 0: never opens
    cooldown: float = 10.0  # seconds open before one probe call is let through

    def __post_init__(self) -> None:
        if self.failures < 0 or self.cooldown <= 0:
            raise ValueError("failures must be >= 0 and cooldown > 0")


class Circuit:
    """The breaker of one target (shared by every route that names the same backend)."""

    __slots__ = (
        "_clock",
        "_failures",
        "_on_change",
        "_opened_at",
        "_policy",
        "_probing",
        "_state",
        "name",
    )

    def __init__(
        self,
        name: str,
        policy: CircuitPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[Circuit], None] | None = None,
    ) -> None:
        self.name = name  # the target's `upstream/model`: a closed set, safe as a label
        self._policy = policy
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted since the last success."""
        return self._failures

    def watch(self, on_change: Callable[[Circuit], None]) -> None:
        """Report every later transition to `on_change` (replaces the previous watcher)."""
        self._on_change = on_change

    def admit(self) -> bool:
        """May a call go to the target now? Every admitted call is later reported exactly once:
        `succeeded()`, `failed()` or `released()`."""
        if self._state is CircuitState.CLOSED:
            return True
        if self._probing:
            return False
        if self._state is CircuitState.OPEN:
            if self._clock() < self._opened_at + self._policy.cooldown:
                return False
            self._move(CircuitState.HALF_OPEN)
        self._probing = True
        return True

    def retry_after(self) -> float:
        """Seconds until a probe may be let through (0 unless open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._policy.cooldown - self._clock())

    def answered(self) -> None:
        """A call's answer began (a stream's first event): a probe's answer closes the circuit;
        the count of failures waits for how the answer ends (`succeeded()` or `failed()`)."""
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            self._move(CircuitState.CLOSED)

    def succeeded(self) -> None:
        """A call's answer ended well."""
        self._failures = 0
        self._probing = False
        if self._state is not CircuitState.CLOSED:
            self._move(CircuitState.CLOSED)

    def failed(self) -> None:
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False
            self._open()
        elif self._state is CircuitState.CLOSED and 0 < self._policy.failures <= self._failures:
            self._open()

    def released(self) -> None:
        """An admitted call ended without saying anything about the target."""
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(CircuitState.OPEN)

    def _move(self, state: CircuitState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(self)
