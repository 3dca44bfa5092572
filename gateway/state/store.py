"""`StateStore`: the one interface to the state a gateway's limits and circuits keep.

Three parts, one protocol:

- admission (`Admission`): the requests in flight overall (`limits.max_streams`) and per
  gateway key (`KeyLimits.max_streams`), and each key's requests and tokens per minute.
  `admit()` returns a `Lease` released when the request ends (and charged the tokens the
  request's calls reported), or raises the refusal the client is told (`GatewayOverloaded`
  503, `KeyConcurrencyLimited` / `KeyRateLimited` 429);
- response owners (`ResponseOwners`, `gateway.state.owners`): which upstream holds each
  stored Responses id, for the follow-ups that must go there;
- stream buffers (`StreamBuffers`, `gateway.state.stream_buffers`): the events of resumable
  streams, for the clients that come back for them;
- backends (`Backend`, one per `upstream/model`, shared by every route that names it): its
  slots (requests in flight) and its circuit. `acquire()` returns a `CallLease` - the slot and
  the circuit's permission of one call - or raises the refusal: `CircuitOpen` (skip the target
  for now) or `GatewayOverloaded` (it is full); a refused call takes nothing.

What may do I/O in a shared store is a coroutine (`admit`, `acquire`); what runs in `finally`
blocks of tasks being cancelled never waits (`Lease.release()`, `AdmissionLease.charge()`, a
call's verdict): a shared store records those in the background. Transitions of every circuit
are reported to the one callback given to `watch()` (the gauge and the log lines are the
server's business).

A store is built by whoever serves the gateway (`gateway.server.create_app` builds a
`MemoryStore` by default, a `gateway.state.redis_store.RedisStore` with `state.redis_url`);
routing and server speak only to these protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import RateWindow
from gateway.state.circuit import CircuitPolicy, CircuitState
from gateway.state.lease import Lease
from gateway.state.owners import ResponseOwners
from gateway.state.stream_buffers import StreamBuffers

__all__ = [
    "Admission",
    "AdmissionLease",
    "Backend",
    "Backends",
    "CallLease",
    "CircuitChange",
    "CircuitOpen",
    "KeyLimits",
    "StateStore",
]


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What admission needs of a gateway key's holder: its name (a closed set from the
    configuration, never the key) and its limits (None: that limit does not apply)."""

    name: str
    max_streams: int | None = None
    requests_per_minute: int | None = None
    #: Tokens (input + output, as the upstreams reported them) per minute: a bucket of this
    #: size refilled continuously, charged when each request ends; admission needs it > 0.
    tokens_per_minute: int | None = None

    @property
    def limited(self) -> bool:
        """Whether any of the key's own limits applies."""
        return not (
            self.max_streams is None
            and self.requests_per_minute is None
            and self.tokens_per_minute is None
        )


@dataclass(frozen=True, slots=True)
class CircuitChange:
    """One transition of a backend's circuit: the state it moved to, and the consecutive
    failures counted when it moved."""

    backend: str  # `upstream/model`: a closed set, safe as a label
    state: CircuitState
    failures: int


class CircuitOpen(Exception):
    """`Backend.acquire()`'s refusal when the backend's circuit skips it (open, or half-open
    with its one probe out). Not a `GatewayError`: no client is ever told of it - the chain
    goes to its next target, or calls this one anyway as its last resort."""

    def __init__(self, backend: str, retry_after: float) -> None:
        super().__init__(f"the circuit of {backend} is open")
        self.backend = backend
        self.retry_after = retry_after  # seconds until a probe may be let through


class CallLease(Lease, Protocol):
    """One call to a backend: its slot, held until `release()`, and its circuit's permission,
    on which the call's verdict is reported.

    A call reports one final verdict - `succeeded()`, `failed()` (by the backend's fault) or
    `abandoned()` (it said nothing about the backend: the client left, the request's own
    fault) - and, before it, `answered()` when its answer began (a stream's first event) and
    its end is still to come. The slot and the verdict are independent: a stream's slot is
    given back when it is over, its verdict told after. None of these waits.
    """

    def answered(self) -> None: ...

    def succeeded(self) -> None: ...

    def failed(self) -> None: ...

    def abandoned(self) -> None: ...


class Backend(Protocol):
    """The shared state of one backend (`upstream/model`): slots and circuit."""

    @property
    def name(self) -> str:
        """`upstream/model` (`*`: the client's model name); a closed set."""
        ...

    @property
    def circuit_state(self) -> CircuitState:
        """The circuit's state as this process last knew it."""
        ...

    async def acquire(self, *, last_resort: bool = False) -> CallLease:
        """A slot and the circuit's permission for one call, or the refusal: `CircuitOpen`
        (nothing taken) or `GatewayOverloaded` (full; the circuit's permission given back).

        With `last_resort` (every target's circuit skipped them and no call was made), a call
        the circuit would skip is let through anyway; it still needs a slot, and its verdict
        still counts."""
        ...


class AdmissionLease(Lease, Protocol):
    """An admitted request's place, and where its key stands in its requests-per-minute limit
    (None: no such limit), which the client is told in `x-ratelimit-*-requests`."""

    @property
    def rate(self) -> RateWindow | None: ...

    def charge(self, tokens: int) -> None:
        """The request's calls reported `tokens` (input + output): taken from its key's
        tokens-per-minute budget (nothing without that limit). Never waits; may come before
        or after `release()`."""
        ...


class Admission(Protocol):
    """The admission part of a store: requests in flight overall and per key, keys' rates."""

    @property
    def in_flight(self) -> int:
        """Requests this process admitted that are still in flight."""
        ...

    async def admit(self, key: KeyLimits | None) -> AdmissionLease:
        """A lease for one more request of `key` (None: no gateway key), or the refusal:
        `KeyRateLimited` (requests or tokens per minute), `KeyConcurrencyLimited` (429) or
        `GatewayOverloaded` (503), each with `retry_after`. A refused request takes nothing
        (no token, no place)."""
        ...


class Backends(Protocol):
    """The per-backend part of a store."""

    def backend(self, name: str, *, max_streams: int | None, circuit: CircuitPolicy) -> Backend:
        """The state of backend `name`, made with these limits on first use; the same name
        again returns the same backend's state (the limits it was made with hold)."""
        ...

    def watch(self, on_change: Callable[[CircuitChange], None]) -> None:
        """Report every later transition of every backend's circuit to `on_change` (replaces
        the previous watcher). `on_change` never waits: it runs where the verdict was told."""
        ...


class StateStore(Admission, Backends, Protocol):
    """Everything a gateway's limits and circuits keep: admission and backends; and which
    upstream holds each stored response (`owners`)."""

    @property
    def owners(self) -> ResponseOwners:
        """The owners of the Responses ids made through this gateway."""
        ...

    @property
    def streams(self) -> StreamBuffers:
        """The buffers of the resumable streams (`gateway.state.stream_buffers`)."""
        ...
