"""`TrafficMix`: many chaos requests at once through one real gateway, each checked on its own.

The gateway (`chaos_settings`) routes one glob per API to the fake upstream and one to an
address that refuses connections; every request asks for a model name of its own, by which
the fake's `Dispatcher` finds the request's plan. A request's check (`TrafficMix._one`) waits,
with hang guards only, for its exchange, for its upstream call to end, and for the gateway's
line about it; then the wire and the record are checked (`tests.chaos.invariants`), and that the
upstream got the request exactly once and - when the call was held - saw its connection closed
by the gateway. Only a first-byte or total deadline that passed before the fake had even read
the request (a loaded machine) may leave the upstream without it. `check_totals` then compares
the gateway's metrics with the tally of lines and with the requests sent. Nothing per request
is kept once checked, so memory stays flat.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.chaos.apis import ANTHROPIC, OPENAI
from tests.chaos.client import Exchange, narrow_session, play
from tests.chaos.invariants import check_exchange, check_record
from tests.chaos.log_tally import LogTally
from tests.chaos.plans import MAX_REQUEST_BYTES, ClientMove, RequestPlan, draw
from tests.chaos.upstream_plan import MAX_EVENT_BYTES, MAX_RESPONSE_BYTES
from tests.conftest import UPSTREAM_KEY, RunningGateway
from tests.observability.scrape import total, value
from tests.support import fake_upstream as fake
from tests.support.fake_upstream import Behaviour, FakeUpstream, UpstreamCall

__all__ = ["Dispatcher", "MixReport", "TrafficMix", "chaos_settings", "check_totals", "dead_port"]

HEARTBEAT_SECONDS = 0.15
_GUARD = 60.0  # seconds: only catches hangs (megabytes to a slow reader on a loaded machine)
_CLIENT_KEEPALIVE = 5.0  # seconds a client keeps an idle connection to the gateway
_CALL_GUARD = 10.0  # seconds an upstream call may take to end after its exchange
#: Deadlines that may pass before the fake upstream has read the request (under load).
_BEFORE_UPSTREAM = frozenset({"first_byte_timeout", "deadline_exceeded"})
_CHAOS_MODELS = (OPENAI.route.rstrip("*"), ANTHROPIC.route.rstrip("*"))
_KEEP = 50  # violations kept for the report (all are counted)


@contextmanager
def dead_port() -> Iterator[int]:
    """A local port that refuses connections (bound, never listening) while in use."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def chaos_settings(upstream: FakeUpstream, refused_port: int, **extra: Any) -> dict[str, Any]:
    """`start_gateway(None, **chaos_settings(...))`: each API's chaos route to the fake, its
    dead route to `refused_port`; short heartbeats; small limits the mix can reach."""
    root = f"http://127.0.0.1:{upstream.port}"
    dead = f"http://127.0.0.1:{refused_port}"
    upstreams = {
        "fake": {"kind": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
        "claude": {"kind": "anthropic", "base_url": root, "api_key": UPSTREAM_KEY},
        "dead-openai": {"kind": "openai", "base_url": f"{dead}/v1"},
        "dead-claude": {"kind": "anthropic", "base_url": dead},
    }
    routes = [
        {"model": OPENAI.route, "targets": [{"upstream": "fake"}]},
        {"model": ANTHROPIC.route, "targets": [{"upstream": "claude"}]},
        {"model": OPENAI.dead_route, "targets": [{"upstream": "dead-openai"}]},
        {"model": ANTHROPIC.dead_route, "targets": [{"upstream": "dead-claude"}]},
    ]
    limits = {
        "max_event_bytes": MAX_EVENT_BYTES,
        "max_request_bytes": MAX_REQUEST_BYTES,
        "max_response_bytes": MAX_RESPONSE_BYTES,
    }
    for name, settings in extra.pop("upstream_settings", {}).items():
        upstreams[name].update(settings)
    return {
        "upstreams": upstreams,
        "routes": routes,
        "heartbeat": HEARTBEAT_SECONDS,
        "limits": limits,
        **extra,
    }


@dataclass(slots=True)
class _Pending:
    behaviour: Behaviour
    started: asyncio.Event = field(default_factory=asyncio.Event)
    call: UpstreamCall | None = None
    calls: int = 0


class Dispatcher:
    """The fake upstream's default behaviour: each request's plan, found by its model name.

    A call for a request already checked is `late` (its gateway gave up before the fake had
    read it; answered 500, nobody reads it); a call for no request of the mix is `unexpected`.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.late = 0
        self.unexpected: list[str] = []
        self._pending: dict[str, _Pending] = {}

    def register(self, plan: RequestPlan) -> _Pending:
        assert plan.upstream.behaviour is not None
        pending = self._pending[plan.model] = _Pending(plan.upstream.behaviour)
        return pending

    def forget(self, plan: RequestPlan) -> None:
        self._pending.pop(plan.model, None)

    async def __call__(self, request: web.Request, call: UpstreamCall) -> web.StreamResponse:
        self.calls += 1
        pending = self._pending.get(call.model)
        if pending is None:
            if call.model.startswith(_CHAOS_MODELS):
                self.late += 1
            else:
                self.unexpected.append(call.model)
            return await fake.status(500)(request, call)
        pending.calls += 1
        pending.call = call
        pending.started.set()
        return await pending.behaviour(request, call)


@dataclass(slots=True)
class MixReport:
    seed: int
    sent: int = 0
    dead: int = 0  # requests routed to the refusing upstream
    unreached: int = 0  # requests whose deadline passed before the fake had read them
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    moves: Counter[str] = field(default_factory=Counter)

    def add(self, plan: RequestPlan, problems: list[str]) -> None:
        self.sent += 1
        self.dead += plan.upstream.dead
        self.faults[plan.upstream.fault] += 1
        self.moves[plan.client.move.value] += 1
        self.violation_count += len(problems)
        for problem in problems:
            if len(self.violations) < _KEEP:
                self.violations.append(f"{plan.describe()}: {problem}")

    def failure(self, what: str) -> str:
        return (
            f"{what} - {self.violation_count} violation(s) in {self.sent} requests of seed "
            f"{self.seed} (reproduce: SSE_GATEWAY_CHAOS_SEED={self.seed}):\n  "
            + "\n  ".join(self.violations)
        )


class TrafficMix:
    """Runs the requests of one seed against a gateway in front of `upstream`."""

    def __init__(
        self, gw: RunningGateway, upstream: FakeUpstream, tally: LogTally, seed: int
    ) -> None:
        self.gw = gw
        self.upstream = upstream
        self.tally = tally
        self.dispatcher = Dispatcher()
        self.report = MixReport(seed)
        upstream.default = self.dispatcher

    async def run(self, indices: Iterable[int], concurrency: int) -> MixReport:
        """Send the requests of `indices`, `concurrency` at a time; check each."""
        queue = iter(indices)
        # Idle connections are dropped well before the gateway's head deadline (15 s) closes
        # them: aiohttp's default (also 15 s) races it, and a request sent on a connection
        # the server is closing fails before the gateway sees it.
        connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=_CLIENT_KEEPALIVE)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            narrow_session(concurrency, _CLIENT_KEEPALIVE) as narrow,
            asyncio.TaskGroup() as tg,
        ):
            for _ in range(concurrency):
                tg.create_task(self._worker(session, narrow, queue))
        return self.report

    async def _worker(
        self, session: aiohttp.ClientSession, narrow: aiohttp.ClientSession, queue: Iterator[int]
    ) -> None:
        for index in queue:
            plan = draw(self.report.seed, index)
            await self._one(narrow if plan.client.move is ClientMove.READ_SLOWLY else session, plan)
            if self.report.sent % 100 == 0:
                self.upstream.forget_calls()

    async def _one(self, session: aiohttp.ClientSession, plan: RequestPlan) -> None:
        pending = self.dispatcher.register(plan) if plan.upstream.reaches_upstream else None
        line = self.tally.expect(plan.request_id)
        problems: list[str] = []
        try:
            async with asyncio.timeout(_GUARD):
                started = pending.started if pending is not None else asyncio.Event()
                got = await play(session, self.gw.url, plan, started)
        except TimeoutError:
            got = Exchange(left=True)
            problems.append(f"the exchange hung for {_GUARD}s")
        problems += check_exchange(plan, got)
        record: dict[str, Any] = {}
        try:
            async with asyncio.timeout(_GUARD):
                record = await line
        except TimeoutError:
            problems.append("the gateway wrote no finished line")
        else:
            problems += check_record(plan, got, record)
        self.tally.forget(plan.request_id)
        if pending is not None:
            problems += await self._check_call(plan, pending, record)
            self.dispatcher.forget(plan)
        self.report.add(plan, problems)

    async def _check_call(
        self, plan: RequestPlan, pending: _Pending, record: dict[str, Any]
    ) -> list[str]:
        """The upstream got the request once, its call ended, and a held call was closed by
        the gateway (only the gateway can end it)."""
        call = pending.call
        if call is None:
            if record.get("code") in _BEFORE_UPSTREAM and not record.get("events"):
                self.report.unreached += 1  # the deadline passed before the fake read it
                return []
            return ["the upstream never got the request"]
        try:
            await call.wait_finished(timeout=_CALL_GUARD)
        except AssertionError:
            return [f"the upstream call still runs {_CALL_GUARD}s after the exchange ended"]
        problems = []
        if pending.calls != 1:
            problems.append(f"the upstream got the request {pending.calls} times")
        if plan.upstream.holds and not call.closed_by_peer.is_set():
            problems.append("the gateway did not close the held upstream connection")
        return problems


def check_totals(gw: RunningGateway, tally: LogTally, mix: TrafficMix) -> list[str]:
    """The gateway's metrics against its lines and the requests sent."""
    report, problems = mix.report, []
    sent = report.sent

    def agree(what: str, metric: float, expected: float) -> None:
        if metric != expected:
            problems.append(f"{what}: the metrics say {metric:g}, expected {expected:g}")

    agree("requests", total(gw, "gateway_requests_total"), sent)
    agree("finished lines", tally.finished, sent)
    for (endpoint, route, outcome), count in tally.requests.items():
        labels = {"endpoint": endpoint, "route": route, "outcome": outcome}
        agree(f"requests {labels}", value(gw, "gateway_requests_total", **labels), count)
    agree("errors", total(gw, "gateway_errors_total"), sum(tally.errors.values()))
    for (category, code), count in tally.errors.items():
        agree(
            f"errors {category}/{code}",
            value(gw, "gateway_errors_total", category=category, code=code),
            count,
        )
    agree("disconnects", total(gw, "gateway_client_disconnects_total"), tally.phases.total())
    for phase, count in tally.phases.items():
        agree(
            f"disconnects {phase}",
            value(gw, "gateway_client_disconnects_total", phase=phase),
            count,
        )
    agree("active streams", total(gw, "gateway_active_streams"), 0)
    agree("relayed bytes", total(gw, "gateway_relayed_bytes_total"), tally.bytes)
    agree("durations", total(gw, "gateway_stream_duration_seconds_count"), sent)
    reached = sum(
        total(gw, "gateway_upstream_attempts_total", upstream=u) for u in ("fake", "claude")
    )
    calls = mix.dispatcher.calls - mix.dispatcher.late + report.unreached
    agree("upstream attempts", reached, calls)
    dead = sum(
        total(gw, "gateway_upstream_attempts_total", upstream=u)
        for u in ("dead-openai", "dead-claude")
    )
    agree("attempts on the refusing upstream", dead, report.dead)
    if mix.dispatcher.unexpected:
        problems.append(f"upstream calls for no plan: {mix.dispatcher.unexpected[:5]}")
    if tally.bad_count:
        problems.append(f"{tally.bad_count} bad log line(s), e.g. {tally.bad[:3]}")
    return problems
