"""`MemoryStore`: the `StateStore` of one process - its limits and circuits in memory.

Admission is a `Capacity`; each backend is a `MemoryBackend`: `Slots` and a `Circuit`, made on
first use and shared by every route that names the backend; response owners are
`MemoryOwners`. Nothing here waits: the coroutines
of the protocol return at once, and a call's verdict is told to its `Circuit` as it comes. Every
circuit's transitions go to the store's watcher. Time is the monotonic clock given (a test
drives it), for the circuits' cooldowns and the keys' token buckets alike.

With `workers: N` each worker process has its own store: it admits up to the limits, and
judges each backend's health, on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.errors import GatewayOverloaded
from gateway.state.capacity import Capacity
from gateway.state.circuit import Circuit, CircuitPolicy, CircuitState
from gateway.state.memory_streams import MemoryStreamBuffers
from gateway.state.owners import MemoryOwners
from gateway.state.slots import Slots
from gateway.state.store import AdmissionLease, CallLease, CircuitChange, CircuitOpen, KeyLimits

__all__ = ["MemoryBackend", "MemoryStore"]


class MemoryBackend:
    """One backend's `Slots` and `Circuit`, in this process."""

    __slots__ = ("circuit", "slots")

    def __init__(self, slots: Slots, circuit: Circuit) -> None:
        self.slots = slots
        self.circuit = circuit

    @property
    def name(self) -> str:
        return self.circuit.name

    @property
    def circuit_state(self) -> CircuitState:
        return self.circuit.state

    async def acquire(self, *, last_resort: bool = False) -> CallLease:
        """The circuit's permission, then a slot (see `Backend.acquire`)."""
        circuit = self.circuit
        admitted = circuit.admit()
        if not (admitted or last_resort):
            raise CircuitOpen(self.name, circuit.retry_after())
        if not self.slots.acquire():
            if admitted:
                circuit.released()
            raise GatewayOverloaded(f"{self.name} is at its limit of concurrent requests")
        return _Call(self)


class _Call:
    """One call's `CallLease`: the slot it holds, and the circuit its verdict goes to."""

    __slots__ = ("_backend", "_held")

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._backend.slots.release()

    def answered(self) -> None:
        self._backend.circuit.answered()

    def succeeded(self) -> None:
        self._backend.circuit.succeeded()

    def failed(self) -> None:
        self._backend.circuit.failed()

    def abandoned(self) -> None:
        self._backend.circuit.released()


#: Defaults of the response owners a store remembers (`state.max_responses`, `response_ttl`).
MAX_RESPONSES = 100_000
RESPONSE_TTL = 30 * 24 * 3600.0  # as long as OpenAI keeps a stored response
#: Defaults of the resumable streams' buffers (`state.resume_ttl`, `limits.max_resume_*`).
RESUME_TTL = 600.0
MAX_RESUME_EVENTS = 100_000
MAX_RESUME_BYTES = 16 * 1024 * 1024


class MemoryStore:
    """A `StateStore` in this process's memory: `max_streams` requests in flight overall;
    the owners of at most `max_responses` response ids, each for `response_ttl` seconds; the
    resumable streams' buffers, each kept `resume_ttl` seconds after its end."""

    def __init__(
        self,
        *,
        max_streams: int,
        max_responses: int = MAX_RESPONSES,
        response_ttl: float = RESPONSE_TTL,
        clock: Callable[[], float] = time.monotonic,
        resume_ttl: float = RESUME_TTL,
        max_resume_events: int = MAX_RESUME_EVENTS,
        max_resume_bytes: int = MAX_RESUME_BYTES,
    ) -> None:
        self.capacity = Capacity(max_streams, clock=clock)
        self.owners = MemoryOwners(max_entries=max_responses, ttl=response_ttl, clock=clock)
        self.streams = MemoryStreamBuffers(
            ttl=resume_ttl, max_events=max_resume_events, max_bytes=max_resume_bytes
        )
        self._clock = clock
        self._backends: dict[str, MemoryBackend] = {}
        self._on_change: Callable[[CircuitChange], None] | None = None

    @property
    def in_flight(self) -> int:
        return self.capacity.in_flight

    async def admit(self, key: KeyLimits | None) -> AdmissionLease:
        return self.capacity.admit(key)

    def backend(
        self, name: str, *, max_streams: int | None, circuit: CircuitPolicy
    ) -> MemoryBackend:
        backend = self._backends.get(name)
        if backend is None:
            breaker = Circuit(name, circuit, clock=self._clock, on_change=self._changed)
            backend = self._backends[name] = MemoryBackend(Slots(max_streams), breaker)
        return backend

    def backends(self) -> list[MemoryBackend]:
        """Every backend made so far, in the order they were first asked for."""
        return list(self._backends.values())

    def watch(self, on_change: Callable[[CircuitChange], None]) -> None:
        self._on_change = on_change

    def _changed(self, circuit: Circuit) -> None:
        if self._on_change is not None:
            self._on_change(CircuitChange(circuit.name, circuit.state, circuit.failures))
