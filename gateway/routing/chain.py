"""`Chain`: one request walking its route's targets until one of them answers.

The server hands a `Chain` the client's request (`CallTemplate`: the body, the client's model
name, the request's timeout overrides) and an *attempt*: a coroutine that makes one upstream
call to one target and returns what the server needs from it. `run()` calls the attempt for
the targets in order and returns the first answer with the target that gave it.

`stream()` is `run()` for an event stream: an attempt succeeds once the upstream's first event
has arrived - until then the client has seen nothing of it (heartbeats are the gateway's own,
CONTRACT section 2), so any target may still be tried. After that the events of that one
upstream are yielded as they come.

Invariants:
- a target whose `Slots` are full is skipped, never waited for; every slot taken is given back
  when its call is over (a failed attempt at once; the answering one when the caller is done);
- the `ChainObserver` hears of every attempt (its target when it starts, its error if it
  fails), so the request's record knows which upstream answered;
- cancellation (the client left) is never caught: it propagates through `run()` and `stream()`
  after the current call's connection was closed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.errors import GatewayError, GatewayOverloaded, UpstreamTruncated
from gateway.providers import UpstreamRequest
from gateway.routing.router import Route, Target
from gateway.streaming import Context, ContextAwareStream, SSEEvent

__all__ = ["CallTemplate", "Chain", "ChainObserver", "OpenStream"]

T = TypeVar("T")

#: One upstream call to one target: returns what the caller needs, or raises a `GatewayError`.
Attempt = Callable[[Target, UpstreamRequest], Awaitable[T]]
#: Opens one target's event stream (not yet read): the caller's framing and phase limits.
OpenStream = Callable[[Target, UpstreamRequest], ContextAwareStream[list[SSEEvent]]]


@dataclass(frozen=True, slots=True)
class CallTemplate:
    """The client's request as every target gets it, but for the model name and limits."""

    path: str  # relative to the upstream's base URL
    body: Mapping[str, Any]  # the client's JSON body, as validated at the edge
    model: str  # the client's model name
    stream: bool
    dialect: str  # the `Dialect.name` of the endpoint
    request_id: str = ""
    #: Headers of the client's request to pass on (already filtered: never credentials).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The request's own `x-gateway-*-timeout` limits.
    overrides: Mapping[str, float] = field(default_factory=dict)

    def for_target(
        self, route: Route, target: Target, body: Mapping[str, Any] | None = None
    ) -> UpstreamRequest:
        """The call to `target`: its model name and limits, with `body` (default: the
        client's) serialised once per attempt."""
        model = target.upstream_model(self.model)
        payload = {**(self.body if body is None else body), "model": model}
        return UpstreamRequest(
            path=self.path,
            body=json.dumps(payload, ensure_ascii=False).encode(),
            model=model,
            stream=self.stream,
            timeouts=route.timeouts_for(self.overrides, target),
            request_id=self.request_id,
            dialect=self.dialect,
            headers=self.headers,
        )


class ChainObserver(Protocol):
    """What the chain reports as it goes (the server records it: metrics and the log line)."""

    def attempt_started(self, target: Target) -> None:
        """A call to `target` begins."""

    def attempt_failed(self, target: Target, error: GatewayError) -> None:
        """The call to `target` failed before it answered."""

    def failing_over(self, target: Target, reason: str) -> None:
        """The request leaves `target` for the next one; `reason` is an error code."""


class Chain:
    """Runs one request over one route's targets; use once."""

    def __init__(self, route: Route, template: CallTemplate, observer: ChainObserver) -> None:
        self.route = route
        self.template = template
        self._observer = observer

    async def run(self, ctx: Context, attempt: Attempt[T], *, keep: bool = False) -> tuple[
        Target, T
    ]:
        """The first answer of the route's targets, with the target that gave it.

        With `keep`, the answering target's slot stays taken: the caller gives it back
        (`target.slots.release()`) when its use of the answer is over.
        """
        targets = self.route.targets
        for index, target in enumerate(targets):
            last = index == len(targets) - 1
            if not target.slots.acquire():
                if not last:
                    self._observer.failing_over(target, GatewayOverloaded.code)
                continue
            try:
                self._observer.attempt_started(target)
                value = await attempt(target, self.template.for_target(self.route, target))
            except GatewayError as error:
                target.slots.release()
                self._observer.attempt_failed(target, error)
                raise
            except BaseException:
                target.slots.release()
                raise
            if not keep:
                target.slots.release()
            return target, value
        raise GatewayOverloaded(
            "every target of this model is at its limit of concurrent requests", retry_after="1"
        )

    async def stream(
        self, ctx: Context, open_stream: OpenStream
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """The events of the first target whose stream yields an event, read by read."""
        target, (upstream, first) = await self.run(
            ctx, functools.partial(_first_events, open_stream), keep=True
        )
        try:
            yield first
            async for events in upstream:
                yield events
        finally:
            await upstream.aclose()
            target.slots.release()


async def _first_events(
    open_stream: OpenStream, target: Target, call: UpstreamRequest
) -> tuple[ContextAwareStream[list[SSEEvent]], list[SSEEvent]]:
    """Open `target`'s stream and wait for its first events (a failed stream closes itself)."""
    upstream = open_stream(target, call)
    try:
        first = await upstream.__anext__()
    except StopAsyncIteration:
        raise UpstreamTruncated() from None
    return upstream, first
