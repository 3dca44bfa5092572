"""The `StateStore` contract, run against every store through the `make_store` factory.

Admission: leases counted until released (once), the gateway-wide limit (503), each key's
concurrency and requests per minute (429), each refusal with its `Retry-After` and taking
nothing. Backends: one state per name, slots refused when full and given back once, the
circuit opened by consecutive failures, skipped (`CircuitOpen`) until its cooldown, one probe,
the verdicts that close or reopen it, the last resort through an open circuit, every
transition reported to the watcher. Response owners: remembered, replaced, forgotten, expired
after their TTL, the oldest dropped past the bound.

Every store kind of `STORES` runs the same tests: a factory takes the gateway-wide
`max_streams`, the owners' bounds and the clock the test moves. `redis` is a `RedisStore` on a
real `redis-server` (`tests.support.redis_server`, one per session), each test under a key
prefix of its own; its stores are closed after the test.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import pytest

from gateway.errors import GatewayOverloaded, KeyConcurrencyLimited, KeyRateLimited
from gateway.state import (
    Backend,
    CircuitChange,
    CircuitOpen,
    CircuitPolicy,
    CircuitState,
    KeyLimits,
    MemoryStore,
    ResponseOwner,
    StateStore,
)
from gateway.state.redis_store import RedisStore, redis_client
from tests.support.redis_server import RedisServer, redis_server_or_skip

CLOSED, HALF_OPEN, OPEN = CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN
COOLDOWN = 10.0
POLICY = CircuitPolicy(failures=3, cooldown=COOLDOWN)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StoreFactory(Protocol):
    """Makes a fresh store of one kind: `max_streams` overall, the owners of at most
    `max_responses` response ids for `response_ttl` seconds, time from `clock`."""

    def __call__(
        self,
        *,
        max_streams: int,
        max_responses: int,
        response_ttl: float,
        clock: Callable[[], float],
    ) -> StateStore: ...


class MakeStore(Protocol):
    """The `make_store` fixture: a `StoreFactory` whose arguments default to 100 and the
    test's clock."""

    def __call__(
        self,
        *,
        max_streams: int = ...,
        max_responses: int = ...,
        response_ttl: float = ...,
        clock: Callable[[], float] = ...,
    ) -> StateStore: ...


def memory_store(
    *, max_streams: int, max_responses: int, response_ttl: float, clock: Callable[[], float]
) -> StateStore:
    return MemoryStore(
        max_streams=max_streams,
        max_responses=max_responses,
        response_ttl=response_ttl,
        clock=clock,
    )


class RedisStores:
    """Makes `RedisStore`s on one Redis, each under a prefix of its own; closes them all."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisStore] = []

    def __call__(
        self,
        *,
        max_streams: int,
        max_responses: int,
        response_ttl: float,
        clock: Callable[[], float],
    ) -> StateStore:
        store = RedisStore(
            redis_client(self.url, timeout=2.0),  # generous: a loaded CI machine is no outage
            max_streams=max_streams,
            max_responses=max_responses,
            response_ttl=response_ttl,
            timeout=2.0,
            prefix=f"contract-{next(_PREFIXES)}:",
            clock=clock,
        )
        self.made.append(store)
        return store


_PREFIXES = itertools.count()
#: The kinds of store; `redis` is made by the `RedisStores` of the session's server.
STORES: dict[str, StoreFactory | None] = {"memory": memory_store, "redis": None}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_or_skip()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(STORES))
async def make_store(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[MakeStore]:
    """A factory of fresh stores of one kind, on the test's clock."""
    redis_stores: RedisStores | None = None
    factory = STORES[request.param]
    if factory is None:
        server: RedisServer = request.getfixturevalue("redis_server")
        factory = redis_stores = RedisStores(server.url)

    def make(
        *,
        max_streams: int = 100,
        max_responses: int = 1000,
        response_ttl: float = 3600.0,
        clock: Callable[[], float] = clock,
    ) -> StateStore:
        return factory(
            max_streams=max_streams,
            max_responses=max_responses,
            response_ttl=response_ttl,
            clock=clock,
        )

    yield make
    for store in redis_stores.made if redis_stores else []:
        await store.aclose()


@pytest.fixture
def store(make_store: MakeStore, clock: Clock) -> StateStore:
    return make_store(max_streams=100, clock=clock)


def backend(store: StateStore, max_streams: int | None = None, name: str = "up/m") -> Backend:
    return store.backend(name, max_streams=max_streams, circuit=POLICY)


async def fail(subject: Backend, times: int) -> None:
    for _ in range(times):
        lease = await subject.acquire()
        lease.release()
        lease.failed()


# --- admission ---------------------------------------------------------------------------------


async def test_a_lease_counts_in_flight_until_released_once(store: StateStore) -> None:
    leases = [await store.admit(None), await store.admit(KeyLimits("k", max_streams=5))]
    assert store.in_flight == 2

    leases[0].release()
    leases[0].release()  # idempotent: the place is not given back twice

    assert store.in_flight == 1
    leases[1].release()
    assert store.in_flight == 0


async def test_the_gateway_wide_limit_refuses_with_503_and_retry_after(
    make_store: MakeStore,
) -> None:
    store = make_store(max_streams=2)
    held = [await store.admit(None), await store.admit(KeyLimits("unlimited"))]

    with pytest.raises(GatewayOverloaded) as refused:
        await store.admit(None)

    assert (refused.value.http_status, refused.value.retry_after) == (503, "1")
    held[0].release()
    await store.admit(KeyLimits("unlimited"))


async def test_a_keys_concurrency_is_its_own(store: StateStore) -> None:
    one, two = KeyLimits("one", max_streams=1), KeyLimits("two", max_streams=1)
    lease = await store.admit(one)

    with pytest.raises(KeyConcurrencyLimited) as refused:
        await store.admit(one)
    await store.admit(two)
    lease.release()
    lease.release()

    assert (refused.value.http_status, refused.value.retry_after) == (429, "1")
    await store.admit(one)
    with pytest.raises(KeyConcurrencyLimited):
        await store.admit(one)


async def test_a_key_may_burst_its_minute_then_goes_at_the_steady_rate(
    store: StateStore, clock: Clock
) -> None:
    key = KeyLimits("c", requests_per_minute=6)  # one every 10 s
    for _ in range(6):
        await store.admit(key)

    with pytest.raises(KeyRateLimited) as refused:
        await store.admit(key)
    clock.now += 9.0
    with pytest.raises(KeyRateLimited) as again:
        await store.admit(key)
    clock.now += 1.0
    await store.admit(key)

    assert (refused.value.http_status, refused.value.retry_after) == (429, "10")
    assert again.value.retry_after == "1"
    assert store.in_flight == 7


async def test_a_refused_request_takes_no_token_and_no_place(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(max_streams=1, clock=clock)
    key = KeyLimits("c", max_streams=5, requests_per_minute=2)
    held = await store.admit(key)

    for _ in range(5):
        with pytest.raises(GatewayOverloaded):
            await store.admit(key)  # refused overall: its token is not spent
    held.release()

    await store.admit(key)  # the second token is still there
    assert store.in_flight == 1


async def test_a_key_over_its_tokens_per_minute_waits_until_its_budget_refills(
    store: StateStore, clock: Clock
) -> None:
    key = KeyLimits("t", tokens_per_minute=600)  # ten a second
    lease = await store.admit(key)
    lease.charge(590)
    lease.release()
    await store.admit(key)  # ten tokens left: admitted; it is charged after it ends
    store_leases = [await store.admit(key)]
    store_leases[0].charge(20)  # ten below zero

    with pytest.raises(KeyRateLimited) as refused:
        await store.admit(key)
    clock.now += 1.0
    with pytest.raises(KeyRateLimited) as again:
        await store.admit(key)
    clock.now += 0.15
    await store.admit(key)

    assert (refused.value.http_status, refused.value.retry_after) == (429, "2")  # 1.1 s
    assert again.value.retry_after == "1"
    assert "600 tokens per minute" in str(refused.value)


async def test_tokens_are_charged_to_their_key_alone_and_a_key_without_the_limit_is_free(
    store: StateStore, clock: Clock
) -> None:
    spender = KeyLimits("spender", tokens_per_minute=100)
    other = KeyLimits("other", tokens_per_minute=100)
    free = KeyLimits("free", requests_per_minute=1000)
    (await store.admit(spender)).charge(5000)
    lease = await store.admit(free)
    lease.charge(1_000_000)

    with pytest.raises(KeyRateLimited):
        await store.admit(spender)
    await store.admit(other)
    await store.admit(free)
    clock.now += 60.0  # a minute refills a hundred of the 4 900 owed
    with pytest.raises(KeyRateLimited) as refused:
        await store.admit(spender)
    assert refused.value.retry_after == str(4801 * 60 // 100 + 1)


async def test_a_refusal_by_tokens_takes_no_request_and_no_place(
    make_store: MakeStore, clock: Clock
) -> None:
    store = make_store(max_streams=100, clock=clock)
    key = KeyLimits("c", max_streams=1, requests_per_minute=2, tokens_per_minute=6000)
    lease = await store.admit(key)
    lease.charge(6100)
    lease.release()

    for _ in range(3):
        with pytest.raises(KeyRateLimited):
            await store.admit(key)
    clock.now += 1.1  # the budget is back above one token: 6000 - 6100 + 110

    held = await store.admit(key)  # the second request token and the one place were kept
    assert held.rate is not None
    assert held.rate.remaining == 0
    assert store.in_flight == 1


# --- backends: slots ---------------------------------------------------------------------------


async def test_one_name_is_one_backend_whose_first_limits_hold(store: StateStore) -> None:
    first = backend(store, max_streams=1)
    again = store.backend("up/m", max_streams=5, circuit=CircuitPolicy(failures=1))
    other = backend(store, max_streams=1, name="up/other")

    lease = await first.acquire()

    assert first.name == again.name == "up/m"
    with pytest.raises(GatewayOverloaded):
        await again.acquire()  # the same slots, the first limit
    await other.acquire()
    lease.release()
    await again.acquire()


async def test_a_full_backend_refuses_and_a_slot_is_given_back_once(store: StateStore) -> None:
    subject = backend(store, max_streams=2)
    one, two = await subject.acquire(), await subject.acquire()

    with pytest.raises(GatewayOverloaded) as refused:
        await subject.acquire()
    one.release()
    one.release()  # idempotent
    three = await subject.acquire()

    assert refused.value.http_status == 503
    with pytest.raises(GatewayOverloaded):
        await subject.acquire()
    two.release()
    three.release()


async def test_a_backend_without_a_limit_takes_every_call(store: StateStore) -> None:
    subject = backend(store)
    leases = [await subject.acquire() for _ in range(1000)]
    for lease in leases:
        lease.release()
        lease.succeeded()
    assert subject.circuit_state is CLOSED


# --- backends: circuit -------------------------------------------------------------------------


async def test_consecutive_failures_open_the_circuit_and_a_success_resets_the_count(
    store: StateStore,
) -> None:
    subject = backend(store)
    await fail(subject, 2)
    lease = await subject.acquire()
    lease.succeeded()  # the slot given back later: the verdict does not wait for it
    lease.release()
    await fail(subject, 2)
    assert subject.circuit_state is CLOSED

    await fail(subject, 1)

    assert subject.circuit_state is OPEN
    with pytest.raises(CircuitOpen) as refused:
        await subject.acquire()
    assert (refused.value.backend, refused.value.retry_after) == ("up/m", COOLDOWN)


async def test_an_open_circuit_refuses_taking_no_slot(store: StateStore) -> None:
    subject = backend(store, max_streams=1)
    await fail(subject, 3)

    for _ in range(3):
        with pytest.raises(CircuitOpen):
            await subject.acquire()

    lease = await subject.acquire(last_resort=True)  # the one slot is still free
    with pytest.raises(GatewayOverloaded):
        await subject.acquire(last_resort=True)
    lease.release()


async def test_a_last_resort_call_through_an_open_circuit_still_reports_its_verdict(
    store: StateStore,
) -> None:
    subject = backend(store)
    await fail(subject, 3)

    lease = await subject.acquire(last_resort=True)
    lease.succeeded()
    lease.release()

    assert subject.circuit_state is CLOSED  # the backend answered


async def test_after_the_cooldown_one_probe_goes_through_and_its_answer_closes_it(
    store: StateStore, clock: Clock
) -> None:
    subject = backend(store)
    await fail(subject, 3)
    clock.now += COOLDOWN - 0.1
    with pytest.raises(CircuitOpen):
        await subject.acquire()
    clock.now += 0.1

    probe = await subject.acquire()

    assert subject.circuit_state is HALF_OPEN
    with pytest.raises(CircuitOpen):
        await subject.acquire()  # one probe at a time
    probe.answered()  # a stream's first event: the answer began
    assert subject.circuit_state is CLOSED
    await subject.acquire()
    probe.release()
    probe.succeeded()
    assert subject.circuit_state is CLOSED


async def test_a_failed_probe_opens_the_circuit_for_another_cooldown(
    store: StateStore, clock: Clock
) -> None:
    subject = backend(store)
    await fail(subject, 3)
    clock.now += COOLDOWN
    probe = await subject.acquire()

    probe.release()
    probe.failed()

    assert subject.circuit_state is OPEN
    with pytest.raises(CircuitOpen) as refused:
        await subject.acquire()
    assert refused.value.retry_after == COOLDOWN
    clock.now += COOLDOWN
    await subject.acquire()


async def test_a_probe_without_a_verdict_lets_the_next_call_probe(
    store: StateStore, clock: Clock
) -> None:
    subject = backend(store)
    await fail(subject, 3)
    clock.now += COOLDOWN
    probe = await subject.acquire()
    with pytest.raises(CircuitOpen):
        await subject.acquire()

    probe.release()
    probe.abandoned()  # e.g. the probe's client left

    assert subject.circuit_state is HALF_OPEN
    await subject.acquire()


async def test_a_full_half_open_backend_gives_its_probe_back(
    store: StateStore, clock: Clock
) -> None:
    subject = backend(store, max_streams=1)
    await fail(subject, 3)
    held = await subject.acquire(last_resort=True)  # the slot, without the probe
    clock.now += COOLDOWN

    with pytest.raises(GatewayOverloaded):
        await subject.acquire()  # the probe was due, but no slot: nothing kept
    held.release()  # its slot only: its verdict is still to come

    probe = await subject.acquire()
    held.abandoned()
    probe.succeeded()
    probe.release()
    assert subject.circuit_state is CLOSED


async def test_zero_failures_never_opens(store: StateStore) -> None:
    subject = store.backend("up/m", max_streams=None, circuit=CircuitPolicy(failures=0))
    await fail(subject, 100)
    assert subject.circuit_state is CLOSED


async def test_the_watcher_hears_every_transition_of_every_backend(
    store: StateStore, clock: Clock
) -> None:
    heard: list[CircuitChange] = []
    store.watch(heard.append)
    subject = backend(store)
    other = store.backend("up/other", max_streams=None, circuit=CircuitPolicy(failures=1))

    await fail(subject, 3)
    await fail(other, 1)
    clock.now += COOLDOWN
    probe = await subject.acquire()
    probe.answered()
    probe.succeeded()
    probe.release()

    assert heard == [
        CircuitChange("up/m", OPEN, 3),
        CircuitChange("up/other", OPEN, 1),
        CircuitChange("up/m", HALF_OPEN, 3),
        CircuitChange("up/m", CLOSED, 3),  # the answer began; its end resets the count
    ]


async def test_a_later_watcher_replaces_the_earlier(store: StateStore) -> None:
    first: list[CircuitChange] = []
    second: list[CircuitChange] = []
    store.watch(first.append)
    store.watch(second.append)

    await fail(backend(store), 3)

    assert (first, second) == ([], [CircuitChange("up/m", OPEN, 3)])


# --- response owners ------------------------------------------------------------------------

EAST = ResponseOwner("east", "route-a", "alice")
WEST = ResponseOwner("west", "route-b", None)


async def test_a_remembered_owner_is_found_and_an_unknown_id_is_none(store: StateStore) -> None:
    await store.owners.remember("resp_1", EAST)
    assert await store.owners.owner("resp_1") == EAST
    assert await store.owners.owner("resp_2") is None


async def test_remembering_an_id_again_replaces_its_owner(store: StateStore) -> None:
    await store.owners.remember("resp_1", EAST)
    await store.owners.remember("resp_1", WEST)
    assert await store.owners.owner("resp_1") == WEST


async def test_a_forgotten_id_has_no_owner_and_forgetting_twice_is_harmless(
    store: StateStore,
) -> None:
    await store.owners.remember("resp_1", EAST)
    await store.owners.forget("resp_1")
    await store.owners.forget("resp_1")
    assert await store.owners.owner("resp_1") is None


async def test_an_owner_expires_after_its_ttl(make_store: MakeStore, clock: Clock) -> None:
    store = make_store(response_ttl=60.0)
    await store.owners.remember("resp_old", EAST)
    clock.now += 30
    await store.owners.remember("resp_new", WEST)
    clock.now += 29.9
    assert await store.owners.owner("resp_old") == EAST
    clock.now += 0.2
    assert await store.owners.owner("resp_old") is None
    assert await store.owners.owner("resp_new") == WEST
    clock.now += 30
    assert await store.owners.owner("resp_new") is None


async def test_past_the_bound_the_oldest_owners_are_forgotten_first(
    make_store: MakeStore,
) -> None:
    store = make_store(max_responses=3)
    for n in range(5):
        await store.owners.remember(f"resp_{n}", EAST)
    found = [await store.owners.owner(f"resp_{n}") for n in range(5)]
    assert found == [None, None, EAST, EAST, EAST]


async def test_remembering_an_id_again_makes_it_the_newest(make_store: MakeStore) -> None:
    store = make_store(max_responses=2)
    await store.owners.remember("resp_a", EAST)
    await store.owners.remember("resp_b", EAST)
    await store.owners.remember("resp_a", WEST)  # a later turn of the same id's owner
    await store.owners.remember("resp_c", EAST)
    assert await store.owners.owner("resp_b") is None
    assert await store.owners.owner("resp_a") == WEST
