"""`Capacity`: relayed requests in flight, overall and per gateway key, and each key's rate -
the memory store's admission (`gateway.state.memory`).

`admit(key)` decides at once - it never waits - and either returns a `Lease`, released
when the request ends however it ends, or raises what the client is told:

- `KeyRateLimited` (429): the key started `requests_per_minute` requests within the last
  minute. Each key has a token bucket of that size, refilled continuously, so a client may
  burst up to its minute's worth and then goes at the steady rate; `Retry-After` says when
  the next token is due;
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


class _KeyState:
    """One key's limits, requests in flight and token bucket."""

    __slots__ = ("in_flight", "max_streams", "per_minute", "refilled_at", "tokens")

    def __init__(self, key: KeyLimits, now: float) -> None:
        self.max_streams = key.max_streams
        self.per_minute = key.requests_per_minute
        self.in_flight = 0
        self.tokens = float(self.per_minute or 0)
        self.refilled_at = now

    def check(self, now: float) -> None:
        """Raise if one more request would pass one of the key's limits."""
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
    """One admitted request's place (a `Lease`); `release()` it once the request ends
    (idempotent)."""

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

    def in_flight_for(self, limits: KeyLimits) -> int:
        """Requests of `limits`' key in flight now."""
        key = self._keys.get(limits.name)
        return key.in_flight if key is not None else 0

    def _key_state(self, limits: KeyLimits) -> _KeyState | None:
        """The state of a key with limits (None for one without)."""
        if limits.max_streams is None and limits.requests_per_minute is None:
            return None
        key = self._keys.get(limits.name)
        if key is None:
            key = self._keys[limits.name] = _KeyState(limits, self._clock())
        return key
