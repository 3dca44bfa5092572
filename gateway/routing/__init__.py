"""Routing: model name -> route -> chain of targets, walked until one of them answers, with
retries, failover, circuit breaking and the continuation of streams cut mid-answer."""

from gateway.routing.backoff import RetryPolicy
from gateway.routing.chain import Chain, ChainObserver, OpenStream
from gateway.routing.circuit import Circuit, CircuitPolicy, CircuitState
from gateway.routing.policy import Decision, FailurePolicy
from gateway.routing.router import Route, Router, Target, is_pattern
from gateway.routing.slots import Slots
from gateway.routing.template import CallTemplate

__all__ = [
    "CallTemplate",
    "Chain",
    "ChainObserver",
    "Circuit",
    "CircuitPolicy",
    "CircuitState",
    "Decision",
    "FailurePolicy",
    "OpenStream",
    "RetryPolicy",
    "Route",
    "Router",
    "Slots",
    "Target",
    "is_pattern",
]
