"""Fakes for unit tests of `Chain`: providers that are never dialled, scripted calls and streams,
and an observer that writes down what the chain reports.

A `FakeProvider` holds the script of its calls: `outcomes` for `Chain.run()` (an answer, an
error to raise, or a `Gate` to stop at) and `streams` for `Chain.stream()` (`FakeStream`s). The
attempts below pop them in order and record each `UpstreamRequest` the chain built. A
`FakeStream` frames its bytes with a real `SSEDecoder` and is read through a real
`ContextAwareStream`, as the relay's upstream streams are: the chain sees exactly what it sees
in production, minus the socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from gateway.apis import ANTHROPIC_MESSAGES, OPENAI_CHAT, Api
from gateway.errors import GatewayError, UpstreamTruncated
from gateway.providers import Provider, UpstreamRequest, UpstreamResponse
from gateway.routing import OpenStream, Route, Router, Target, build_routes
from gateway.settings import GatewaySettings
from gateway.state import Circuit, CircuitPolicy, MemoryBackend, MemoryStore
from gateway.streaming import Context, ContextAwareStream, SSEDecoder, SSEEvent

__all__ = [
    "CeilingRandom",
    "Clock",
    "FakeProvider",
    "FakeStream",
    "Gate",
    "Outcome",
    "Recorder",
    "attempt",
    "build_route",
    "fake",
    "memory",
    "opener",
    "stream_of",
    "with_clock",
]


class Gate:
    """A point a fake call or stream stops at: `reached` is set there; it waits for `opened`."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def passage(self) -> None:
        self.reached.set()
        await self.opened.wait()


#: What one `run()` call of a fake provider does: answer this string, raise this error, or stop
#: at this gate (then do the next outcome).
Outcome: TypeAlias = str | GatewayError | Gate
#: One step of a fake stream: a read of these bytes, this error raised, or a gate to stop at.
Step: TypeAlias = bytes | GatewayError | Gate


@dataclass(eq=False)
class FakeStream:
    """One scripted upstream answer, framed as the relay frames its upstream's body."""

    steps: tuple[Step, ...]
    started: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def reads(self) -> AsyncGenerator[list[SSEEvent], None]:
        """The events of each read that completes any; a cut mid-event raises, like the relay."""
        self.started.set()
        decoder = SSEDecoder(keep_dataless=False)
        try:
            for step in self.steps:
                if isinstance(step, GatewayError):
                    raise step
                if isinstance(step, Gate):
                    await step.passage()
                    continue
                events = decoder.feed(step)
                if events:
                    yield events
            events = decoder.finish()
            if events:
                yield events
            if decoder.has_partial_event:
                raise UpstreamTruncated("the upstream ended the stream in the middle of an event")
        finally:
            self.closed.set()


def stream_of(*steps: Step | Iterable[bytes]) -> FakeStream:
    """A `FakeStream` of `steps`; a list of frames is spread out as one read per frame."""
    flat: list[Step] = []
    for step in steps:
        if isinstance(step, bytes | GatewayError | Gate):
            flat.append(step)
        else:
            flat.extend(step)
    return FakeStream(tuple(flat))


class FakeProvider(Provider):
    """An upstream the tests' attempts answer for; `open` is never called."""

    def __init__(self, name: str, api: Api) -> None:
        super().__init__(name, api)
        self.outcomes: list[Outcome] = []
        self.streams: list[FakeStream] = []
        self.calls: list[UpstreamRequest] = []

    async def open(self, ctx: Context, request: UpstreamRequest) -> UpstreamResponse:
        raise AssertionError("the chain's unit tests never dial an upstream")

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON body of every call made to this provider, in order."""
        return [json.loads(call.body) for call in self.calls]


def fake(target: Target) -> FakeProvider:
    provider = target.provider
    assert isinstance(provider, FakeProvider)
    return provider


def memory(target: Target) -> MemoryBackend:
    """`target`'s backend state, as the memory store keeps it (its slots, its circuit)."""
    backend = target.backend
    assert isinstance(backend, MemoryBackend)
    return backend


async def attempt(target: Target, call: UpstreamRequest) -> str:
    """A `run()` attempt: the target's next outcome (its request reported sent first)."""
    provider = fake(target)
    provider.calls.append(call)
    if call.on_sent is not None:
        call.on_sent()
    outcome = provider.outcomes.pop(0)
    while isinstance(outcome, Gate):
        await outcome.passage()
        outcome = provider.outcomes.pop(0)
    if isinstance(outcome, GatewayError):
        raise outcome
    return outcome


def opener(ctx: Context) -> OpenStream:
    """A `stream()` opener: each call reads the target's next `FakeStream` under `ctx` and the
    call's own phase limits, as the relay's `_open_stream` does."""

    def open_stream(target: Target, call: UpstreamRequest) -> ContextAwareStream[list[SSEEvent]]:
        provider = fake(target)
        provider.calls.append(call)
        return ContextAwareStream(ctx, provider.streams.pop(0).reads(), call.timeouts)

    return open_stream


class Recorder:
    """A `ChainObserver` that writes down what it hears, as (what, provider name, ...)."""

    def __init__(self) -> None:
        self.heard: list[tuple[Any, ...]] = []
        self.delays: list[float] = []
        self.retry_heard = asyncio.Event()

    def attempt_started(self, target: Target) -> None:
        self.heard.append(("started", target.provider.name))

    def attempt_failed(self, target: Target, error: GatewayError) -> None:
        self.heard.append(("failed", target.provider.name, error.code))

    def retrying(self, target: Target, error: GatewayError, delay: float) -> None:
        self.heard.append(("retrying", target.provider.name, error.code))
        self.delays.append(delay)
        self.retry_heard.set()

    def failing_over(self, target: Target, reason: str) -> None:
        self.heard.append(("failing_over", target.provider.name, reason))

    def continuing(self, target: Target, result: str, error: GatewayError) -> None:
        self.heard.append(("continuing", target.provider.name, result, error.code))

    def request_sent(self) -> None:
        self.heard.append(("sent",))

    def story(self) -> list[tuple[Any, ...]]:
        """What was heard, but for `request_sent` (one after each start of a `run()` call)."""
        return [entry for entry in self.heard if entry[0] != "sent"]

    def of(self, what: str) -> list[tuple[Any, ...]]:
        return [entry for entry in self.heard if entry[0] == what]


class CeilingRandom(random.Random):
    """A `Random` whose backoff draw is always the top of its range: waits a test can name."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_KINDS: dict[str, dict[str, Any]] = {
    "openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"},
    "anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"},
}
#: The API of each upstream kind.
APIS: dict[str, Api] = {"openai": OPENAI_CHAT, "anthropic": ANTHROPIC_MESSAGES}


def build_route(*targets: dict[str, Any] | str, dialect: str = "openai", **route: Any) -> Route:
    """The route `m` over `targets` (an upstream name, or a target's settings), each upstream a
    `FakeProvider` of its name, built by the real `build_routes` from real settings over a
    `MemoryStore`. `circuit` in `route` is the gateway's global section; the rest is the
    route's own."""
    circuit = route.pop("circuit", {})
    configs = [{"upstream": t} if isinstance(t, str) else t for t in targets]
    names = dict.fromkeys(config["upstream"] for config in configs)
    settings = GatewaySettings(
        upstreams=dict.fromkeys(names, _KINDS[dialect]),
        routes=[{"model": "m", "targets": configs, **route}],
        circuit=circuit,
    )
    providers = {name: FakeProvider(name, APIS[dialect]) for name in names}
    store = MemoryStore(max_streams=settings.limits.max_streams)
    return Router(build_routes(settings, providers, store)).resolve("m")


def with_clock(route: Route, clock: Clock, policy: CircuitPolicy) -> Route:
    """`route` with every target's circuit on `clock` (the store's run on the real one); the
    targets keep their slots."""
    targets = tuple(
        dataclasses.replace(
            target,
            backend=MemoryBackend(memory(target).slots, Circuit(target.name, policy, clock=clock)),
        )
        for target in route.targets
    )
    return dataclasses.replace(route, targets=targets)
