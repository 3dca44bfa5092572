"""Scenarios a-d of the benchmark, each run against every target, interleaved (scenario e,
the disconnects, is `bench.disconnects`; the sizes of all five are `Params` here).

    a latency      1 stream of 20 chunks, no delay, a few hundred sequential requests
    b realistic    200 concurrent streams x 100 chunks at 20 ms
    c throughput   32 concurrent streams x 2000 chunks, no delay, on each API (chat, Responses;
                   `gateway-translated` on chat only)
    d idle         2,000 and 10,000 open streams, one chunk every 5 s

Interleaving: scenario a alternates targets request by request, b and c round by round (the
order rotates each round; in c each target runs every API in turn, that order rotating too);
d gives each target a fresh process (memory figures need a clean baseline). Figures are
reported next to `direct` from the same run: added time (target - direct) for latencies,
target / direct for rates, and checked against issue 15's targets for every gateway variant
(`bench.goals`, nginx's figure beside); in c each API's figures also stand next to chat's
(the Responses relay's CPU per event / the chat relay's, round by round), and the translated
relay's next to the passthrough's (`gateway-translated` / `gateway`, round by round); in a the
Redis-backed admission's next to the in-process store's (`gateway-redis` - `gateway-keyed`,
or - `gateway` when `gateway-keyed` is not measured).

Each scenario returns a JSON-able dict: `targets` (per-target figures), `vs_direct` (added
times or ratios), `checks` (issue targets: value, limit, met) and, for the plots, `cdf` or
`curve` data.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.goals import check, per_variant
from bench.loadgen import Address, fetch
from bench.protocol import CHAT, StreamShape, WireApi
from bench.stats import median, percentiles, rounded
from bench.system import CpuPlan, ProcessTree, busy_seconds
from bench.trials import StreamsTrial, Target, harness_cpu, run_idle, run_streams

__all__ = [
    "FULL",
    "QUICK",
    "SCENARIOS",
    "Bench",
    "NoiseMeter",
    "Params",
    "Result",
    "added",
    "cdf_points",
]

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Params:
    """The size of every scenario; `QUICK` is the smoke-test version of `FULL`."""

    latency_requests: int = 300
    latency_chunks: int = 20
    realistic_streams: int = 200
    realistic_chunks: int = 100
    realistic_delay: float = 0.02
    throughput_streams: int = 32
    throughput_chunks: int = 2000
    rounds: int = 3
    idle_sizes: tuple[int, ...] = (2000, 10000)
    idle_delay: float = 5.0
    idle_hold: float = 6.0
    disconnect_tries: int = 100  # e: streaming, with FIN and with RST
    disconnect_delay: float = 0.02
    disconnect_after: int = 5
    idle_abort_tries: int = 50  # e: idle between events, with FIN and with RST
    idle_abort_interval: float = 1.0  # seconds between the events of an idle stream
    idle_abort_window: tuple[float, float] = (0.2, 0.5)  # abort this long after an event
    loaded_abort_tries: int = 25  # e: per round, while `realistic_streams` stream beside
    burst_streams: int = 100  # e: streams aborted at the same moment, per round


FULL = Params()
QUICK = Params(
    latency_requests=40,
    realistic_streams=50,
    realistic_chunks=20,
    throughput_streams=8,
    throughput_chunks=500,
    rounds=1,
    idle_sizes=(200,),
    idle_hold=1.0,
    disconnect_tries=6,
    disconnect_delay=0.01,
    idle_abort_tries=3,
    loaded_abort_tries=8,
    burst_streams=30,
)


@dataclass(slots=True)
class Bench:
    """What a scenario works with: the targets, the upstream, the sizes."""

    params: Params
    targets: list[Target]
    upstream: ProcessTree
    control: Address
    restart: Callable[[Target], Awaitable[Target]]
    fd_limit: int = 1 << 20  # open files a process may have (a proxy needs 2 per stream)
    cpus: CpuPlan = field(default_factory=lambda: CpuPlan(None, None))
    apis: tuple[WireApi, ...] = (CHAT,)  # scenario c runs on each; the others on chat
    redis: ProcessTree | None = None  # the redis-server of `gateway-redis`
    _rids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def shape(self, chunks: int, delay: float, api: WireApi = CHAT) -> StreamShape:
        return StreamShape(chunks, delay, next(self._rids), api)

    def rotation(self, index: int) -> list[Target]:
        """The targets in the order of round `index` (rotated, so no target is always first)."""
        shift = index % len(self.targets)
        return self.targets[shift:] + self.targets[:shift]


class NoiseMeter:
    """How busy the machine was with other work while a scenario ran: the proxy's core minus
    the proxies' own CPU, the harness' cores minus the harness' own CPU (% of one core)."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, float, float]:
        plan, bench = self._bench.cpus, self._bench
        proxies = sum(t.service.tree().cpu_seconds() for t in bench.targets if t.service)
        proxy_busy = busy_seconds(plan.proxy) if plan.proxy else 0.0
        harness_busy = busy_seconds(plan.harness) if plan.harness else 0.0
        return time.monotonic(), proxy_busy, proxies, harness_busy, harness_cpu(bench.upstream)

    def result(self) -> Result:
        if self._bench.cpus.proxy is None:
            return {}
        end = self._read()
        wall, proxy_busy, proxies, harness_busy, harness = (
            e - s for e, s in zip(end, self._start, strict=True)
        )
        return {
            "other_load_on_proxy_core_pct": round(max(0.0, proxy_busy - proxies) / wall * 100, 1),
            "other_load_on_harness_cores_pct": round(
                max(0.0, harness_busy - harness) / wall * 100, 1
            ),
        }


def cdf_points(values: list[float]) -> list[float]:
    """The 1st..99th percentiles and the max, for plotting."""
    ordered = sorted(values)
    if not ordered:
        return []
    points = [ordered[min(len(ordered) - 1, len(ordered) * p // 100)] for p in range(1, 100)]
    return [round(v, 4) for v in [*points, ordered[-1]]]


def added(
    stats: dict[str, Result], key: str, name: str, field_: str, base: str = "direct"
) -> float | None:
    """`name`'s figure minus `base`'s (by default: what the target adds to `direct`)."""
    mine, other = stats.get(name, {}).get(key, {}), stats.get(base, {}).get(key, {})
    if mine.get(field_) is None or other.get(field_) is None:
        return None
    return float(mine[field_] - other[field_])


async def latency(bench: Bench) -> Result:
    """a. Sequential requests on kept-alive connections, one target after the other."""
    p = bench.params
    targets = bench.targets
    connections = {t.name: await t.open() for t in targets}
    ttfb: dict[str, list[float]] = defaultdict(list)
    total: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    warmup = min(20, p.latency_requests)
    cpu: dict[str, float] = {}
    redis_cpu = 0.0
    for index in range(warmup + p.latency_requests):
        if index == warmup:
            cpu = {t.name: t.service.tree().cpu_seconds() for t in targets if t.service}
            redis_cpu = bench.redis.cpu_seconds() if bench.redis else 0.0
        for target in bench.rotation(index):
            connection = connections[target.name]
            if not connection.reusable:
                connection = connections[target.name] = await target.open()
            result = await connection.stream(target.stream(bench.shape(p.latency_chunks, 0)))
            if index < warmup:
                continue
            if result.error is not None:
                errors[target.name].append(result.error)
            elif result.ttfb_ms is not None and result.total_ms is not None:
                ttfb[target.name].append(result.ttfb_ms)
                total[target.name].append(result.total_ms)
    for connection in connections.values():
        connection.close()
    for t in targets:
        if t.service is not None:
            used = t.service.tree().cpu_seconds() - cpu[t.name]
            cpu[t.name] = used / p.latency_requests * 1000
    if bench.redis is not None:
        redis_cpu = (bench.redis.cpu_seconds() - redis_cpu) / p.latency_requests * 1000
    cpu_ms = {t.name: rounded(cpu.get(t.name), 3) for t in targets}
    stats = {
        t.name: {
            "cpu_ms_per_request": cpu_ms[t.name],
            "ttfb_ms": percentiles(ttfb[t.name]),
            "total_ms": percentiles(total[t.name]),
            "errors": len(errors[t.name]),
            "error_samples": errors[t.name][:3],
        }
        for t in targets
    }
    vs = {
        t.name: {
            f"added_{key}_{q}_ms": rounded(added(stats, f"{key}_ms", t.name, q), 4)
            for key in ("ttfb", "total")
            for q in ("p50", "p99")
        }
        for t in targets
        if t.name != "direct"
    }
    names = [t.name for t in targets]
    checks = [
        *per_variant(
            "added TTFB p50", names, lambda n: vs.get(n, {}).get("added_ttfb_p50_ms"), 0.3, "ms"
        ),
        *per_variant(
            "proxy CPU per request",
            names,
            cpu_ms.get,
            0.3,
            "ms",
        ),
    ]
    admission = await _admission(bench, stats, redis_cpu)
    if admission:
        what = f"Redis admission: added TTFB p50 over `{admission['base']}` (issue 14)"
        checks.append(check(what, admission["added_ttfb_p50_ms"], 0.3, "ms"))
    return {
        "targets": stats,
        "vs_direct": vs,
        "admission": admission,
        "cdf": {t.name: cdf_points(ttfb[t.name]) for t in targets},
        "checks": checks,
    }


_KEYED, _REDIS = "gateway-keyed", "gateway-redis"
_TRANSLATED, _PASSTHROUGH = "gateway-translated", "gateway"


async def _admission(bench: Bench, stats: dict[str, Result], redis_cpu_ms: float) -> Result:
    """`gateway-redis` next to the same key and limit counted in the process (`gateway-keyed`)
    or, when that target is not measured, next to the keyless `gateway` (the key itself costs
    nothing measurable: README): what Redis adds to TTFB and CPU per request, and - from its
    `/metrics` - whether every admission really went to Redis (round trips, errors,
    fallbacks)."""
    base = _KEYED if _KEYED in stats else _PASSTHROUGH
    if _REDIS not in stats or base not in stats:
        return {}
    targets = {t.name: t for t in bench.targets}
    mine, other = stats[_REDIS], stats[base]
    metrics = (await fetch(targets[_REDIS].address, "/metrics")).decode()
    return {
        "base": base,
        "added_ttfb_p50_ms": rounded(added(stats, "ttfb_ms", _REDIS, "p50", base), 4),
        "added_ttfb_p99_ms": rounded(added(stats, "ttfb_ms", _REDIS, "p99", base), 4),
        "added_cpu_ms_per_request": rounded(
            _difference(mine["cpu_ms_per_request"], other["cpu_ms_per_request"]), 4
        ),
        "redis_server_cpu_ms_per_request": rounded(redis_cpu_ms, 4),
        "redis_admits": _metric(metrics, "gateway_redis_call_seconds_count", "admit"),
        "redis_errors": _metric(metrics, "gateway_redis_errors_total", None),
        "fallbacks": _metric(metrics, "gateway_state_fallbacks_total", None),
    }


def _difference(mine: float | None, other: float | None) -> float | None:
    return None if mine is None or other is None else mine - other


def _metric(exposition: str, name: str, operation: str | None) -> int:
    """The sum of a Prometheus counter's samples (of one `operation`, or all of them)."""
    total = 0.0
    label = f'operation="{operation}"'
    for line in exposition.splitlines():
        if line.startswith(name) and (operation is None or label in line):
            head, _, value = line.rpartition(" ")
            if head.split("{", 1)[0] == name:
                total += float(value)
    return int(total)


Trials = dict[str, list[StreamsTrial]]  # target name -> its trials, one a round


async def _rounds(
    bench: Bench,
    make: Callable[[WireApi], list[StreamShape]],
    apis: tuple[WireApi, ...] = (CHAT,),
    **options: Any,
) -> dict[str, Trials]:
    """`rounds` rounds of one trial per target and API: API name -> target name -> trials.

    Targets rotate round by round; within a target, so do the APIs (no API always first). A
    translating target runs the APIs it serves only (`Target.serves`)."""
    trials: dict[str, Trials] = {api.name: defaultdict(list) for api in apis}
    for index in range(bench.params.rounds):
        for target in bench.rotation(index):
            shift = index % len(apis)
            for api in [a for a in apis[shift:] + apis[:shift] if target.serves(a)]:
                trial = await run_streams(target, make(api), bench.upstream, **options)
                trials[api.name][target.name].append(trial)
                await asyncio.sleep(0.3)  # let the last connections close before the next trial
    return trials


def _common(trials: list[StreamsTrial]) -> Result:
    span = sum(t.span_s for t in trials)
    cpu = [t.proxy_cpu_s for t in trials if t.proxy_cpu_s is not None]
    errors = [e for t in trials for e in t.errors]
    peaks = [t.rss_peak_kib for t in trials if t.rss_peak_kib is not None]
    return {
        "streams": sum(len(t.results) for t in trials),
        "events": sum(t.events for t in trials),
        "errors": len(errors),
        "error_samples": errors[:3],
        "proxy_cpu_pct": rounded(sum(cpu) / span * 100, 1) if cpu and span else None,
        "harness_cpu_pct": rounded(sum(t.harness_cpu_s for t in trials) / span * 100, 1),
        "rss_peak_kib": max(peaks) if peaks else None,
        "rss_base_kib": trials[0].rss_base_kib,
    }


async def realistic(bench: Bench) -> Result:
    """b. Many concurrent streams at a model's pace: per-event latency, CPU, RSS."""
    p = bench.params

    def shapes(api: WireApi) -> list[StreamShape]:
        return [
            bench.shape(p.realistic_chunks, p.realistic_delay, api)
            for _ in range(p.realistic_streams)
        ]

    rounds = await _rounds(bench, shapes, stagger=p.realistic_delay, with_latencies=True)
    trials = rounds[CHAT.name]
    stats: dict[str, Result] = {}
    samples: dict[str, list[float]] = {}
    for name, runs in trials.items():
        samples[name] = [ns / 1e6 for t in runs if t.log is not None for ns in t.log.latency_ns]
        half = p.realistic_chunks * p.realistic_delay / 2
        steady = [ns / 1e6 for t in runs for ns in t.steady_latencies_ns(half)]
        ttfb = [r.ttfb_ms for t in runs for r in t.results if r.ttfb_ms is not None]
        stats[name] = {
            "event_latency_ms": percentiles(samples[name]),
            "steady_event_latency_ms": percentiles(steady),
            "ttfb_ms": percentiles(ttfb),
            **_common(runs),
        }
    vs = {
        name: {
            f"added_{key}_{q}_ms": rounded(added(stats, f"{key}_latency_ms", name, q), 4)
            for key in ("event", "steady_event")
            for q in ("p50", "p99")
        }
        for name in stats
        if name != "direct"
    }
    names = list(stats)
    return {
        "targets": stats,
        "vs_direct": vs,
        "cdf": {name: cdf_points(values) for name, values in samples.items()},
        "checks": [
            *per_variant(
                "added per-event latency p99",
                names,
                lambda n: vs.get(n, {}).get("added_event_p99_ms"),
                2.0,
                "ms",
            ),
            *per_variant(
                "proxy CPU", names, lambda n: stats[n]["proxy_cpu_pct"], 30, "% of a core"
            ),
        ],
    }


def _throughput_figures(trials: Trials) -> Result:
    """One API's figures of c: per target, and next to `direct` round by round."""
    stats: dict[str, Result] = {}
    for name, runs in trials.items():
        rates = [t.events / t.span_s for t in runs if t.span_s > 0]
        wall = sum(t.wall_s for t in runs)
        columns = itertools.zip_longest(*(t.proxy_cpu_split_s for t in runs), fillvalue=0.0)
        split = [sum(column) for column in columns]
        per_100k = [cpu * 1e5 for cpu in _cpu_per_event(runs) if cpu is not None]
        stats[name] = {
            "events_per_s": rounded(median(rates), 0),
            "cpu_pct_by_process": [round(s / wall * 100, 1) for s in split if s > 0.001 * wall],
            "events_per_s_rounds": [round(r) for r in rates],
            "cpu_s_per_100k_events": rounded(median(per_100k), 3),
            **_common(runs),
        }
    vs: dict[str, Result] = {}
    for name, runs in trials.items():
        if name == "direct" or "direct" not in trials:
            continue
        pairs = zip(runs, trials["direct"], strict=True)
        ratios = [_rate(mine) / _rate(direct) for mine, direct in pairs]
        vs[name] = {"events_per_s_ratio": rounded(median(ratios), 4)}
    gateway = stats.get("gateway", {})
    for name, s in stats.items():
        if name.startswith("gateway-w") and gateway.get("events_per_s"):
            vs[name]["vs_one_worker"] = rounded(s["events_per_s"] / gateway["events_per_s"], 3)
    return {"targets": stats, "vs_direct": vs}


def _rate(trial: StreamsTrial) -> float:
    return trial.events / trial.span_s


def _cpu_per_event(runs: list[StreamsTrial]) -> list[float | None]:
    """The proxy's CPU seconds per event relayed, round by round (None: no proxy, no event)."""
    return [
        t.proxy_cpu_s / t.events if t.proxy_cpu_s is not None and t.events else None for t in runs
    ]


def _vs_chat(mine: Trials, chat: Trials) -> Result:
    """Each proxy's CPU per event and events/s on this API over chat's, round by round
    (the trials of one round ran back to back on the same target)."""
    vs: Result = {}
    for name, runs in mine.items():
        paired = zip(_cpu_per_event(runs), _cpu_per_event(chat[name]), strict=True)
        cpu = [m / c for m, c in paired if m is not None and c]
        rates = [_rate(m) / _rate(c) for m, c in zip(runs, chat[name], strict=True)]
        vs[name] = {
            "cpu_per_event_ratio": rounded(median(cpu), 3) if cpu else None,
            "cpu_per_event_ratio_rounds": [round(r, 3) for r in cpu],
            "events_per_s_ratio": rounded(median(rates), 3) if rates else None,
        }
    return vs


async def throughput(bench: Bench) -> Result:
    """c. Streams with no delay, on each API: events relayed per second, CPU per event.

    Every API's streams have the same number of events of about the same size, so the
    proxies' CPU per event compares across APIs (`vs_chat`)."""
    p = bench.params

    def shapes(api: WireApi) -> list[StreamShape]:
        return [bench.shape(p.throughput_chunks, 0, api) for _ in range(p.throughput_streams)]

    trials = await _rounds(bench, shapes, bench.apis)
    apis = {name: _throughput_figures(runs) for name, runs in trials.items()}
    checks = []
    if CHAT.name in apis:
        chat_vs = apis[CHAT.name]["vs_direct"]
        checks += per_variant(
            "events/s vs direct (chat)",
            [t.name for t in bench.targets],
            lambda n: chat_vs.get(n, {}).get("events_per_s_ratio"),
            0.6,
            "x",
            at_least=True,
        )
    vs_chat: Result = {}
    for name, runs in trials.items():
        if name == CHAT.name or CHAT.name not in trials:
            continue
        vs_chat[name] = _vs_chat(runs, trials[CHAT.name])
        ratio = vs_chat[name].get("gateway", {}).get("cpu_per_event_ratio")
        checks.append(check(f"CPU per event, {name} / chat", ratio, 1.0, "x"))
    translated = _vs_passthrough(trials.get(CHAT.name, {}))
    if translated:
        what = "chat translated from Messages: events/s / passthrough's (issue 13)"
        checks.append(check(what, translated["events_per_s_ratio"], 0.5, "x", True))
    return {"apis": apis, "vs_chat": vs_chat, "translated": translated, "checks": checks}


def _vs_passthrough(chat: Trials) -> Result:
    """`gateway-translated` (chat clients, an Anthropic upstream: every Messages event
    translated into chat chunks) next to `gateway` (the same chat streams relayed as bytes),
    round by round: events/s and CPU per client event, and their ratios."""
    if _TRANSLATED not in chat or _PASSTHROUGH not in chat:
        return {}
    mine, base = chat[_TRANSLATED], chat[_PASSTHROUGH]
    rates = [_rate(m) / _rate(b) for m, b in zip(mine, base, strict=True)]
    paired = zip(_cpu_per_event(mine), _cpu_per_event(base), strict=True)
    cpu = [m / b for m, b in paired if m is not None and b]

    def us(runs: list[StreamsTrial]) -> float | None:
        return rounded(median([c * 1e6 for c in _cpu_per_event(runs) if c is not None]), 2)

    return {
        "events_per_s": rounded(median([_rate(t) for t in mine]), 0),
        "passthrough_events_per_s": rounded(median([_rate(t) for t in base]), 0),
        "events_per_s_ratio": rounded(median(rates), 3),
        "events_per_s_ratio_rounds": [round(r, 3) for r in rates],
        "cpu_us_per_event": us(mine),
        "passthrough_cpu_us_per_event": us(base),
        "cpu_per_event_ratio": rounded(median(cpu), 3),
        "cpu_per_event_ratio_rounds": [round(r, 3) for r in cpu],
    }


async def _warm(target: Target, bench: Bench, requests: int = 20) -> None:
    connection = await target.open()
    for _ in range(requests):
        await connection.stream(target.stream(bench.shape(5, 0)))
    connection.close()


async def idle(bench: Bench) -> Result:
    """d. Many open, nearly silent streams: memory per open stream, on a fresh process.

    A proxy holds two sockets per stream: a size the open-file limit cannot hold is cut to
    what fits (and the result says so) rather than measured as a pile of EMFILE errors.
    """
    p = bench.params
    fits = (bench.fd_limit - 200) // 2
    sizes: dict[str, Result] = {}
    for size in p.idle_sizes:
        streams = min(size, fits)
        per_target: Result = {}
        for target in bench.rotation(p.idle_sizes.index(size)):
            target = await bench.restart(target)
            await _warm(target, bench)
            await asyncio.sleep(0.5)
            shapes = [bench.shape(1_000_000, p.idle_delay) for _ in range(streams)]
            trial = await run_idle(target, shapes, p.idle_hold, bench.control)
            per_target[target.name] = {
                "streams": streams,
                "kib_per_stream": rounded(trial.kib_per_stream, 2),
                "rss_base_kib": trial.rss_base_kib,
                "rss_open_kib": trial.rss_open_kib,
                "ramp_s": rounded(trial.ramp_s, 2),
                "idle_cpu_pct": rounded(trial.proxy_cpu_pct, 1),
                "upstream_active": trial.upstream_active,
                "errors": len(trial.errors),
                "error_samples": trial.errors[:3],
                "curve": trial.curve,
            }
        order = [t.name for t in bench.targets]
        sizes[str(size)] = {name: per_target[name] for name in order if name in per_target}
    checks = []
    for size in p.idle_sizes:
        figures = sizes[str(size)]
        streams = max((f.get("streams", size) for f in figures.values()), default=size)
        cut = "" if streams == size else f" (cut from {size:,}: open-file limit {bench.fd_limit:,})"
        checks += per_variant(
            f"RSS per open idle stream at {streams:,}{cut}",
            list(figures),
            {name: f.get("kib_per_stream") for name, f in figures.items()}.get,
            16,
            "KiB",
        )
    return {"sizes": sizes, "checks": checks}


SCENARIOS: dict[str, tuple[str, Callable[[Bench], Awaitable[Result]]]] = {
    "a": ("latency", latency),
    "b": ("realistic", realistic),
    "c": ("throughput", throughput),
    "d": ("idle", idle),
}
