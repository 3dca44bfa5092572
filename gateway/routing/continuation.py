"""`Continuation`: which targets may continue a stream that died after its first byte, and
how many times.

A stream is continued only where it is sound and bounded:

- the failure is one a continuation can mend: the stream was cut (ended short, mid-event, or by
  a reset) or stalled past its idle deadline (`continuable`); not an event too large, a
  protocol error, the server's shutdown or the request's own deadline;
- the route allows continuations (`continuations` > 0, the default 2) and has targets that
  declare `prefill`; only those are asked - the next capable ones in the chain, then the ones
  before it, and the stream's own target last (it just stalled or cut the stream: most likely
  it would again, and the client would wait a second idle period on it) - skipping a target
  whose circuit is open or whose slots are full;
- each continuation call counts against the route's `continuations`, whatever its result;
  every call runs under the request's total deadline;
- the answer so far can be continued by prefill (`Splice.sound`: plain text only).

Each outcome is one of a closed set (`gateway_continuations_total{route, result}`): `ok` (a
continuation's first events arrived and are spliced in), `rejected` (the target refused the
continuation request, e.g. no prefill after all: a 4xx), `failed` (any other failure of the
call), `unsound` (the answer so far cannot be continued) and `exhausted` (no capable target
could be called, or the route's continuations were spent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gateway.apis import Api, Splice
from gateway.errors import (
    GatewayError,
    GatewayOverloaded,
    IdleTimeout,
    NetworkError,
    RequestError,
    UpstreamBadRequest,
    UpstreamRejected,
    UpstreamTruncated,
)
from gateway.routing.router import Route, Target
from gateway.state import CallLease, CircuitOpen

__all__ = [
    "EXHAUSTED",
    "FAILED",
    "OK",
    "REJECTED",
    "RESULTS",
    "UNSOUND",
    "Continuation",
    "continuable",
    "result_of",
    "splice_for",
]

OK = "ok"
REJECTED = "rejected"
FAILED = "failed"
UNSOUND = "unsound"
EXHAUSTED = "exhausted"
RESULTS = (OK, REJECTED, FAILED, UNSOUND, EXHAUSTED)

#: The failures after the first byte that a continuation can mend.
_CONTINUABLE = (UpstreamTruncated, NetworkError, IdleTimeout)
#: A continuation request refused as such (the target does not take the prefill after all).
_REJECTIONS = (UpstreamBadRequest, UpstreamRejected, RequestError)


class _Request(Protocol):
    """What `splice_for` reads of a request (a `gateway.routing.chain.CallTemplate`)."""

    @property
    def stream(self) -> bool: ...
    @property
    def api(self) -> Api: ...
    @property
    def body(self) -> Mapping[str, Any]: ...


def continuable(error: GatewayError) -> bool:
    """Whether a stream that failed with `error` after its first byte may be continued."""
    return isinstance(error, _CONTINUABLE)


def result_of(failure: GatewayError) -> str:
    """The result label of a continuation call that failed with `failure`."""
    return REJECTED if isinstance(failure, _REJECTIONS) else FAILED


def splice_for(route: Route, request: _Request) -> Splice | None:
    """A `Splice` for a stream of `request` on `route`, if the route may continue it."""
    if not request.stream or route.continuations <= 0:
        return None
    if not any(target.prefill for target in route.targets):
        return None
    splice = request.api.splice
    return None if splice is None else splice(request.body)


class Continuation:
    """One stream's continuations on its route: the candidates, and the calls left."""

    def __init__(self, route: Route) -> None:
        self._targets = route.targets
        self._left = route.continuations

    def candidates(self, after: Target | None) -> list[Target]:
        """The targets that may continue a stream `after` was serving, in the order to ask
        them: the next ones in the chain, then the ones before it, then `after` itself -
        those declaring `prefill` only. A pool stands for its deployments (`after`'s own
        pool: its others, then `after`). `after` None (not known: the stream was served by
        a replica that died): the route's, in order."""
        targets = self._targets
        index = None
        if after is not None:
            index = next((i for i, t in enumerate(targets) if after in t.deployments()), None)
        if index is None:
            return [member for target in targets if target.prefill for member in target.members()]
        assert after is not None  # found in the route
        own = [member for member in targets[index].members() if member != after]
        ordered = [m for target in targets[index + 1 :] + targets[:index] for m in target.members()]
        return [target for target in [*ordered, *own, after] if target.prefill]

    async def take(self, target: Target) -> CallLease | None:
        """Claim one continuation call on `target`: a call left, and its backend's lease (its
        circuit's permission and a slot, given back by the caller); None, with nothing taken,
        if any is missing."""
        if self._left <= 0:
            return None
        try:
            lease = await target.backend.acquire()
        except (CircuitOpen, GatewayOverloaded):
            return None
        self._left -= 1
        return lease
