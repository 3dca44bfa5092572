"""Routing: model name -> route -> chain of targets, walked until one of them answers, with
retries, failover, circuit breaking and the continuation of streams cut mid-answer. The state
of the targets' backends (slots, circuits) lives behind `gateway.state.StateStore`."""

from gateway.routing.backoff import RetryPolicy
from gateway.routing.chain import Chain, ChainObserver, OpenStream
from gateway.routing.policy import Decision, FailurePolicy
from gateway.routing.router import Route, Router, Target, is_pattern
from gateway.routing.routes import build_routes
from gateway.routing.template import CallTemplate

__all__ = [
    "CallTemplate",
    "Chain",
    "ChainObserver",
    "Decision",
    "FailurePolicy",
    "OpenStream",
    "RetryPolicy",
    "Route",
    "Router",
    "Target",
    "build_routes",
    "is_pattern",
]
