"""The pools' deployments made observable: `DeploymentMetrics`, the routing's
`DeploymentObserver` over the app's metrics.

Every label is from the configuration - the upstream's name, the deployment's, the model sent
(`*`: the client's) - never a URL or a key. The circuits' states are set with the other
circuits' (`gateway.server.circuits`).
"""

from __future__ import annotations

from gateway.observability import Metrics
from gateway.routing.pools import Deployment

__all__ = ["DeploymentMetrics"]


class DeploymentMetrics:
    """Counts each deployment's calls, calls in flight and time to first token."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def call_started(self, deployment: Deployment) -> None:
        metrics = self._metrics
        metrics.child(metrics.deployment_in_flight, *_labels(deployment)).inc()

    def call_ended(self, deployment: Deployment) -> None:
        metrics = self._metrics
        metrics.child(metrics.deployment_in_flight, *_labels(deployment)).dec()

    def answered(self, deployment: Deployment, seconds: float) -> None:
        metrics = self._metrics
        metrics.child(metrics.deployment_ttft, *_labels(deployment)).observe(seconds)

    def verdict(self, deployment: Deployment, outcome: str) -> None:
        metrics = self._metrics
        metrics.child(metrics.deployment_calls, *_labels(deployment), outcome).inc()


def _labels(deployment: Deployment) -> tuple[str, str, str]:
    return deployment.upstream, deployment.name, deployment.model
