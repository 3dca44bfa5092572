"""One measured trial against one target: many concurrent streams, or many idle open streams.

A trial opens its connections first (not timed), then starts the streams and reads the proxy's
CPU time (utime + stime of its process tree) and RSS around the streaming part only. The
harness' own CPU (this process plus the upstream) is read the same way, to show that the
harness was not the bottleneck. `direct` has no proxy: its proxy figures are None.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench.loadgen import Address, Connection, EventLog, StreamResult, fetch_json
from bench.processes import Service
from bench.protocol import CLOSES_PATH, StreamShape, WireApi
from bench.system import ProcessTree, RssSampler

__all__ = [
    "IdleTrial",
    "StreamsTrial",
    "Target",
    "harness_cpu",
    "open_all",
    "run_idle",
    "run_streams",
]

_CONNECTING = 128  # connections being set up at once (the proxies' accept backlog is 1024+)
_OPEN_TIMEOUT = 60.0  # seconds a stream may take to deliver its first event in a ramp


@dataclass(slots=True)
class Target:
    """What the load generator talks to: `direct` (the upstream itself) or a proxy.

    `key` is the gateway key its requests present (None: none); `upstream_api` the API its
    upstream streams when its route translates (None: the client's own: a byte relay)."""

    name: str
    address: Address
    service: Service | None = None
    workers: int = 1
    key: str | None = None
    upstream_api: WireApi | None = None

    def tree(self) -> ProcessTree | None:
        return self.service.tree() if self.service is not None else None

    async def open(self) -> Connection:
        """A fresh connection to it, its requests carrying its key."""
        return await Connection.open(self.address, self.key)

    def serves(self, api: WireApi) -> bool:
        """Whether its clients may speak `api` (through a translated route: only the APIs
        the bench can count the translation for, `WireApi.reaches`)."""
        return self.upstream_api is None or self.upstream_api.reaches(api)

    def stream(self, shape: StreamShape) -> StreamShape:
        """`shape` as this target's upstream streams it (translated or not)."""
        return replace(shape, upstream=self.upstream_api)

    def streams(self, shapes: Sequence[StreamShape]) -> list[StreamShape]:
        return [self.stream(shape) for shape in shapes]


def harness_cpu(upstream: ProcessTree) -> float:
    """CPU seconds spent so far by the load generator (this process) and the upstream."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + upstream.cpu_seconds()


@dataclass(slots=True)
class StreamsTrial:
    """Concurrent streams against one target."""

    target: str
    results: list[StreamResult]
    log: EventLog | None
    wall_s: float
    proxy_cpu_s: float | None
    harness_cpu_s: float
    rss_base_kib: int | None
    rss_peak_kib: int | None
    proxy_cpu_split_s: list[float] = field(default_factory=list)  # per process, largest first

    @property
    def events(self) -> int:
        return sum(r.events for r in self.results)

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error is not None]

    def steady_latencies_ns(self, after_s: float) -> list[int]:
        """Latencies of the events sent `after_s` or later after the first request, and after
        every stream had started (its first event read): the trial's steady state."""
        firsts = [r.first_event_ns for r in self.results if r.first_event_ns is not None]
        sent = [r.sent_ns for r in self.results if r.sent_ns]
        if self.log is None or not firsts or not sent:
            return []
        since = max(max(firsts), min(sent) + int(after_s * 1e9))
        pairs = zip(self.log.sent_ns, self.log.latency_ns, strict=True)
        return [latency for stamp, latency in pairs if stamp >= since]

    @property
    def span_s(self) -> float:
        """First request written -> last [DONE] read (connection set-up excluded)."""
        done = [r.done_ns for r in self.results if r.done_ns is not None]
        sent = [r.sent_ns for r in self.results if r.sent_ns]
        return (max(done) - min(sent)) / 1e9 if done and sent else self.wall_s


async def open_all(target: Target, count: int) -> list[Connection | str]:
    """`count` connections to `target`, at most `_CONNECTING` being set up at once; a
    connection that failed is its error message."""
    gate = asyncio.Semaphore(_CONNECTING)

    async def one() -> Connection | str:
        async with gate:
            try:
                return await asyncio.wait_for(target.open(), 30)
            except (OSError, TimeoutError) as exc:
                return f"connect failed: {type(exc).__name__}: {exc}"

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def run_streams(
    target: Target,
    shapes: Sequence[StreamShape],
    upstream: ProcessTree,
    *,
    stagger: float = 0.0,
    with_latencies: bool = False,
) -> StreamsTrial:
    """All `shapes` at once (start `i` delayed by `i/len * stagger`), each on its connection
    (as the target's upstream streams them: `Target.streams`)."""
    loop = asyncio.get_running_loop()
    shapes = target.streams(shapes)
    connections = await open_all(target, len(shapes))
    log = EventLog() if with_latencies else None
    tree = target.tree()
    split = tree.cpu_by_pid() if tree else {}
    proxy_cpu, harness = sum(split.values()), harness_cpu(upstream)
    async with contextlib.AsyncExitStack() as stack:
        sampler = await stack.enter_async_context(RssSampler(tree)) if tree else None
        started = loop.time()
        pending: list[asyncio.Future[StreamResult]] = []
        for index, (connection, shape) in enumerate(zip(connections, shapes, strict=True)):
            if isinstance(connection, str):
                pending.append(_failed(connection))
                continue
            if stagger:
                await asyncio.sleep(max(0.0, started + index * stagger / len(shapes) - loop.time()))
            pending.append(connection.start(shape, log=log))
        results = list(await asyncio.gather(*pending))
        wall = loop.time() - started
    for connection in connections:
        if not isinstance(connection, str):
            connection.close()
    after = tree.cpu_by_pid() if tree else {}
    return StreamsTrial(
        target=target.name,
        results=results,
        log=log,
        wall_s=wall,
        proxy_cpu_s=sum(after.values()) - proxy_cpu if tree else None,
        proxy_cpu_split_s=sorted(
            (t - split.get(pid, 0.0) for pid, t in after.items()), reverse=True
        ),
        harness_cpu_s=harness_cpu(upstream) - harness,
        rss_base_kib=sampler.samples[0][1] if sampler and sampler.samples else None,
        rss_peak_kib=sampler.peak_kib if sampler else None,
    )


def _failed(message: str) -> asyncio.Future[StreamResult]:
    future: asyncio.Future[StreamResult] = asyncio.get_running_loop().create_future()
    future.set_result(StreamResult(error=message))
    return future


@dataclass(slots=True)
class IdleTrial:
    """`streams` long, slow streams held open together against one target."""

    target: str
    streams: int
    ramp_s: float
    errors: list[str]
    upstream_active: int
    rss_base_kib: int | None = None
    rss_open_kib: int | None = None
    proxy_cpu_pct: float | None = None
    curve: list[tuple[int, int]] = field(default_factory=list)  # (streams open, RSS KiB)

    @property
    def kib_per_stream(self) -> float | None:
        if self.rss_base_kib is None or self.rss_open_kib is None or not self.streams:
            return None
        return (self.rss_open_kib - self.rss_base_kib) / self.streams


class _Ramp:
    """Counts first events while streams open; samples the proxy's RSS every tenth of them."""

    def __init__(self, tree: ProcessTree | None, total: int, trial: IdleTrial) -> None:
        self.tree, self.trial, self.opened = tree, trial, 0
        self.step = max(1, total // 10)
        self.next_mark = self.step

    def first_event(self) -> None:
        self.opened += 1
        if self.tree is not None and self.opened >= self.next_mark:
            self.trial.curve.append((self.opened, self.tree.rss_kib()))
            self.next_mark += self.step


_Opened = tuple[Connection | None, asyncio.Future[StreamResult], bool]


async def _open_idle(
    target: Target, shape: StreamShape, ramp: _Ramp, gate: asyncio.Semaphore
) -> _Opened:
    """Connect and start one stream; whether its first event came in time."""
    loop = asyncio.get_running_loop()
    async with gate:
        try:
            connection = await asyncio.wait_for(target.open(), 30)
        except (OSError, TimeoutError) as exc:
            return None, _failed(f"connect failed: {type(exc).__name__}: {exc}"), False
        first: asyncio.Future[None] = loop.create_future()

        def seen() -> None:
            ramp.first_event()
            first.set_result(None)

        result = connection.start(shape, on_first_event=seen)
        either: list[asyncio.Future[Any]] = [first, result]
        await asyncio.wait(either, timeout=_OPEN_TIMEOUT, return_when="FIRST_COMPLETED")
        return connection, result, first.done()


async def run_idle(
    target: Target, shapes: Sequence[StreamShape], hold: float, control: Address
) -> IdleTrial:
    """Open every stream (first event received), hold them `hold` s, then close them all."""
    loop = asyncio.get_running_loop()
    tree = target.tree()
    trial = IdleTrial(target.name, len(shapes), 0.0, [], 0)
    trial.rss_base_kib = tree.rss_kib() if tree else None
    trial.curve.append((0, trial.rss_base_kib or 0))
    ramp, gate = _Ramp(tree, len(shapes), trial), asyncio.Semaphore(_CONNECTING)
    started = loop.time()
    streams = target.streams(shapes)
    opened = await asyncio.gather(*(_open_idle(target, s, ramp, gate) for s in streams))
    trial.ramp_s = loop.time() - started
    cpu = tree.cpu_seconds() if tree else 0.0
    await asyncio.sleep(hold)
    if tree is not None:
        trial.proxy_cpu_pct = (tree.cpu_seconds() - cpu) / hold * 100
        trial.rss_open_kib = tree.rss_kib()
        trial.curve.append((ramp.opened, trial.rss_open_kib))
    trial.upstream_active = int((await fetch_json(control, CLOSES_PATH))["active"])
    for connection, result, in_time in opened:
        if result.done():
            outcome = result.result()
            trial.errors.append(outcome.error or f"ended early after {outcome.events} events")
            continue
        if not in_time:
            trial.errors.append(f"no first event within {_OPEN_TIMEOUT:g} s")
        if connection is not None:
            connection.abort()
    await _wait_upstream_idle(control)
    return trial


async def _wait_upstream_idle(control: Address) -> None:
    """Until the upstream has no stream running (the proxy closed all it had opened), 60 s."""
    for _ in range(600):  # polls a remote count: no event to wait on
        if int((await fetch_json(control, CLOSES_PATH))["active"]) == 0:
            return
        await asyncio.sleep(0.1)
