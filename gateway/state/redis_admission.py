"""`RedisAdmission`: the admission part of a `RedisStore` - each key's limits shared by every
replica, the gateway-wide limit kept by this process.

One `ADMIT` script per request (one round trip) decides a key's three limits at once, with the
memory store's semantics (`gateway.state.capacity`): its requests per minute (a bucket of that
size, refilled continuously), its tokens per minute (a budget charged with each request's
reported tokens when it ends, `charge`), its streams in flight. A stream in flight is a lease:
an id in the key's sorted set scored by its expiry (`lease_ttl`, 30 s), pushed forward every
third of that while this process holds it; a replica that dies stops refreshing, and its
leases fall out within `lease_ttl`. `release()` and `charge()` never wait: they are sent in the
background through the store's `RedisLink`, in order.

`limits.max_streams` stays this process's own (it protects this process): checked first,
locally, so a request the process has no room for never reaches Redis. A key without limits
never reaches Redis either.

When Redis does not answer within its budget (or is down), `on_error` decides: `open` admits
the request and counts it against the key's limits in this process alone (a `Capacity`, as the
memory store does), `closed` refuses it with 503 `gateway_overloaded`; either way the fallback
is reported.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from typing import Any, Literal

from gateway.errors import GatewayOverloaded, KeyConcurrencyLimited, KeyRateLimited, RateWindow
from gateway.state.capacity import Capacity
from gateway.state.lease import Lease
from gateway.state.redis_link import RedisLink, RedisUnavailable
from gateway.state.redis_scripts import ADMIT, CHARGE
from gateway.state.store import AdmissionLease, KeyLimits

__all__ = ["LEASE_TTL", "OnError", "RedisAdmission"]

OnError = Literal["open", "closed"]
#: Seconds a stream's lease lives in Redis unless refreshed (a dead replica's, at most).
LEASE_TTL = 30.0
#: Milliseconds a key's buckets and leases outlive their last write (a full bucket is absent).
_KEY_LIFETIME_MS = 120_000
_RETRY_SOON = "1"


class _PlainLease:
    """A request that needed no shared limit: this process's place only."""

    __slots__ = ("_place",)
    rate = None

    def __init__(self, place: Lease) -> None:
        self._place = place

    def release(self) -> None:
        self._place.release()

    def charge(self, tokens: int) -> None:
        pass


class _SharedLease:
    """A request admitted by Redis: this process's place, and the key's lease there."""

    __slots__ = ("_admission", "_held", "_key", "_place", "lease_id", "rate")

    def __init__(
        self,
        admission: RedisAdmission,
        place: Lease,
        key: KeyLimits,
        lease_id: str | None,
        rate: RateWindow | None,
    ) -> None:
        self._admission = admission
        self._place = place
        self._key = key
        self._held = True
        self.lease_id = lease_id
        self.rate = rate

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._place.release()
        if self.lease_id is not None:
            self._admission.released(self._key, self.lease_id)

    def charge(self, tokens: int) -> None:
        if tokens > 0 and self._key.tokens_per_minute is not None:
            self._admission.charge(self._key, tokens)


class RedisAdmission:
    """Admission shared through Redis (see the module)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        max_streams: int,
        prefix: str,
        replica: str,
        clock: Callable[[], float],
        on_error: OnError = "open",
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self._link = link
        self._prefix = prefix
        self._replica = replica
        self._clock = clock
        self._on_error = on_error
        self._lease_ttl = lease_ttl
        self._ids = itertools.count(1)
        #: This process's count (`limits.max_streams`), and the keys' limits while Redis fails.
        self.local = Capacity(max_streams, clock=clock)
        #: Leases held by this process, by key: refreshed until released.
        self._held: dict[str, dict[str, None]] = {}
        self._refresher: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return self.local.in_flight

    async def admit(self, key: KeyLimits | None) -> AdmissionLease:
        if key is None or not key.limited:
            return _PlainLease(self.local.admit(None))
        place = self.local.admit(None)  # 503 when this process is full: Redis not asked
        lease_id = f"{self._replica}:{next(self._ids)}" if key.max_streams else None
        try:
            answer = await self._ask(key, lease_id)
        except RedisUnavailable:
            place.release()
            self._forget_maybe_counted(key, lease_id)
            return self._fallback(key)
        except BaseException:
            place.release()
            self._forget_maybe_counted(key, lease_id)
            raise
        status = int(answer[0])
        if status != 0:
            place.release()
            raise _refusal(status, answer, key)
        rate = _window(key, float(answer[1]))
        if lease_id is not None:
            self._hold(key, lease_id)
        return _SharedLease(self, place, key, lease_id, rate)

    def released(self, key: KeyLimits, lease_id: str) -> None:
        held = self._held.get(key.name)
        if held is not None:
            held.pop(lease_id, None)
            if not held:
                del self._held[key.name]
        self._link.send("release", "ZREM", self._leases_key(key.name), lease_id)

    def charge(self, key: KeyLimits, tokens: int) -> None:
        self._link.send(
            "charge",
            1,
            self._buckets_key(key.name),
            self._clock(),
            key.tokens_per_minute,
            tokens,
            script=CHARGE,
        )

    async def aclose(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _ask(self, key: KeyLimits, lease_id: str | None) -> Any:
        now = self._clock()
        return await self._link.call(
            "admit",
            2,
            self._buckets_key(key.name),
            self._leases_key(key.name),
            now,
            lease_id or "",
            key.requests_per_minute or 0,
            key.max_streams or 0,
            key.tokens_per_minute or 0,
            now + self._lease_ttl,
            _KEY_LIFETIME_MS,
            script=ADMIT,
        )

    def _fallback(self, key: KeyLimits) -> AdmissionLease:
        self._link.observer.fallback("admit")
        if self._on_error == "closed":
            raise GatewayOverloaded(
                "the gateway's shared state (Redis) is unavailable, and state.on_error is "
                "closed: requests of keys with limits are refused until it answers; retry "
                "shortly",
                retry_after=_RETRY_SOON,
            )
        return self.local.admit(key)

    def _forget_maybe_counted(self, key: KeyLimits, lease_id: str | None) -> None:
        """A call that timed out may still have been counted: its lease is taken back."""
        if lease_id is not None and not self._link.down:
            self._link.send("release", "ZREM", self._leases_key(key.name), lease_id)

    def _hold(self, key: KeyLimits, lease_id: str) -> None:
        self._held.setdefault(key.name, {})[lease_id] = None
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        """Push the expiry of every lease held forward, every third of `lease_ttl`."""
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            expiry = self._clock() + self._lease_ttl
            for name, held in list(self._held.items()):
                scored = [part for lease in held for part in (expiry, lease)]
                leases = self._leases_key(name)
                self._link.send("refresh", "ZADD", leases, "XX", *scored)
                self._link.send("refresh", "PEXPIRE", leases, _KEY_LIFETIME_MS)

    def _buckets_key(self, name: str) -> str:
        return f"{self._prefix}key:{name}:buckets"

    def _leases_key(self, name: str) -> str:
        return f"{self._prefix}key:{name}:leases"


def _window(key: KeyLimits, left: float) -> RateWindow | None:
    per_minute = key.requests_per_minute
    if per_minute is None:
        return None
    full_in = max(0.0, (per_minute - left) * 60.0 / per_minute)
    return RateWindow(per_minute, math.floor(left), full_in)


def _refusal(status: int, answer: Any, key: KeyLimits) -> Exception:
    if status == 2:
        return KeyConcurrencyLimited(
            f"more than {key.max_streams} requests in flight with this gateway key",
            retry_after=_RETRY_SOON,
        )
    wait = float(answer[1])
    if status == 3:
        what = f"more than {key.tokens_per_minute} tokens per minute"
    else:
        what = f"more than {key.requests_per_minute} requests per minute"
    refused = KeyRateLimited(
        f"{what} with this gateway key", retry_after=str(max(1, math.ceil(wait)))
    )
    refused.rate = _window(key, float(answer[2]))
    return refused
