"""Circuit transitions made observable: the `gateway_circuit_state` gauge (and, for a pool's
deployment, `gateway_deployment_circuit_state`) and one log line each.

`watch_circuits(router, store, metrics)` is called once per app: every target's circuit starts
at its state in the gauge (0, closed, for a new store), so a dashboard sees every target, and
each later transition the store reports sets it and logs `circuit_opened` (a warning: a target
is being skipped), `circuit_half_open` (one probe is let through) or `circuit_closed`.
"""

from __future__ import annotations

import structlog

from gateway.observability import Metrics
from gateway.routing import Router
from gateway.state import Backends, CircuitChange, CircuitState

__all__ = ["watch_circuits"]

_log = structlog.get_logger("gateway.circuit")
_EVENTS = {
    CircuitState.OPEN: "circuit_opened",
    CircuitState.HALF_OPEN: "circuit_half_open",
    CircuitState.CLOSED: "circuit_closed",
}


def watch_circuits(router: Router, store: Backends, metrics: Metrics) -> None:
    """Report every circuit of `router`'s backends to `metrics` and the log from now on."""

    deployments = {backend.name: backend.deployment for backend in router.deployment_backends()}

    def show(backend: str, state: CircuitState) -> None:
        metrics.circuit_state.labels(backend).set(int(state))
        deployment = deployments.get(backend)
        if deployment is not None:
            labels = (deployment.upstream, deployment.name, deployment.model)
            metrics.deployment_circuit_state.labels(*labels).set(int(state))

    def changed(change: CircuitChange) -> None:
        state = change.state
        show(change.backend, state)
        level = _log.warning if state is CircuitState.OPEN else _log.info
        level(_EVENTS[state], target=change.backend, failures=change.failures)

    for backend in router.backends():
        show(backend.name, backend.circuit_state)
    store.watch(changed)
