"""Shared state of the gateway: the limits, circuits and leases replicas would share.

`gateway.state.lease.Lease` is the one vocabulary of every limiter. `StateStore`
(`gateway.state.store`) is the one interface routing and server speak to: admission (requests
in flight overall and per gateway key, keys' rates) and backends (each `upstream/model`'s slots
and circuit) and response owners (`gateway.state.owners`). `MemoryStore` keeps it all in this
process. This package imports no routing, server or provider code: they depend on it, never the
other way.
"""

from gateway.state.capacity import Capacity
from gateway.state.circuit import Circuit, CircuitPolicy, CircuitState
from gateway.state.lease import Lease
from gateway.state.memory import MAX_RESPONSES, RESPONSE_TTL, MemoryBackend, MemoryStore
from gateway.state.memory_streams import MemoryStreamBuffers
from gateway.state.owners import MemoryOwners, ResponseOwner, ResponseOwners
from gateway.state.slots import Slots
from gateway.state.store import (
    Admission,
    AdmissionLease,
    Backend,
    Backends,
    CallLease,
    CircuitChange,
    CircuitOpen,
    KeyLimits,
    StateStore,
)
from gateway.state.stream_buffers import (
    CANCELLED,
    COMPLETED,
    FAILED,
    GAP,
    LIVE,
    ORPHANED,
    StreamBuffers,
    StreamInfo,
    StreamReader,
    StreamWriter,
    Takeover,
)

__all__ = [
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "GAP",
    "LIVE",
    "MAX_RESPONSES",
    "ORPHANED",
    "RESPONSE_TTL",
    "Admission",
    "AdmissionLease",
    "Backend",
    "Backends",
    "CallLease",
    "Capacity",
    "Circuit",
    "CircuitChange",
    "CircuitOpen",
    "CircuitPolicy",
    "CircuitState",
    "KeyLimits",
    "Lease",
    "MemoryBackend",
    "MemoryOwners",
    "MemoryStore",
    "MemoryStreamBuffers",
    "ResponseOwner",
    "ResponseOwners",
    "Slots",
    "StateStore",
    "StreamBuffers",
    "StreamInfo",
    "StreamReader",
    "StreamWriter",
    "Takeover",
]
