"""`RedisStore`: the `StateStore` a fleet of replicas shares through one Redis.

What is shared, and what stays this process's own:

- admission (`gateway.state.redis_admission`): each gateway key's requests per minute, tokens
  per minute and streams in flight are shared - one `ADMIT` script per request; the
  gateway-wide `limits.max_streams` is this process's own;
- backends (`gateway.state.redis_circuit`): each backend's circuit is shared (one replica's
  open circuit is every replica's, one replica probes); its slots (`max_streams` of a target)
  are this process's own;
- response owners (`gateway.state.redis_owners`): shared, each for `response_ttl`, at most
  `max_responses`;
- resumable streams' buffers (`gateway.state.redis_streams`): shared (any replica resumes
  any stream), each kept `resume_ttl` after its end, with a lease per live stream.

Every command goes through one `RedisLink` (ordered, pipelined, a time budget per call:
`state.redis_timeout`). When Redis is slow or down no request waits past that budget:
`on_error` `open` decides in this process (and says so to the observer, `fallback`), `closed`
refuses what needs Redis with 503. Releases, charges and verdicts never wait: they are sent in
the background. The link reconnects on its own when Redis is back; the fleet shares again from
the next request on.

Time is the wall clock (`time.time`) by default, which every replica must share (NTP): the
buckets' refills, leases' and owners' expiries and circuits' cooldowns are compared across
replicas. Keys start with `prefix` (`state.redis_prefix`), so gateways of several fleets may
share one Redis. `reachable()` says whether Redis answers (for readiness: at most one `PING` a
second, whoever asks). `aclose()` sends what is queued and closes the connections.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.state.circuit import CircuitPolicy
from gateway.state.memory import (
    MAX_RESPONSES,
    MAX_RESUME_BYTES,
    MAX_RESUME_EVENTS,
    RESPONSE_TTL,
    RESUME_TTL,
)
from gateway.state.redis_admission import LEASE_TTL, OnError, RedisAdmission
from gateway.state.redis_circuit import CACHE_TTL, RedisBackend
from gateway.state.redis_link import RedisLink, RedisObserver, RedisUnavailable
from gateway.state.redis_owners import RedisOwners
from gateway.state.redis_streams import RedisStreamBuffers
from gateway.state.slots import Slots
from gateway.state.store import AdmissionLease, CircuitChange, KeyLimits

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "RedisStore", "redis_client"]

DEFAULT_TIMEOUT = 0.05  # seconds: a Redis call's budget (`state.redis_timeout`)
REACHABLE_TTL = 1.0  # seconds `reachable()` keeps its answer
DEFAULT_PREFIX = "sse-gateway:"


def redis_client(url: str, *, timeout: float) -> Redis:
    """A redis-py client of `url` whose every socket operation is bounded by `timeout` and
    which never retries by itself (the store decides what a failure means)."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class RedisStore:
    """A `StateStore` shared through Redis (see the module)."""

    def __init__(
        self,
        client: Redis,
        *,
        max_streams: int,
        max_responses: int = MAX_RESPONSES,
        response_ttl: float = RESPONSE_TTL,
        timeout: float = DEFAULT_TIMEOUT,
        on_error: OnError = "open",
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        lease_ttl: float = LEASE_TTL,
        circuit_cache: float = CACHE_TTL,
        resume_ttl: float = RESUME_TTL,
        max_resume_events: int = MAX_RESUME_EVENTS,
        max_resume_bytes: int = MAX_RESUME_BYTES,
        stream_lease_ttl: float = 3.0,
    ) -> None:
        self.link = RedisLink(client, timeout=timeout)
        #: This replica's id in Redis (its leases and probe tokens): unique per process.
        self.replica = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.on_error = on_error
        self._prefix = prefix
        self._clock = clock
        self._circuit_cache = circuit_cache
        self.admission = RedisAdmission(
            self.link,
            max_streams=max_streams,
            prefix=prefix,
            replica=self.replica,
            clock=clock,
            on_error=on_error,
            lease_ttl=lease_ttl,
        )
        self.owners = RedisOwners(
            self.link,
            prefix=prefix,
            max_entries=max_responses,
            ttl=response_ttl,
            clock=clock,
            on_error=on_error,
        )
        self.streams = RedisStreamBuffers(
            self.link,
            prefix=prefix,
            replica=self.replica,
            ttl=resume_ttl,
            max_events=max_resume_events,
            max_bytes=max_resume_bytes,
            on_error=on_error,
            lease_ttl=stream_lease_ttl,
        )
        self._backends: dict[str, RedisBackend] = {}
        self._on_change: Callable[[CircuitChange], None] | None = None
        self._reachable = True
        self._reachable_checked = -REACHABLE_TTL
        self._reachable_check: asyncio.Task[bool] | None = None

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    async def admit(self, key: KeyLimits | None) -> AdmissionLease:
        return await self.admission.admit(key)

    def backend(
        self, name: str, *, max_streams: int | None, circuit: CircuitPolicy
    ) -> RedisBackend:
        backend = self._backends.get(name)
        if backend is None:
            backend = self._backends[name] = RedisBackend(
                name,
                Slots(max_streams),
                circuit,
                link=self.link,
                prefix=self._prefix,
                replica=self.replica,
                clock=self._clock,
                on_change=self._changed,
                cache_ttl=self._circuit_cache,
            )
        return backend

    async def reachable(self) -> bool:
        """Whether Redis answered a `PING` (after what is queued) within the budget, as of at
        most `REACHABLE_TTL` seconds ago: one check at a time, shared by every caller, and none
        while the last answer is fresh. Never raises, never waits past one budget."""
        if time.monotonic() - self._reachable_checked < REACHABLE_TTL:
            return self._reachable
        if self._reachable_check is None:
            self._reachable_check = asyncio.get_running_loop().create_task(self._check())
        return await asyncio.shield(self._reachable_check)

    async def _check(self) -> bool:
        try:
            await self.link.flush()
            self._reachable = True
        except RedisUnavailable:
            self._reachable = False
        finally:
            self._reachable_checked = time.monotonic()
            self._reachable_check = None
        return self._reachable

    def backends(self) -> list[RedisBackend]:
        """Every backend made so far, in the order they were first asked for."""
        return list(self._backends.values())

    def watch(self, on_change: Callable[[CircuitChange], None]) -> None:
        self._on_change = on_change

    def observe(self, observer: RedisObserver) -> None:
        """Report every Redis call's time, error and fallback to `observer` from now on."""
        self.link.observer = observer

    async def aclose(self) -> None:
        self.streams.close()
        if self._reachable_check is not None:
            await asyncio.gather(self._reachable_check, return_exceptions=True)
        await self.admission.aclose()
        await self.link.aclose()

    def _changed(self, change: CircuitChange) -> None:
        if self._on_change is not None:
            self._on_change(change)
