"""Scenario e: a client aborts its stream, and how long until the upstream sees the close.

Six cases, each its own table and issue-15 row (p99 within 0.5 ms of `direct`'s p99, the same
run), each interleaved over every target:

    streaming       the client aborts (FIN: close) right after the 5th event of a stream with
                    an event every 20 ms: the proxy has just written, its upstream read is
                    armed; targets alternate try by try
    streaming-rst   the same, the close as an RST (SO_LINGER 0, then close)
    idle            the stream is idle between events when the client aborts: one event a
                    second, the abort 0.2-0.5 s after the first event; a round opens one stream
                    per target and gives each target its own slot of that window (randomised
                    within the slot, the slots' order rotating), so no two aborts coincide
    idle-rst        the same, with an RST
    loaded          the streaming case (FIN) while `realistic_streams` other streams run on the
                    same target at scenario b's pace (an event every 20 ms each); each round
                    loads one target after the other
    all-at-once     `burst_streams` open streams (an event every 20 ms) of one target aborted in
                    the same loop iteration; each stream's time from its own abort to its
                    upstream close, p50/p99/max, and until the last close

The close is when the mock upstream's protocol is told (`bench.upstream`: `eof_received` for a
FIN, `connection_lost` for an RST), as an upstream server that watches its socket for EOF
would see it - not on its next write, which in the idle cases would measure the event interval.
Abort and close are both CLOCK_MONOTONIC, one host.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from bench.goals import check, per_variant
from bench.loadgen import Connection, StreamResult, fetch_json
from bench.protocol import CLOSES_PATH
from bench.scenarios import Bench, Result, added, cdf_points
from bench.stats import percentiles, rounded
from bench.trials import Target, open_all

__all__ = ["CASES", "disconnect"]

_ENDLESS = 1_000_000  # events of a stream the client will abort


class _Tally:
    """One case's aborts (rid -> target, abort time ns), errors by target, and the closes the
    upstream recorded (rid -> close time ns), gathered as they are read: reading them
    (`CLOSES_PATH`) makes the upstream forget them."""

    def __init__(self, bench: Bench) -> None:
        self._control = bench.control
        self.aborts: dict[int, tuple[str, int]] = {}
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.closes: dict[str, int] = {}

    def note(self, name: str, rid: int, result: StreamResult) -> None:
        """The outcome of a stream of target `name` the client meant to abort."""
        if result.aborted_ns is not None and result.error is None:
            self.aborts[rid] = (name, result.aborted_ns)
        else:
            self.errors[name].append(result.error or "not aborted")

    async def read(self) -> int:
        """Gather the closes recorded since the last read; the streams still running."""
        answer = await fetch_json(self._control, CLOSES_PATH)
        self.closes.update(answer["closes"])
        return int(answer["active"])

    async def until_idle(self) -> None:
        """Until the upstream has no stream running (the target closed them all), 60 s."""
        for _ in range(600):  # polls a remote count: no event to wait on
            if await self.read() == 0:
                return
            await asyncio.sleep(0.1)


async def _aborted_stream(target: Target, bench: Bench, tally: _Tally, *, reset: bool) -> None:
    """One stream of `target` aborted after `disconnect_after` events (an RST with `reset`)."""
    p = bench.params
    connection = await target.open()
    shape = target.stream(bench.shape(_ENDLESS, p.disconnect_delay))
    result = await connection.stream(shape, abort_after=p.disconnect_after, reset=reset)
    tally.note(target.name, shape.rid, result)


async def _streaming(bench: Bench, tally: _Tally, reset: bool) -> None:
    for index in range(bench.params.disconnect_tries):
        for target in bench.rotation(index):
            await _aborted_stream(target, bench, tally, reset=reset)
            await asyncio.sleep(0.01)


async def streaming_fin(bench: Bench, tally: _Tally) -> None:
    await _streaming(bench, tally, reset=False)


async def streaming_rst(bench: Bench, tally: _Tally) -> None:
    await _streaming(bench, tally, reset=True)


async def _idle(bench: Bench, tally: _Tally, reset: bool) -> None:
    p = bench.params
    loop = asyncio.get_running_loop()
    rng = random.Random(15)
    low, high = p.idle_abort_window

    async def one(target: Target, slot: int, count: int) -> None:
        connection = await target.open()
        shape = target.stream(bench.shape(_ENDLESS, p.idle_abort_interval))
        first: asyncio.Future[float] = loop.create_future()
        result = connection.start(shape, on_first_event=lambda: first.set_result(loop.time()))
        either: list[asyncio.Future[Any]] = [first, result]
        done, _ = await asyncio.wait(either, return_when="FIRST_COMPLETED")
        if first in done:
            width = (high - low) / count
            await asyncio.sleep(
                first.result() + low + width * (slot + rng.uniform(0.25, 0.75)) - loop.time()
            )
            connection.abort(reset)
        tally.note(target.name, shape.rid, await result)

    for index in range(p.idle_abort_tries):
        targets = bench.rotation(index)
        await asyncio.gather(*(one(t, slot, len(targets)) for slot, t in enumerate(targets)))
        await asyncio.sleep(0.05)


async def idle_fin(bench: Bench, tally: _Tally) -> None:
    await _idle(bench, tally, reset=False)


async def idle_rst(bench: Bench, tally: _Tally) -> None:
    await _idle(bench, tally, reset=True)


async def _background(
    target: Target, bench: Bench, tally: _Tally
) -> tuple[list[Connection], list[asyncio.Future[StreamResult]]]:
    """Scenario b's load on `target`: `realistic_streams` streams at its pace, starts spread
    over one interval; returns once every one has had its first event (or ended)."""
    p = bench.params
    loop = asyncio.get_running_loop()
    connections: list[Connection] = []
    for opened in await open_all(target, p.realistic_streams):
        if isinstance(opened, str):
            tally.errors[target.name].append(f"background: {opened}")
        else:
            connections.append(opened)
    firsts: list[asyncio.Future[None]] = []
    results: list[asyncio.Future[StreamResult]] = []
    for index, connection in enumerate(connections):
        first: asyncio.Future[None] = loop.create_future()
        shape = target.stream(bench.shape(_ENDLESS, p.realistic_delay))
        results.append(
            connection.start(shape, on_first_event=functools.partial(first.set_result, None))
        )
        firsts.append(first)
        await asyncio.sleep(p.realistic_delay / len(connections) if index else 0)
    await asyncio.wait([*firsts], timeout=30)
    await asyncio.sleep(0.2)
    return connections, results


async def loaded(bench: Bench, tally: _Tally) -> None:
    p = bench.params
    for index in range(bench.params.rounds):
        for target in bench.rotation(index):
            connections, results = await _background(target, bench, tally)
            for _ in range(p.loaded_abort_tries):
                await _aborted_stream(target, bench, tally, reset=False)
                await asyncio.sleep(0.01)
            for connection, result in zip(connections, results, strict=True):
                if result.done():
                    outcome = result.result()
                    tally.errors[target.name].append(f"background: {outcome.error or 'ended'}")
                connection.abort()
            await tally.until_idle()


async def all_at_once(bench: Bench, tally: _Tally) -> None:
    p = bench.params
    loop = asyncio.get_running_loop()
    for index in range(bench.params.rounds):
        for target in bench.rotation(index):
            connections = [
                c for c in await open_all(target, p.burst_streams) if not isinstance(c, str)
            ]
            firsts: list[asyncio.Future[None]] = []
            started: list[tuple[Connection, int, asyncio.Future[StreamResult]]] = []
            for connection in connections:
                first: asyncio.Future[None] = loop.create_future()
                shape = target.stream(bench.shape(_ENDLESS, p.disconnect_delay))
                result = connection.start(
                    shape, on_first_event=functools.partial(first.set_result, None)
                )
                firsts.append(first)
                started.append((connection, shape.rid, result))
            await asyncio.wait([*firsts], timeout=30)
            await asyncio.sleep(0.1)
            for connection, _, _ in started:  # one loop iteration: all at the same moment
                connection.abort()
            for _, rid, result in started:
                tally.note(target.name, rid, await result)
            missing = p.burst_streams - len(connections)
            tally.errors[target.name] += ["connect failed"] * missing
            await tally.until_idle()


Case = Callable[[Bench, _Tally], Awaitable[None]]
#: The cases of scenario e, in the order they run: name -> (what, how).
CASES: dict[str, tuple[str, Case]] = {
    "streaming": (
        "abort (FIN) after 5 events of a stream with an event every 20 ms",
        streaming_fin,
    ),
    "streaming-rst": ("the same, the close as an RST (SO_LINGER 0)", streaming_rst),
    "idle": ("abort (FIN) 0.2-0.5 s after an event of a stream with one a second", idle_fin),
    "idle-rst": ("the same, the close as an RST", idle_rst),
    "loaded": ("the streaming case (FIN) beside scenario b's 200 streams on the target", loaded),
    "all-at-once": (
        "all of the target's open streams aborted (FIN) at the same moment",
        all_at_once,
    ),
}


async def _case(bench: Bench, name: str, run: Case) -> Result:
    await fetch_json(bench.control, CLOSES_PATH)  # forget earlier closes
    tally = _Tally(bench)
    await run(bench, tally)
    await asyncio.sleep(0.3)  # the last closes reach the upstream within milliseconds
    await tally.until_idle()
    delays: dict[str, list[float]] = defaultdict(list)
    for rid, (target, at) in tally.aborts.items():
        seen = tally.closes.get(str(rid))
        if seen is None:
            tally.errors[target].append("the upstream never saw the client's close")
            continue
        delays[target].append((seen - at) / 1e6)
    stats: dict[str, Result] = {
        t.name: {
            "close_ms": percentiles(delays[t.name]),
            "errors": len(tally.errors[t.name]),
            "error_samples": tally.errors[t.name][:3],
        }
        for t in bench.targets
    }
    vs = {
        t.name: {
            f"added_{q}_ms": rounded(added(stats, "close_ms", t.name, q), 4) for q in ("p50", "p99")
        }
        for t in bench.targets
        if t.name != "direct"
    }
    names = list(stats)
    checks = per_variant(
        f"e. {name}: abort -> upstream closed p99, added to direct's",
        names,
        lambda n: vs.get(n, {}).get("added_p99_ms"),
        0.5,
        "ms",
    )
    return {
        "what": CASES[name][0],
        "targets": stats,
        "vs_direct": vs,
        "cdf": {target: cdf_points(values) for target, values in delays.items()},
        "checks": checks,
    }


async def disconnect(bench: Bench) -> Result:
    """e. Every case of `CASES`: per target, the abort -> upstream close times."""
    cases: dict[str, Result] = {}
    for name, (_, run) in CASES.items():
        cases[name] = await _case(bench, name, run)
    errors = [
        check(f"errors, {name}", sum(s["errors"] for s in case["targets"].values()), 0, "errors")
        for name, case in cases.items()
    ]
    return {
        "cases": cases,
        "cdf": cases["streaming"]["cdf"],
        "checks": [c for case in cases.values() for c in case["checks"]] + errors,
    }
