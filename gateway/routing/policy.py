"""`FailurePolicy`: what a route does with an upstream call that failed before its first byte.

Three answers (`Decision`), by the error's type and, for the route's own lists, its code:

- `RETRY` the same target (after a wait, `RetryPolicy`): connect failures and timeouts, resets
  before the response headers, an upstream that ended before its first event, 5xx (and 529),
  408/409, 429 - whatever the error tree marks `retryable`. When the target's attempts run out
  (or its hint is too long to wait for), the request fails over.
- `FAILOVER` to the next target at once: the first-byte and first-token deadlines (a silent
  or a slow target is not asked again), a target that is full (its connection pool), an
  upstream that rejected the gateway's key or the model (401/403/404...), one that broke the
  protocol - faults of the target, not of the request.
- A parameter a target cannot honour in its API (`UntranslatableParameter`, a translated call)
  moves the request to the next target, which may speak the client's API; when none can take
  it, the client gets that 400.
- `STOP`: the error goes to the client as it is. A request the upstream refused as invalid
  (400/413/422) would be refused by the next target too; the request's own deadline, its
  client's departure and the server's shutdown end everything.

A route can move upstream error codes out of that default: `failover_on` (e.g.
`context_length_exceeded`: a target with a larger context may take it) and `propagate` (e.g.
`content_policy_violation`: no retry, no failover, the provider's reason reaches the client;
this list wins). A code is the provider's own (`UpstreamBadRequest.upstream_code`) or the
gateway's (`upstream_status_5xx`, `upstream_auth_failed`...).

`hurts_target(error)` says whether a failure counts against the target's health (its circuit):
the request's own faults and its end do not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gateway.errors import (
    Canceled,
    DeadlineExceeded,
    FirstByteTimeout,
    FirstTokenTimeout,
    GatewayError,
    GatewayOverloaded,
    RequestError,
    ServerShutdown,
    UntranslatableParameter,
    UpstreamBadRequest,
)
from gateway.routing.backoff import RetryPolicy

__all__ = ["Decision", "FailurePolicy", "error_codes", "hurts_target"]

#: Errors that end the request wherever they come from: its deadline, its client, the server.
_ENDINGS = (Canceled, DeadlineExceeded, ServerShutdown)
#: Errors that are the request's own fault: every target would refuse it the same way.
_REQUEST_FAULTS = (RequestError, UpstreamBadRequest)


class Decision(enum.Enum):
    RETRY = "retry"  # the same target again, after a wait
    FAILOVER = "failover"  # the next target, at once
    STOP = "stop"  # the client gets this error


def error_codes(error: GatewayError) -> frozenset[str]:
    """The codes a route's lists may name for `error`: the gateway's and the provider's own."""
    codes = {type(error).code, error.code}
    upstream_code = getattr(error, "upstream_code", None)
    if isinstance(upstream_code, str):
        codes.add(upstream_code)
    return frozenset(codes)


def hurts_target(error: GatewayError) -> bool:
    """Whether `error` says something about the target's health."""
    return not isinstance(error, _ENDINGS + _REQUEST_FAULTS)


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """One route's answer to failures before the first byte."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    failover_on: frozenset[str] = frozenset()
    propagate: frozenset[str] = frozenset()

    def decide(self, error: GatewayError) -> Decision:
        if isinstance(error, _ENDINGS):
            return Decision.STOP
        codes = error_codes(error)
        if codes & self.propagate:
            return Decision.STOP
        if codes & self.failover_on or isinstance(error, UntranslatableParameter):
            return Decision.FAILOVER
        if isinstance(error, _REQUEST_FAULTS):
            return Decision.STOP
        if isinstance(error, (FirstByteTimeout, FirstTokenTimeout, GatewayOverloaded)):
            return Decision.FAILOVER
        if error.retryable:
            return Decision.RETRY
        return Decision.FAILOVER
