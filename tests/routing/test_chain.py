"""`Chain`: the decisions one request's walk down its route makes - retry, failover, circuits,
slots, the first event as the answer, continuation of a cut stream, cancellation.

Real `Chain`s over real `Route`s (the `Router` builds them from real settings), fake providers
that are never dialled, and fake attempts whose streams are real `ContextAwareStream`s over
bytes framed by a real `SSEDecoder` (`tests.routing.fake_provider`). No sockets: what is
checked is the chain's own bookkeeping and what its observer hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from gateway.apis.openai_chat import OpenAISplice
from gateway.errors import (
    ClientDisconnected,
    ConnectionReset,
    DeadlineExceeded,
    FirstByteTimeout,
    GatewayError,
    GatewayOverloaded,
    IdleTimeout,
    InvalidRequest,
    RateLimited,
    ServerShutdown,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from gateway.routing import CallTemplate, Chain, Route
from gateway.state import CircuitPolicy, CircuitState
from gateway.streaming import Context, SSEEvent
from tests.routing.fake_provider import (
    APIS,
    CeilingRandom,
    Clock,
    FakeProvider,
    Gate,
    Recorder,
    attempt,
    build_route,
    fake,
    memory,
    opener,
    stream_of,
    with_clock,
)
from tests.support import anthropic_wire as claude
from tests.support.openai_wire import DONE, chunk_event, openai_chunks

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
#: Retries that wait what `CeilingRandom` draws: 1 ms, then 2 ms.
FAST: dict[str, Any] = {"attempts": 3, "backoff_initial": 0.001, "backoff_max": 0.004}
ONCE: dict[str, Any] = {"attempts": 1}
COOLDOWN = 10.0

#: An OpenAI answer cut after two deltas, and the continuation that finishes it.
FIRST = openai_chunks(["The ", "quick "], finish_reason=None, id="chatcmpl-first")
SECOND = [*openai_chunks([" brown", " fox"], id="chatcmpl-second", model="other"), DONE]
WHOLE = [*openai_chunks(["Hello", " world"]), DONE]


def make_chain(
    route: Route, *, stream: bool = False, dialect: str = "openai"
) -> tuple[Chain, Recorder]:
    body = {"model": "m", "messages": MESSAGES, "stream": stream}
    path = "/messages" if dialect == "anthropic" else "/chat/completions"
    template = CallTemplate(path=path, body=body, model="m", stream=stream, api=APIS[dialect])
    recorder = Recorder()
    return Chain(route, template, recorder, rng=CeilingRandom()), recorder


def providers(route: Route) -> list[FakeProvider]:
    return [fake(target) for target in route.targets]


def open_circuit(route: Route, index: int) -> None:
    circuit = memory(route.targets[index]).circuit
    while circuit.state is not CircuitState.OPEN:
        assert circuit.admit()
        circuit.failed()


async def read(
    stream: AsyncGenerator[list[SSEEvent], None],
) -> tuple[list[SSEEvent], GatewayError | None]:
    """Every event `stream` yields, and the `GatewayError` that ended it (None: a clean end)."""
    events: list[SSEEvent] = []
    async with contextlib.aclosing(stream):
        try:
            async for batch in stream:
                events.extend(batch)
        except GatewayError as error:
            return events, error
    return events, None


def raw(events: list[SSEEvent]) -> bytes:
    return b"".join(event.raw for event in events)


def chunks(events: list[SSEEvent]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if e.data is not None and e.data != "[DONE]"]


def openai_text(events: list[SSEEvent]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks(events)
        for choice in chunk["choices"]
    )


# --- run(): retry and failover -----------------------------------------------------------------


async def test_first_answer_wins_and_no_further_target_is_called() -> None:
    route = build_route("a", "b")
    a, b = providers(route)
    a.outcomes.append("from a")
    chain, heard = make_chain(route)

    target, value = await chain.run(Context(), attempt)

    assert (target, value) == (route.targets[0], "from a")
    assert b.calls == []
    assert heard.heard == [("started", "a"), ("sent",)]  # on_sent is the observer's
    assert memory(route.targets[0]).slots.in_use == 0


async def test_each_call_names_its_targets_model_and_limits() -> None:
    route = build_route(
        {"upstream": "a", "model": "a-model", "timeouts": {"first_byte": 7}}, "b", retry=ONCE
    )
    a, b = providers(route)
    a.outcomes.append(UpstreamAuthFailed())
    b.outcomes.append("from b")
    chain, _ = make_chain(route)

    await chain.run(Context(), attempt)

    assert (a.calls[0].model, a.calls[0].timeouts.first_byte) == ("a-model", 7)
    assert (b.calls[0].model, b.calls[0].timeouts.first_byte) == ("m", 60)  # the client's
    assert [body["model"] for body in a.bodies() + b.bodies()] == ["a-model", "m"]
    assert b.bodies()[0]["messages"] == MESSAGES


async def test_retryable_error_is_retried_on_the_same_target_with_growing_backoff() -> None:
    route = build_route("a", "b", retry=FAST)
    a, b = providers(route)
    a.outcomes += [UpstreamServerError(), ConnectionReset(), "third time"]
    chain, heard = make_chain(route)

    target, value = await chain.run(Context(), attempt)

    assert (target.provider, value) == (a, "third time")
    assert heard.story() == [
        ("started", "a"),
        ("failed", "a", "upstream_status_5xx"),
        ("retrying", "a", "upstream_status_5xx"),
        ("started", "a"),
        ("failed", "a", "connection_reset"),
        ("retrying", "a", "connection_reset"),
        ("started", "a"),
    ]
    assert heard.delays == [0.001, 0.002]  # full jitter's ceiling doubles per retry
    assert b.calls == []


async def test_target_whose_attempts_are_spent_fails_over_to_the_next() -> None:
    route = build_route("a", "b", retry={**FAST, "attempts": 2})
    a, b = providers(route)
    a.outcomes += [UpstreamServerError(), UpstreamServerError()]
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, value = await chain.run(Context(), attempt)

    assert (target.provider, value) == (b, "from b")
    assert heard.story() == [
        ("started", "a"),
        ("failed", "a", "upstream_status_5xx"),
        ("retrying", "a", "upstream_status_5xx"),
        ("started", "a"),
        ("failed", "a", "upstream_status_5xx"),
        ("failing_over", "a", "upstream_status_5xx"),
        ("started", "b"),
    ]


@pytest.mark.parametrize(
    "error",
    [
        UpstreamAuthFailed(),
        UpstreamRejected(),
        FirstByteTimeout(),  # retryable, but a silent target is not asked again
        GatewayOverloaded(),  # the target's own pool is full
        UpstreamProtocolError(),
    ],
    ids=lambda error: error.code,
)
async def test_target_fault_that_a_retry_cannot_mend_fails_over_at_once(
    error: GatewayError,
) -> None:
    route = build_route("a", "b", retry=FAST)
    a, b = providers(route)
    a.outcomes.append(error)
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, _ = await chain.run(Context(), attempt)

    assert target.provider is b
    assert heard.story() == [
        ("started", "a"),
        ("failed", "a", error.code),
        ("failing_over", "a", type(error).code),
        ("started", "b"),
    ]
    assert memory(route.targets[0]).circuit.failures == 1  # the target's fault counts


@pytest.mark.parametrize(
    "error",
    [
        UpstreamBadRequest(upstream_code="invalid_value"),  # 400: every target would refuse it
        InvalidRequest(),
        DeadlineExceeded(),  # the request's own deadline
        ClientDisconnected(),
        ServerShutdown(),
    ],
    ids=lambda error: error.code,
)
async def test_error_ending_the_request_neither_retries_nor_fails_over_nor_hurts_target(
    error: GatewayError,
) -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, "b", retry=FAST)
    a, b = providers(route)
    a.outcomes.append(error)
    chain, heard = make_chain(route)

    with pytest.raises(type(error)) as raised:
        await chain.run(Context(), attempt)

    assert raised.value is error
    assert heard.story() == [("started", "a"), ("failed", "a", error.code)]
    assert b.calls == []
    circuit = memory(route.targets[0]).circuit
    assert (circuit.failures, circuit.state) == (0, CircuitState.CLOSED)
    assert memory(route.targets[0]).slots.in_use == 0


async def test_failover_on_code_moves_a_refused_request_to_the_next_target() -> None:
    route = build_route("a", "b", failover_on=["context_length_exceeded"], retry=FAST)
    a, b = providers(route)
    a.outcomes.append(UpstreamBadRequest(upstream_code="context_length_exceeded"))
    b.outcomes.append("larger context")
    chain, heard = make_chain(route)

    target, value = await chain.run(Context(), attempt)

    assert (target.provider, value) == (b, "larger context")
    assert ("failing_over", "a", "upstream_bad_request") in heard.story()
    assert memory(route.targets[0]).circuit.failures == 0  # still the request's fault, not a's


async def test_propagate_code_stops_even_a_retryable_error() -> None:
    route = build_route("a", "b", propagate=["upstream_status_5xx"], retry=FAST)
    a, b = providers(route)
    error = UpstreamServerError()
    a.outcomes.append(error)
    chain, heard = make_chain(route)

    with pytest.raises(UpstreamServerError) as raised:
        await chain.run(Context(), attempt)

    assert raised.value is error
    assert heard.of("retrying") == heard.of("failing_over") == []
    assert b.calls == []


@pytest.mark.parametrize(
    ("error", "wait"),
    [
        (UpstreamRateLimited(), 0.005),  # retry_delay, as a provider sets it
        (RateLimited(retry_after="0"), 0.0),  # only the header's text
    ],
    ids=["retry_delay", "retry_after"],
)
async def test_upstreams_retry_hint_is_waited_as_given_instead_of_the_backoff(
    error: RateLimited, wait: float
) -> None:
    if wait:
        error.retry_delay = wait
    route = build_route("a", retry=FAST)
    (a,) = providers(route)
    a.outcomes += [error, "after the hint"]
    chain, heard = make_chain(route)

    _, value = await chain.run(Context(), attempt)

    assert value == "after the hint"
    assert heard.delays == [wait]  # not the 0.001 the backoff would have drawn


async def test_retry_hint_beyond_retry_after_max_fails_over_without_waiting() -> None:
    route = build_route("a", "b", retry={**FAST, "retry_after_max": 1})
    a, b = providers(route)
    error = UpstreamRateLimited(retry_after="2")
    error.retry_delay = 2.0
    a.outcomes.append(error)
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, _ = await chain.run(Context(), attempt)

    assert target.provider is b
    assert heard.of("retrying") == []
    assert heard.of("failing_over") == [("failing_over", "a", "upstream_rate_limited")]


async def test_retry_that_would_outlast_the_requests_deadline_is_not_waited_for() -> None:
    route = build_route("a", "b", retry=FAST)
    a, b = providers(route)
    error = UpstreamServerError()
    error.retry_delay = 10.0  # within retry_after_max (20), beyond the request's 5 s
    a.outcomes.append(error)
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, _ = await chain.run(Context.with_timeout(5), attempt)

    assert target.provider is b
    assert heard.of("retrying") == []


async def test_last_error_is_raised_when_every_target_failed() -> None:
    route = build_route("a", "b", retry=ONCE)
    a, b = providers(route)
    last = ConnectionReset()
    a.outcomes.append(UpstreamServerError())
    b.outcomes.append(last)
    chain, heard = make_chain(route)

    with pytest.raises(ConnectionReset) as raised:
        await chain.run(Context(), attempt)

    assert raised.value is last
    assert heard.story() == [
        ("started", "a"),
        ("failed", "a", "upstream_status_5xx"),
        ("failing_over", "a", "upstream_status_5xx"),
        ("started", "b"),
        ("failed", "b", "connection_reset"),  # no failover past the last target
    ]


async def test_context_ending_during_the_backoff_raises_its_cause_and_calls_no_more() -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, "b", retry={"retry_after_max": 60})
    a, b = providers(route)
    error = UpstreamServerError()
    error.retry_delay = 30.0
    a.outcomes.append(error)
    chain, heard = make_chain(route)
    ctx = Context()
    task = asyncio.create_task(chain.run(ctx, attempt))
    await heard.retry_heard.wait()

    left = ClientDisconnected(phase="backoff")
    ctx.cancel(left)

    with pytest.raises(ClientDisconnected) as raised:
        await task
    assert raised.value is left
    assert (len(a.calls), b.calls) == (1, [])
    assert memory(route.targets[0]).slots.in_use == 0


# --- run(): circuits ---------------------------------------------------------------------------


async def test_target_whose_circuit_is_open_is_skipped_without_a_call() -> None:
    route = build_route("a", "b")
    a, b = providers(route)
    open_circuit(route, 0)
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, _ = await chain.run(Context(), attempt)

    assert target.provider is b
    assert a.calls == []
    assert heard.story() == [("failing_over", "a", "circuit_open"), ("started", "b")]


async def test_each_failed_call_counts_and_a_circuit_opened_by_retries_ends_them() -> None:
    route = build_route("a", "b", retry=FAST, circuit={"failures": 2})
    a, b = providers(route)
    a.outcomes += [UpstreamServerError(), UpstreamServerError(), "never asked"]
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, _ = await chain.run(Context(), attempt)

    assert target.provider is b
    assert len(a.calls) == 2  # the third attempt found the circuit open
    assert memory(route.targets[0]).circuit.state is CircuitState.OPEN
    assert heard.story()[-2:] == [("failing_over", "a", "circuit_open"), ("started", "b")]


async def test_when_every_circuit_is_open_the_targets_are_called_anyway_in_order() -> None:
    route = build_route("a", "b", retry=ONCE)
    a, b = providers(route)
    open_circuit(route, 0)
    open_circuit(route, 1)
    a.outcomes.append(UpstreamAuthFailed())
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, value = await chain.run(Context(), attempt)

    assert (target.provider, value) == (b, "from b")
    assert heard.story() == [
        ("failing_over", "a", "circuit_open"),
        ("started", "a"),
        ("failed", "a", "upstream_auth_failed"),
        ("started", "b"),
    ]
    assert memory(route.targets[1]).circuit.state is CircuitState.CLOSED  # it answered


async def test_an_open_circuit_is_no_last_resort_once_another_targets_call_failed() -> None:
    route = build_route("a", "b", retry=ONCE)
    a, b = providers(route)
    open_circuit(route, 0)
    error = UpstreamAuthFailed()
    b.outcomes.append(error)
    chain, _ = make_chain(route)

    with pytest.raises(UpstreamAuthFailed) as raised:
        await chain.run(Context(), attempt)

    assert raised.value is error
    assert a.calls == []


async def test_after_its_cooldown_one_probe_is_let_through_and_its_answer_closes_it() -> None:
    clock = Clock()
    route = with_clock(build_route("a", "b"), clock, CircuitPolicy(1, COOLDOWN))
    a, b = providers(route)
    open_circuit(route, 0)
    a.outcomes.append("probe answered")
    b.outcomes.append("from b")

    target, _ = await make_chain(route)[0].run(Context(), attempt)
    assert (target.provider, a.calls) == (b, [])  # still cooling down

    clock.now += COOLDOWN
    target, value = await make_chain(route)[0].run(Context(), attempt)

    assert (target.provider, value) == (a, "probe answered")
    assert memory(route.targets[0]).circuit.state is CircuitState.CLOSED


async def test_while_a_probe_is_out_other_requests_skip_its_target() -> None:
    clock = Clock()
    route = with_clock(build_route("a", "b"), clock, CircuitPolicy(1, COOLDOWN))
    a, b = providers(route)
    open_circuit(route, 0)
    clock.now += COOLDOWN
    gate = Gate()
    a.outcomes += [gate, "probe answered"]
    b.outcomes.append("from b")
    probe = asyncio.create_task(make_chain(route)[0].run(Context(), attempt))
    await gate.reached.wait()
    circuit = memory(route.targets[0]).circuit
    assert circuit.state is CircuitState.HALF_OPEN

    other, heard = make_chain(route)
    target, _ = await other.run(Context(), attempt)
    assert target.provider is b
    assert heard.story()[0] == ("failing_over", "a", "circuit_open")

    gate.opened.set()
    target, _ = await probe
    assert target.provider is a
    assert memory(route.targets[0]).circuit.state is CircuitState.CLOSED


async def test_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    clock = Clock()
    route = with_clock(build_route("a", "b", retry=ONCE), clock, CircuitPolicy(1, COOLDOWN))
    a, b = providers(route)
    open_circuit(route, 0)
    clock.now += COOLDOWN
    a.outcomes.append(ConnectionReset())
    b.outcomes.append("from b")

    target, _ = await make_chain(route)[0].run(Context(), attempt)

    assert target.provider is b
    circuit = memory(route.targets[0]).circuit
    assert (circuit.state, circuit.retry_after()) == (CircuitState.OPEN, COOLDOWN)


async def test_cancelled_probe_lets_the_next_request_probe() -> None:
    clock = Clock()
    route = with_clock(build_route("a", "b"), clock, CircuitPolicy(1, COOLDOWN))
    a, _ = providers(route)
    open_circuit(route, 0)
    clock.now += COOLDOWN
    gate = Gate()
    a.outcomes += [gate, "second probe answered"]
    probe = asyncio.create_task(make_chain(route)[0].run(Context(), attempt))
    await gate.reached.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    target, value = await make_chain(route)[0].run(Context(), attempt)

    assert (target.provider, value) == (a, "second probe answered")
    assert memory(route.targets[0]).circuit.state is CircuitState.CLOSED


# --- run(): slots ------------------------------------------------------------------------------


async def test_full_target_is_skipped_without_a_call() -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, "b")
    a, b = providers(route)
    assert memory(route.targets[0]).slots.acquire()  # another request's
    b.outcomes.append("from b")
    chain, heard = make_chain(route)

    target, _ = await chain.run(Context(), attempt)

    assert (target.provider, a.calls) == (b, [])
    assert heard.story() == [("failing_over", "a", "gateway_overloaded"), ("started", "b")]
    assert memory(route.targets[0]).slots.in_use == 1  # the other request's slot, untouched


async def test_route_whose_every_target_is_full_is_refused_as_overloaded() -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, {"upstream": "b", "max_streams": 1})
    a, b = providers(route)
    for target in route.targets:
        assert memory(target).slots.acquire()
    chain, _ = make_chain(route)

    with pytest.raises(GatewayOverloaded) as raised:
        await chain.run(Context(), attempt)

    assert raised.value.retry_after == "1"
    assert a.calls == b.calls == []


async def test_full_half_open_target_gives_its_probe_back_for_a_later_request() -> None:
    clock = Clock()
    route = with_clock(
        build_route({"upstream": "a", "max_streams": 1}, "b"), clock, CircuitPolicy(1, COOLDOWN)
    )
    a, b = providers(route)
    open_circuit(route, 0)
    clock.now += COOLDOWN
    slots = memory(route.targets[0]).slots
    assert slots.acquire()
    b.outcomes.append("from b")
    target, _ = await make_chain(route)[0].run(Context(), attempt)
    assert target.provider is b
    slots.release()

    a.outcomes.append("probe answered")
    target, _ = await make_chain(route)[0].run(Context(), attempt)

    assert target.provider is a


async def test_every_slot_is_given_back_after_a_failure_and_a_success() -> None:
    route = build_route(
        {"upstream": "a", "max_streams": 1}, {"upstream": "b", "max_streams": 1}, retry=FAST
    )
    a, b = providers(route)
    a.outcomes += [ConnectionReset(), ConnectionReset(), UpstreamAuthFailed()]
    b.outcomes.append("from b")
    chain, _ = make_chain(route)

    await chain.run(Context(), attempt)

    assert [memory(target).slots.in_use for target in route.targets] == [0, 0]
    assert chain.answering is None  # nothing kept: nothing for finish() to report


async def test_kept_answer_holds_its_slot_until_the_caller_gives_it_back() -> None:
    route = build_route({"upstream": "a", "max_streams": 1})
    (a,) = providers(route)
    a.outcomes.append("being read")
    chain, _ = make_chain(route)

    target, _ = await chain.run(Context(), attempt, keep=True)

    assert (chain.answering, memory(target).slots.in_use) == (target, 1)
    chain.finish(None)
    assert chain.answering is None
    assert chain.kept is not None
    chain.kept.release()
    chain.kept.release()  # idempotent: the slot is not given back twice
    assert memory(target).slots.in_use == 0


@pytest.mark.parametrize(
    ("error", "failures"),
    [
        (None, 0),  # an answer that ended well resets the count
        (ConnectionReset(), 2),  # a cut is the target's fault
        (UpstreamBadRequest(), 1),
        (ClientDisconnected(), 1),
    ],
    ids=["ended_well", "cut", "bad_request", "client_left"],
)
async def test_finish_reports_how_the_answer_ended_to_its_targets_circuit_once(
    error: GatewayError | None, failures: int
) -> None:
    route = build_route("a")
    (a,) = providers(route)
    circuit = memory(route.targets[0]).circuit
    assert circuit.admit()
    circuit.failed()  # an earlier request's failure
    a.outcomes.append("being read")
    chain, _ = make_chain(route)
    target, _ = await chain.run(Context(), attempt, keep=True)
    assert circuit.failures == 1  # the answer began: its end is still to be told

    chain.finish(error)
    chain.finish(ConnectionReset())  # once only

    assert circuit.failures == failures
    assert chain.kept is not None
    chain.kept.release()
    assert memory(target).slots.in_use == 0


# --- stream(): the first event is the answer ---------------------------------------------------


async def test_stream_relays_the_answering_upstreams_events_byte_exact() -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, "b")
    a, b = providers(route)
    a.streams.append(stream_of(WHOLE))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is None
    assert raw(events) == b"".join(WHOLE)
    assert (b.calls, heard.story()) == ([], [("started", "a")])
    assert chain.answering is route.targets[0]  # the relay's finish() is still to come
    assert chain.template.body == {}  # no call follows: the client's body is let go
    assert memory(route.targets[0]).slots.in_use == 0
    assert a.calls[0].stream


async def test_stream_failing_before_its_first_event_is_retried_then_failed_over() -> None:
    route = build_route("a", "b", retry={**FAST, "attempts": 2})
    a, b = providers(route)
    reset, empty = stream_of(ConnectionReset()), stream_of()
    a.streams += [reset, empty]
    b.streams.append(stream_of(WHOLE))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert (error, raw(events)) == (None, b"".join(WHOLE))
    assert heard.story() == [
        ("started", "a"),
        ("failed", "a", "connection_reset"),
        ("retrying", "a", "connection_reset"),
        ("started", "a"),
        ("failed", "a", "upstream_truncated"),  # ended before its first event
        ("failing_over", "a", "upstream_truncated"),
        ("started", "b"),
    ]
    assert reset.closed.is_set()
    assert empty.closed.is_set()


async def test_stream_failing_after_its_first_event_ends_without_another_call() -> None:
    route = build_route("a", "b", retry=FAST)  # no target takes prefill: no continuation
    a, b = providers(route)
    cut = ConnectionReset()
    a.streams.append(stream_of(FIRST, cut))
    b.streams.append(stream_of(WHOLE))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is cut
    assert raw(events) == b"".join(FIRST)
    assert heard.story() == [("started", "a")]
    assert b.calls == []
    circuit = memory(route.targets[0]).circuit
    assert circuit.failures == 0
    chain.finish(error)  # as the relay reports the cut
    assert circuit.failures == 1


async def test_first_event_closes_a_half_open_probe_before_the_stream_ends() -> None:
    clock = Clock()
    route = with_clock(build_route("a", "b"), clock, CircuitPolicy(1, COOLDOWN))
    a, _ = providers(route)
    open_circuit(route, 0)
    clock.now += COOLDOWN
    gate = Gate()
    a.streams.append(stream_of(WHOLE[0], gate, WHOLE[1:]))
    chain, _ = make_chain(route, stream=True)
    ctx = Context()
    stream = chain.stream(ctx, opener(ctx))

    async with contextlib.aclosing(stream):
        first = await anext(stream)
        assert raw(first) == WHOLE[0]
        assert memory(route.targets[0]).circuit.state is CircuitState.CLOSED
        gate.opened.set()
        rest = [event async for batch in stream for event in batch]

    assert raw(first + rest) == b"".join(WHOLE)


@pytest.mark.parametrize("prefill", [False, True], ids=["plain", "continuable"])
async def test_stream_closed_early_closes_its_upstream_and_gives_back_its_slot(
    prefill: bool,
) -> None:
    route = build_route({"upstream": "a", "max_streams": 1, "prefill": prefill})
    (a,) = providers(route)
    upstream = stream_of(FIRST, SECOND)
    a.streams.append(upstream)
    chain, _ = make_chain(route, stream=True)
    ctx = Context()
    stream = chain.stream(ctx, opener(ctx))

    assert raw(await anext(stream)) == FIRST[0]
    assert memory(route.targets[0]).slots.in_use == 1  # held while the answer is read
    await stream.aclose()  # the relay is done with it (the client left, or the end)

    assert upstream.closed.is_set()
    assert memory(route.targets[0]).slots.in_use == 0


# --- stream(): continuation of a stream cut mid-answer -----------------------------------------


async def test_cut_stream_is_continued_on_its_own_target_and_spliced_into_one_answer() -> None:
    route = build_route({"upstream": "a", "prefill": True, "max_streams": 1})
    (a,) = providers(route)
    cut = ConnectionReset()
    a.streams += [stream_of(FIRST, cut), stream_of(SECOND)]
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is None
    assert raw(events[:2]) == b"".join(FIRST)  # relayed as they came
    assert events[-1].raw == DONE  # unchanged by the splice: byte-exact
    assert openai_text(events) == "The quick brown fox"  # the prefill's space not repeated
    spliced = chunks(events)[2:]
    assert {chunk["id"] for chunk in spliced} == {"chatcmpl-first"}
    assert all("role" not in chunk["choices"][0]["delta"] for chunk in spliced)
    assert all(event.raw.count(b"\n") == 2 for event in events)  # one data line each
    continuation = a.bodies()[1]
    assert continuation["messages"] == [*MESSAGES, {"role": "assistant", "content": "The quick"}]
    assert continuation["continue_final_message"] is True
    assert heard.story() == [
        ("started", "a"),
        ("started", "a"),
        ("continuing", "a", "ok", "connection_reset"),
    ]
    assert memory(route.targets[0]).circuit.failures == 1  # the cut counted against a
    assert chain.answering is route.targets[0]
    assert memory(route.targets[0]).slots.in_use == 0


async def test_continuation_asks_the_next_targets_then_those_before_it_and_its_own_last() -> None:
    targets = [{"upstream": name, "prefill": True} for name in "abc"]
    route = build_route(*targets, continuations=3, retry=ONCE)
    a, b, c = providers(route)
    a.streams += [stream_of(UpstreamAuthFailed()), stream_of(ConnectionReset())]
    b.streams += [stream_of(FIRST, ConnectionReset()), stream_of(SECOND)]
    c.streams.append(stream_of(UpstreamBadRequest()))  # refuses the prefill
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is None
    assert openai_text(events) == "The quick brown fox"
    assert heard.of("continuing") == [
        ("continuing", "c", "rejected", "connection_reset"),
        ("continuing", "a", "failed", "connection_reset"),
        ("continuing", "b", "ok", "connection_reset"),  # the one that cut it: asked last
    ]
    assert chain.answering is route.targets[1]


async def test_a_stalled_stream_is_continued_elsewhere_before_its_own_target_is_asked() -> None:
    targets = [{"upstream": name, "prefill": True} for name in "ab"]
    route = build_route(*targets, continuations=2)
    a, b = providers(route)
    a.streams.append(stream_of(FIRST, IdleTimeout(limit=1.0)))
    b.streams.append(stream_of(SECOND))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is None
    assert openai_text(events) == "The quick brown fox"
    assert heard.of("continuing") == [("continuing", "b", "ok", "idle_timeout")]
    assert len(a.calls) == 1  # the stalled target was not asked again


async def test_continuation_is_never_asked_of_a_target_without_prefill() -> None:
    route = build_route("a", {"upstream": "b", "prefill": True})
    a, b = providers(route)
    a.streams.append(stream_of(FIRST, ConnectionReset()))
    b.streams.append(stream_of(SECOND))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, _ = await read(chain.stream(ctx, opener(ctx)))

    assert openai_text(events) == "The quick brown fox"
    assert len(a.calls) == 1
    assert heard.of("continuing") == [("continuing", "b", "ok", "connection_reset")]


async def test_continuation_skips_a_target_whose_circuit_the_cut_just_opened() -> None:
    targets = [{"upstream": name, "prefill": True} for name in "ab"]
    route = build_route(*targets, circuit={"failures": 1})
    a, b = providers(route)
    a.streams.append(stream_of(FIRST, ConnectionReset()))
    b.streams.append(stream_of(SECOND))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, _ = await read(chain.stream(ctx, opener(ctx)))

    assert openai_text(events) == "The quick brown fox"
    assert memory(route.targets[0]).circuit.state is CircuitState.OPEN
    assert (len(a.calls), heard.of("continuing")) == (
        1,
        [("continuing", "b", "ok", "connection_reset")],
    )


async def test_when_every_continuation_fails_the_stream_ends_with_the_cut_it_continued() -> None:
    targets = [{"upstream": name, "prefill": True, "max_streams": 1} for name in "ab"]
    route = build_route(*targets)
    a, b = providers(route)
    cut = ConnectionReset()
    a.streams += [stream_of(FIRST, cut), stream_of(UpstreamServerError())]
    b.streams.append(stream_of(InvalidRequest()))
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is cut
    assert raw(events) == b"".join(FIRST)
    assert heard.of("continuing") == [  # each capable target asked once per cut, its own last
        ("continuing", "b", "rejected", "connection_reset"),
        ("continuing", "a", "failed", "connection_reset"),
    ]
    assert [memory(target).slots.in_use for target in route.targets] == [0, 0]


async def test_answer_that_cannot_be_continued_by_prefill_ends_with_its_cut() -> None:
    route = build_route({"upstream": "a", "prefill": True})
    (a,) = providers(route)
    tool_call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    cut = ConnectionReset()
    first = chunk_event({"role": "assistant", "tool_calls": [tool_call]}, None, "m", "chatcmpl-1")
    a.streams += [stream_of(first, cut), stream_of(SECOND)]
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert (error, raw(events)) == (cut, first)
    assert heard.of("continuing") == [("continuing", "a", "unsound", "connection_reset")]
    assert len(a.calls) == 1


async def test_continuations_are_bounded_and_a_short_end_past_them_is_left_to_the_relay() -> None:
    route = build_route({"upstream": "a", "prefill": True}, continuations=1)
    (a,) = providers(route)
    again_short = openai_chunks([" brown"], finish_reason=None, id="chatcmpl-second")
    a.streams += [stream_of(FIRST), stream_of(again_short), stream_of(SECOND)]  # both end short
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is None  # ended short: the relay's tracker sees it was cut
    assert openai_text(events) == "The quick brown"
    assert heard.of("continuing") == [
        ("continuing", "a", "ok", "upstream_truncated"),
        ("continuing", "a", "exhausted", "upstream_truncated"),
    ]
    assert len(a.calls) == 2
    assert memory(route.targets[0]).circuit.failures == 2  # each cut counted, once
    assert chain.answering is None  # already reported: the relay's finish() adds nothing


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [(b"data: \xff\xfe\n\n", UpstreamProtocolError), (ServerShutdown(), ServerShutdown)],
    ids=["not_utf8", "server_shutdown"],
)
async def test_failure_a_continuation_cannot_mend_ends_the_stream_at_once(
    failure: bytes | GatewayError, error_type: type[GatewayError]
) -> None:
    route = build_route({"upstream": "a", "prefill": True})
    (a,) = providers(route)
    a.streams += [stream_of(FIRST, failure), stream_of(SECOND)]
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert isinstance(error, error_type)
    assert raw(events) == b"".join(FIRST)
    assert heard.of("continuing") == []
    assert len(a.calls) == 1


async def test_complete_answer_that_forgot_done_is_not_continued() -> None:
    route = build_route({"upstream": "a", "prefill": True})
    (a,) = providers(route)
    answer = openai_chunks(["Hi"])  # a finish_reason, no [DONE]
    a.streams += [stream_of(answer), stream_of(SECOND)]
    chain, heard = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert (error, raw(events)) == (None, b"".join(answer))
    assert heard.of("continuing") == []
    assert len(a.calls) == 1


async def test_anthropic_continuation_keeps_the_clients_message_and_text_block_open() -> None:
    route = build_route({"upstream": "a", "prefill": True}, dialect="anthropic")
    (a,) = providers(route)
    first = [claude.message_start(), claude.content_block_start(), claude.text_delta("The ")]
    second = claude.anthropic_events([" quick", " fox"], model="other")
    a.streams += [stream_of(first, ConnectionReset()), stream_of(second)]
    chain, heard = make_chain(route, stream=True, dialect="anthropic")
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is None
    kinds = [event.event for event in events]
    assert kinds.count("content_block_start") == 1
    # The continuation's message_start is passed on for its usage; the relay's tracker drops
    # it (tests/apis/test_dialects.py, tests/e2e/test_continuation.py).
    assert kinds.count("message_start") == 2
    assert raw(events[:3]) == b"".join(first)
    # " quick" lost the space the client already has; the rest pass byte-exact.
    assert json.loads(events[5].data or "")["delta"]["text"] == "quick"
    assert raw(events[3:5] + events[6:]) == second[0] + second[2] + b"".join(second[4:])
    assert a.bodies()[1]["messages"] == [*MESSAGES, {"role": "assistant", "content": "The"}]
    assert heard.of("continuing") == [("continuing", "a", "ok", "connection_reset")]


async def test_continuation_that_opens_no_text_block_ends_the_stream_with_the_cut() -> None:
    route = build_route({"upstream": "a", "prefill": True, "max_streams": 1}, dialect="anthropic")
    (a,) = providers(route)
    first = [claude.message_start(), claude.content_block_start(), claude.text_delta("The ")]
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    second = [
        claude.message_start(),
        claude.event({"type": "content_block_start", "index": 0, "content_block": tool_use}),
    ]
    cut = ConnectionReset()
    a.streams += [stream_of(first, cut), stream_of(second)]
    chain, _ = make_chain(route, stream=True, dialect="anthropic")
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert error is cut
    # Nothing of the continuation but its message_start, for its usage (the relay's tracker
    # drops it): the tool_use block it opened is not spliced in.
    assert raw(events) == b"".join(first) + second[0]
    assert memory(route.targets[0]).slots.in_use == 0


# --- cancellation ------------------------------------------------------------------------------


async def test_cancelling_run_during_a_call_propagates_and_gives_back_its_slot() -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, "b")
    a, b = providers(route)
    gate = Gate()
    a.outcomes.append(gate)
    chain, heard = make_chain(route)
    task = asyncio.create_task(chain.run(Context(), attempt))
    await gate.reached.wait()

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert (heard.story(), b.calls) == ([("started", "a")], [])
    assert memory(route.targets[0]).slots.in_use == 0
    assert memory(route.targets[0]).circuit.failures == 0


async def test_cancelling_run_during_the_backoff_propagates() -> None:
    route = build_route({"upstream": "a", "max_streams": 1}, "b", retry={"retry_after_max": 60})
    a, b = providers(route)
    error = UpstreamServerError()
    error.retry_delay = 30.0
    a.outcomes.append(error)
    chain, heard = make_chain(route)
    task = asyncio.create_task(chain.run(Context(), attempt))
    await heard.retry_heard.wait()

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert (len(a.calls), b.calls) == (1, [])
    assert memory(route.targets[0]).slots.in_use == 0


async def test_cancelling_a_stream_waiting_for_its_first_event_closes_the_upstream() -> None:
    route = build_route({"upstream": "a", "max_streams": 1, "prefill": True}, "b")
    a, b = providers(route)
    gate = Gate()
    upstream = stream_of(gate, FIRST)
    a.streams.append(upstream)
    chain, heard = make_chain(route, stream=True)
    ctx = Context()
    task = asyncio.create_task(read(chain.stream(ctx, opener(ctx))))
    await gate.reached.wait()

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.closed.is_set()
    assert (heard.story(), b.calls) == ([("started", "a")], [])
    assert memory(route.targets[0]).slots.in_use == 0


@pytest.mark.parametrize("prefill", [False, True], ids=["plain", "continuable"])
async def test_cancelling_a_stream_mid_answer_closes_its_upstream_and_frees_its_slot(
    prefill: bool,
) -> None:
    route = build_route({"upstream": "a", "max_streams": 1, "prefill": prefill})
    (a,) = providers(route)
    gate = Gate()
    upstream = stream_of(FIRST, gate, SECOND)
    a.streams += [upstream, stream_of(SECOND)]
    chain, heard = make_chain(route, stream=True)
    ctx = Context()
    task = asyncio.create_task(read(chain.stream(ctx, opener(ctx))))
    await gate.reached.wait()  # the first events are out; the next read waits

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.closed.is_set()
    assert memory(route.targets[0]).slots.in_use == 0
    assert heard.of("continuing") == []  # the client leaving is no cut to continue
    assert len(a.calls) == 1


# --- found wanting (fixed: each test failed before its fix) -----------------------------------

#: A chunk the OpenAI tracker forwards (valid JSON, `choices` not a list it reads): the splice
#: once raised TypeError on it (`for choice in chunk.get("choices") or ()`).
ODD_CHUNK = b'data: {"id":"chatcmpl-odd","object":"chat.completion.chunk","choices":5}\n\n'


async def test_first_events_the_splice_cannot_read_still_close_upstream_and_free_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Chain._spliced_stream` observed the first events before its try/finally: when that
    raised, the answering upstream was never closed and its slot never given back."""

    def unreadable(self: OpenAISplice, events: list[SSEEvent]) -> list[SSEEvent]:
        raise RuntimeError("the splice cannot read these events")

    monkeypatch.setattr(OpenAISplice, "observe", unreadable)
    route = build_route({"upstream": "a", "prefill": True, "max_streams": 1})
    (a,) = providers(route)
    upstream = stream_of(FIRST[0], DONE)
    a.streams.append(upstream)
    chain, _ = make_chain(route, stream=True)
    ctx = Context()

    with pytest.raises(RuntimeError, match="cannot read"):
        await read(chain.stream(ctx, opener(ctx)))

    assert upstream.closed.is_set()
    assert memory(route.targets[0]).slots.in_use == 0


async def test_chunk_with_unreadable_choices_is_relayed_on_a_continuable_route() -> None:
    route = build_route({"upstream": "a", "prefill": True})
    (a,) = providers(route)
    frames = [FIRST[0], ODD_CHUNK, *SECOND[-2:]]
    a.streams.append(stream_of(frames))
    chain, _ = make_chain(route, stream=True)
    ctx = Context()

    events, error = await read(chain.stream(ctx, opener(ctx)))

    assert (error, raw(events)) == (None, b"".join(frames))
