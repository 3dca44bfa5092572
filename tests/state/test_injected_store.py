"""A store given to `create_app(store=...)` is the one the gateway uses: admission, every
backend's slots and circuit, and the circuit gauge all go through it.

The store here wraps a `MemoryStore` and writes down every call made to it, to the leases it
hands out and to the backends it makes; real requests reach the app on a real socket, in front
of the fake upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from gateway.server import create_app, start_server
from gateway.server.app_state import STORE
from gateway.settings import GatewaySettings
from gateway.state import (
    AdmissionLease,
    Backend,
    CallLease,
    CircuitChange,
    CircuitPolicy,
    CircuitState,
    KeyLimits,
    Lease,
    MemoryStore,
    ResponseOwners,
    StateStore,
)
from tests.conftest import RunningGateway, gateway_settings
from tests.observability.scrape import value
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import DONE, FakeUpstream

KEY = "gw-key-for-the-recording-store"
MODEL = "m"
CHAT = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}

Log = list[tuple[Any, ...]]


class RecordedLease:
    """A lease of the inner store, each call written down as (what, whose)."""

    def __init__(self, log: Log, owner: str, inner: Lease) -> None:
        self._log, self._owner, self._inner = log, owner, inner
        self.released = asyncio.Event()

    def release(self) -> None:
        self._log.append(("release", self._owner))
        self._inner.release()
        self.released.set()


class RecordedAdmission(RecordedLease):
    def __init__(self, log: Log, owner: str, inner: AdmissionLease) -> None:
        super().__init__(log, owner, inner)
        self.rate = inner.rate
        self._admission = inner
        self.charged: list[int] = []

    def charge(self, tokens: int) -> None:
        self.charged.append(tokens)
        self._admission.charge(tokens)


class RecordedCall(RecordedLease):
    def __init__(self, log: Log, owner: str, inner: CallLease) -> None:
        super().__init__(log, owner, inner)
        self._call = inner

    def answered(self) -> None:
        self._log.append(("answered", self._owner))
        self._call.answered()

    def succeeded(self) -> None:
        self._log.append(("succeeded", self._owner))
        self._call.succeeded()

    def failed(self) -> None:
        self._log.append(("failed", self._owner))
        self._call.failed()

    def abandoned(self) -> None:
        self._log.append(("abandoned", self._owner))
        self._call.abandoned()


class RecordedBackend:
    def __init__(self, log: Log, inner: Backend) -> None:
        self._log, self._inner = log, inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def circuit_state(self) -> CircuitState:
        return self._inner.circuit_state

    async def acquire(self, *, last_resort: bool = False) -> CallLease:
        self._log.append(("acquire", self.name, last_resort))
        return RecordedCall(
            self._log, self.name, await self._inner.acquire(last_resort=last_resort)
        )


class RecordingStore:
    """A `StateStore` that delegates to `inner` and writes down what it is asked."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.log: Log = []
        self.admitted: list[RecordedLease] = []

    @property
    def in_flight(self) -> int:
        return self.inner.in_flight

    @property
    def owners(self) -> ResponseOwners:
        return self.inner.owners

    async def admit(self, key: KeyLimits | None) -> RecordedAdmission:
        self.log.append(("admit", key))
        lease = RecordedAdmission(self.log, "admission", await self.inner.admit(key))
        self.admitted.append(lease)
        return lease

    def backend(self, name: str, *, max_streams: int | None, circuit: CircuitPolicy) -> Backend:
        self.log.append(("backend", name, max_streams, circuit))
        return RecordedBackend(
            self.log, self.inner.backend(name, max_streams=max_streams, circuit=circuit)
        )

    def watch(self, on_change: Callable[[CircuitChange], None]) -> None:
        self.log.append(("watch",))
        self.inner.watch(on_change)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[GatewaySettings, StateStore], Any]]:
    runners = []

    async def start(settings: GatewaySettings, store: StateStore) -> RunningGateway:
        app = create_app(settings, store=store)
        runner, port = await start_server(app, "127.0.0.1", 0)
        runners.append(runner)
        return RunningGateway(url=f"http://127.0.0.1:{port}", app=app, settings=settings)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


async def test_a_request_is_admitted_and_served_through_the_injected_store(
    upstream: FakeUpstream, serve: Any, client: aiohttp.ClientSession
) -> None:
    settings = gateway_settings(
        upstream,
        (MODEL,),
        auth={"keys": [KEY], "max_streams_per_key": 2},
        routes=[{"model": MODEL, "targets": [{"upstream": "fake", "max_streams": 3}]}],
        circuit={"failures": 4, "cooldown": 7},
    )
    store = RecordingStore(MemoryStore(max_streams=settings.limits.max_streams))
    gw = await serve(settings, store)
    upstream.script(MODEL, fake.sse_stream())
    assert gw.app[STORE] is store
    built = list(store.log)
    del store.log[:]

    headers = {"Authorization": f"Bearer {KEY}"}
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers) as reply:
        assert reply.status == 200
        assert (await reply.read()).endswith(DONE)
    (admission,) = store.admitted
    await asyncio.wait_for(admission.released.wait(), 10)  # the handler's `finally`

    assert built == [("backend", "fake/*", 3, CircuitPolicy(4, 7)), ("watch",)]
    (key,) = (entry[1] for entry in store.log if entry[0] == "admit")
    assert isinstance(key, KeyLimits)
    assert (key.max_streams, key.requests_per_minute) == (2, None)
    assert key.name.startswith("key-")  # the key's id, never the key
    assert store.log == [
        ("admit", key),
        ("acquire", "fake/*", False),
        ("answered", "fake/*"),  # the first event
        ("release", "fake/*"),  # the stream is over: its slot is given back
        ("succeeded", "fake/*"),  # then how it ended
        ("release", "admission"),
    ]
    assert store.in_flight == 0


async def test_circuit_transitions_of_the_injected_store_reach_the_gauge(
    upstream: FakeUpstream, serve: Any, client: aiohttp.ClientSession
) -> None:
    settings = gateway_settings(upstream, (MODEL,), circuit={"failures": 1, "cooldown": 60})
    store = RecordingStore(MemoryStore(max_streams=settings.limits.max_streams))
    gw = await serve(settings, store)
    upstream.script(MODEL, fake.status(500))
    assert value(gw, "gateway_circuit_state", target="fake/*") == 0

    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT) as reply:
        assert reply.status == 502
    async with client.post(f"{gw.url}/v1/chat/completions", json=CHAT) as reply:
        assert reply.status == 502  # its circuit is open, but it is the last resort

    assert value(gw, "gateway_circuit_state", target="fake/*") == int(CircuitState.OPEN)
    acquired = [entry for entry in store.log if entry[0] == "acquire"]
    assert acquired == [
        ("acquire", "fake/*", False),
        ("acquire", "fake/*", False),  # refused: the circuit is open
        ("acquire", "fake/*", True),  # the last resort
    ]
    assert [entry for entry in store.log if entry[0] == "failed"] == [("failed", "fake/*")] * 2
