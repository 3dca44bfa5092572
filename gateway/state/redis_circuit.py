"""`RedisBackend`: one backend of a `RedisStore` - its circuit shared by every replica, its
slots this process's own.

The circuit (state, consecutive failures, opened-at; the memory `Circuit`'s machine, see
`gateway.state.circuit`) lives in a Redis hash, so one replica's open circuit is every
replica's. Each replica keeps a snapshot of it:

- `acquire()` reads the shared circuit when its snapshot is older than `cache_ttl` (0.2 s by
  default: Redis stays off the path of most requests; another replica's transition is seen at
  most that late). A closed circuit admits; an open one refuses until its cooldown has passed;
  then a `CLAIM` script lets one call through as the probe: the probe token is a key set with
  `NX` and an expiry (`probe_ttl`), so exactly one replica probes, and a probe whose replica
  died frees the circuit for another when it expires.
- a verdict (`CallLease.succeeded/failed/answered/abandoned`) never waits: it moves the snapshot
  at once (the next call of this process sees it) and is sent in the background as a `VERDICT`
  script, whose answer - the shared state, other replicas' failures counted - replaces the
  snapshot unless a later verdict is on its way.

The watcher hears every transition this process sees (its own and those read from Redis).
When Redis is unavailable the snapshot serves as it is, and an open circuit whose cooldown
passed is probed by this process alone (as the memory store does), so a target is never
skipped for good; each such decision is reported as a fallback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from gateway.errors import GatewayOverloaded
from gateway.state.circuit import CircuitPolicy, CircuitState
from gateway.state.redis_link import RedisLink, RedisUnavailable
from gateway.state.redis_scripts import CLAIM, VERDICT
from gateway.state.slots import Slots
from gateway.state.store import CallLease, CircuitChange, CircuitOpen

__all__ = ["CACHE_TTL", "RedisBackend"]

#: Seconds a replica trusts its snapshot of a shared circuit.
CACHE_TTL = 0.2
_ADMITTED, _PROBE, _REFUSED = 0, 1, 2


class RedisBackend:
    """A backend whose circuit is shared through Redis (see the module)."""

    def __init__(
        self,
        name: str,
        slots: Slots,
        policy: CircuitPolicy,
        *,
        link: RedisLink,
        prefix: str,
        replica: str,
        clock: Callable[[], float],
        on_change: Callable[[CircuitChange], None],
        cache_ttl: float = CACHE_TTL,
    ) -> None:
        self._name = name
        self.slots = slots
        self._policy = policy
        self._link = link
        self._keys = (f"{prefix}circuit:{name}", f"{prefix}circuit:{name}:probe")
        self._replica = replica
        self._clock = clock
        self._on_change = on_change
        self._cache_ttl = cache_ttl
        self._probe_ms = int(max(policy.cooldown, 30.0) * 1000)
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._read_at = -cache_ttl  # monotonic: when the snapshot was last read from Redis
        self._verdicts = 0  # verdicts sent: an answer older than the latest is not applied
        self._probing_locally = False  # the probe of a circuit decided without Redis

    @property
    def name(self) -> str:
        return self._name

    @property
    def circuit_state(self) -> CircuitState:
        return self._state

    async def acquire(self, *, last_resort: bool = False) -> CallLease:
        probe = False
        admitted = await self._admit()
        if admitted == _PROBE:
            probe = True
        elif admitted == _REFUSED and not last_resort:
            raise CircuitOpen(self._name, self._retry_after())
        if not self.slots.acquire():
            if probe:
                self.verdict("abandoned", probe=True)
            raise GatewayOverloaded(f"{self._name} is at its limit of concurrent requests")
        return _Call(self, probe)

    def verdict(self, verdict: str, *, probe: bool) -> None:
        """Move the snapshot by `verdict` now, and send it to Redis."""
        self._apply_locally(verdict, probe)
        self._verdicts += 1
        sent = self._verdicts
        keys, now, limit = self._keys, self._clock(), self._policy.failures
        self._link.send(
            "circuit_verdict",
            2,
            *keys,
            verdict,
            now,
            limit,
            int(probe),
            self._replica,
            script=VERDICT,
            on_result=lambda answer: self._heard(answer, sent),
        )

    async def _admit(self) -> int:
        if time.monotonic() - self._read_at >= self._cache_ttl and not self._link.down:
            sent = self._verdicts
            try:
                self._heard(await self._read(), sent)
            except RedisUnavailable:
                self._link.observer.fallback("circuit_read")
        state = self._state
        if state is CircuitState.CLOSED:
            return _ADMITTED
        if state is CircuitState.OPEN and self._clock() < self._opened_at + self._policy.cooldown:
            return _REFUSED
        return await self._claim()

    async def _read(self) -> Any:
        answer = await self._link.call("circuit_read", "HMGET", self._keys[0], "s", "f", "o")
        defaults = (0, 0, b"0")  # a circuit never written is closed
        return [
            default if value is None else value
            for value, default in zip(answer, defaults, strict=True)
        ]

    async def _claim(self) -> int:
        sent = self._verdicts
        try:
            answer = await self._link.call(
                "circuit_claim",
                2,
                *self._keys,
                self._clock(),
                self._policy.cooldown,
                self._probe_ms,
                self._replica,
                script=CLAIM,
            )
        except RedisUnavailable:
            self._link.observer.fallback("circuit_claim")
            if self._probing_locally:
                return _REFUSED
            self._probing_locally = True
            self._move(CircuitState.HALF_OPEN)
            return _PROBE
        self._heard(answer[1:], sent)
        return int(answer[0])

    def _heard(self, answer: Any, sent: int) -> None:
        """The shared circuit as Redis answered, unless a verdict sent since will change it."""
        if sent != self._verdicts:
            return
        self._read_at = time.monotonic()
        self._failures = int(answer[1])
        self._opened_at = float(answer[2])
        self._move(CircuitState(int(answer[0])))

    def _apply_locally(self, verdict: str, probe: bool) -> None:
        """The memory circuit's transition for `verdict` (the `VERDICT` script's, too)."""
        state = self._state
        if verdict in ("answered", "succeeded") or (verdict == "abandoned" and probe):
            self._probing_locally = False
        if verdict == "answered":
            if state is CircuitState.HALF_OPEN:
                self._move(CircuitState.CLOSED)
        elif verdict == "succeeded":
            self._failures = 0
            self._move(CircuitState.CLOSED)
        elif verdict == "failed":
            self._failures += 1
            limit = self._policy.failures
            opens = state is CircuitState.CLOSED and 0 < limit <= self._failures
            if state is CircuitState.HALF_OPEN or opens:
                self._probing_locally = False
                self._opened_at = self._clock()
                self._move(CircuitState.OPEN)

    def _retry_after(self) -> float:
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._policy.cooldown - self._clock())

    def _move(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            self._on_change(CircuitChange(self._name, state, self._failures))


class _Call:
    """One call's `CallLease`: its slot here, its verdict for the shared circuit."""

    __slots__ = ("_backend", "_held", "_probe")

    def __init__(self, backend: RedisBackend, probe: bool) -> None:
        self._backend = backend
        self._probe = probe
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._backend.slots.release()

    def answered(self) -> None:
        self._backend.verdict("answered", probe=self._probe)

    def succeeded(self) -> None:
        self._backend.verdict("succeeded", probe=self._probe)

    def failed(self) -> None:
        self._backend.verdict("failed", probe=self._probe)

    def abandoned(self) -> None:
        self._backend.verdict("abandoned", probe=self._probe)
