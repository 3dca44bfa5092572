"""`Capacity`: relayed requests in flight, overall and per gateway key, and each key's rate -
the memory store's admission (`gateway.state.memory`).

`admit(key)` decides at once - it never waits - and either returns a `Lease`, released
when the request ends however it ends, or raises what the client is told:

- `KeyRateLimited` (429): the key started `requests_per_minute` requests within the last
  minute. Each key has a token bucket of that size, refilled continuously, so a client may
  burst up to its minute's worth and then goes at the steady rate; `Retry-After` says when
  the next token is due;
- `KeyRateLimited` (429) too: the key spent its `tokens_per_minute`. Its budget is a bucket
  of that size refilled continuously; each request's reported tokens are charged to it when
  the request ends (`charge`, so one request may take it below zero), and a request is
  admitted only while at least one token is left; `Retry-After` says when that is;
- `KeyConcurrencyLimited` (429): the key has `max_streams` requests in flight;
- `GatewayOverloaded` (503): the process has `limits.max_streams` requests in flight.

A refused request takes nothing (no token, no slot). The counted unit is a relayed request,
streaming or not: whether a request streams is in its body, which is not read yet when it is
admitted. State is kept per key name, a closed set from the configuration. This is one
process's view: with `workers: N` each worker admits up to the limits on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from gateway.errors import GatewayOverloaded, KeyConcurrencyLimited, KeyRateLimited, RateWindow
from gateway.state.store import KeyLimits

__all__ = ["Capacity"]

_RETRY_SOON = "1"  # seconds: a slot frees up when any one request ends


class _Budget:
    """A key's tokens-per-minute budget: a bucket of `per_minute` refilled continuously."""

    __slots__ = ("left", "per_minute", "refilled_at")

    def __init__(self, per_minute: int, now: float) -> None:
        self.per_minute = per_minute
        self.left = float(per_minute)
        self.refilled_at = now

    def refill(self, now: float) -> float:
        elapsed, self.refilled_at = max(0.0, now - self.refilled_at), now
        self.left = min(float(self.per_minute), self.left + elapsed * self.per_minute / 60.0)
        return self.left

    def check(self, now: float) -> None:
        left = self.refill(now)
        if left < 1.0:
            wait = (1.0 - left) * 60.0 / self.per_minute
            raise KeyRateLimited(
                f"more than {self.per_minute} tokens per minute with this gateway key",
                retry_after=str(max(1, math.ceil(wait))),
            )

    def charge(self, tokens: int, now: float) -> None:
        self.left = self.refill(now) - tokens


class _KeyState:
    """One key's limits, requests in flight, request bucket and token budget."""

    __slots__ = ("budget", "in_flight", "max_streams", "per_minute", "refilled_at", "tokens")

    def __init__(self, key: KeyLimits, now: float) -> None:
        self.max_streams = key.max_streams
        self.per_minute = key.requests_per_minute
        self.in_flight = 0
        self.tokens = float(self.per_minute or 0)
        self.refilled_at = now
        tpm = key.tokens_per_minute
        self.budget = _Budget(tpm, now) if tpm is not None else None

    def check(self, now: float) -> None:
        """Raise if one more request would pass one of the key's limits."""
        if self.budget is not None:
            try:
                self.budget.check(now)
            except KeyRateLimited as over_budget:
                over_budget.rate = self.window()
                raise
        per_minute = self.per_minute
        if per_minute is not None:
            elapsed, self.refilled_at = now - self.refilled_at, now
            self.tokens = min(float(per_minute), self.tokens + elapsed * per_minute / 60.0)
            if self.tokens < 1.0:
                wait = (1.0 - self.tokens) * 60.0 / per_minute
                refused = KeyRateLimited(
                    f"more than {per_minute} requests per minute with this gateway key",
                    retry_after=str(max(1, math.ceil(wait))),
                )
                refused.rate = self.window()
                raise refused
        if self.max_streams is not None and self.in_flight >= self.max_streams:
            raise KeyConcurrencyLimited(
                f"more than {self.max_streams} requests in flight with this gateway key",
                retry_after=_RETRY_SOON,
            )

    def window(self) -> RateWindow | None:
        """The key's requests-per-minute window now (None: no such limit)."""
        per_minute = self.per_minute
        if per_minute is None:
            return None
        full_in = (per_minute - self.tokens) * 60.0 / per_minute
        return RateWindow(per_minute, math.floor(self.tokens), max(0.0, full_in))

    def take(self) -> None:
        if self.per_minute is not None:
            self.tokens -= 1.0
        self.in_flight += 1


class _Lease:
    """One admitted request's place (an `AdmissionLease`); `release()` it once the request
    ends (idempotent), `charge()` it the tokens the request's calls reported."""

    __slots__ = ("_capacity", "_key", "_released", "rate")

    def __init__(self, capacity: Capacity, key: _KeyState | None) -> None:
        self._capacity = capacity
        self._key = key
        self._released = False
        #: The key's requests-per-minute window once this request was admitted.
        self.rate = key.window() if key is not None else None

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._capacity.in_flight -= 1
        if self._key is not None:
            self._key.in_flight -= 1

    def charge(self, tokens: int) -> None:
        key = self._key
        if key is not None and key.budget is not None and tokens > 0:
            key.budget.charge(tokens, self._capacity.now())


class Capacity:
    """Admission counters of one process: `max_streams` overall, and each key's own limits."""

    def __init__(self, max_streams: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_streams = max_streams
        self.in_flight = 0
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}

    def admit(self, limits: KeyLimits | None) -> _Lease:
        """A lease for one more request of `limits`' key (None: no key), or the error refusing
        it."""
        key = self._key_state(limits) if limits is not None else None
        if key is not None:
            key.check(self._clock())
        if self.in_flight >= self.max_streams:
            raise GatewayOverloaded(
                f"the gateway is at capacity ({self.max_streams} requests in flight); "
                "retry shortly",
                retry_after=_RETRY_SOON,
            )
        if key is not None:
            key.take()
        self.in_flight += 1
        return _Lease(self, key)

    def now(self) -> float:
        """The clock of the keys' buckets."""
        return self._clock()

    def in_flight_for(self, limits: KeyLimits) -> int:
        """Requests of `limits`' key in flight now."""
        key = self._keys.get(limits.name)
        return key.in_flight if key is not None else 0

    def _key_state(self, limits: KeyLimits) -> _KeyState | None:
        """The state of a key with limits (None for one without)."""
        if not limits.limited:
            return None
        key = self._keys.get(limits.name)
        if key is None:
            key = self._keys[limits.name] = _KeyState(limits, self._clock())
        return key
