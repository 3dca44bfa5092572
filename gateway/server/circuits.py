"""Circuit transitions made observable: the `gateway_circuit_state` gauge and one log line each.

`watch_circuits(router, metrics)` is called once per app: every target's circuit starts at 0
(closed) in the gauge, so a dashboard sees every target, and each later transition sets it and
logs `circuit_opened` (a warning: a target is being skipped), `circuit_half_open` (one probe is
let through) or `circuit_closed`.
"""

from __future__ import annotations

import structlog

from gateway.observability import Metrics
from gateway.routing import Circuit, CircuitState, Router

__all__ = ["watch_circuits"]

_log = structlog.get_logger("gateway.circuit")
_EVENTS = {
    CircuitState.OPEN: "circuit_opened",
    CircuitState.HALF_OPEN: "circuit_half_open",
    CircuitState.CLOSED: "circuit_closed",
}


def watch_circuits(router: Router, metrics: Metrics) -> None:
    """Report every circuit of `router` to `metrics` and the log from now on."""

    def changed(circuit: Circuit) -> None:
        state = circuit.state
        metrics.circuit_state.labels(circuit.name).set(int(state))
        level = _log.warning if state is CircuitState.OPEN else _log.info
        level(_EVENTS[state], target=circuit.name, failures=circuit.failures)

    for circuit in router.circuits():
        metrics.circuit_state.labels(circuit.name).set(int(circuit.state))
        circuit.watch(changed)
