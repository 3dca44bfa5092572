"""The bench's outputs: `summary.json` (every figure), `report.md` (tables), PNG plots.

The report puts each target next to `direct` from the same run (added milliseconds for
latencies, x direct for rates) and lists issue 15's targets for every gateway variant, with
the measured value, whether it is met, and nginx's figure beside it. Plots need matplotlib
(`pip install matplotlib`); without it the report says they were skipped.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["render_markdown", "write_results"]

Summary = dict[str, Any]
_TITLES = {
    "a": "a. latency",
    "b": "b. realistic",
    "c": "c. throughput",
    "d": "d. idle streams",
    "e": "e. disconnect",
}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _mib(kib: Any) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _errors_note(stats: dict[str, Any]) -> list[str]:
    lines = []
    for name, figures in stats.items():
        for sample in figures.get("error_samples") or []:
            lines.append(f"- `{name}` error: `{sample}`")
    return [*lines, ""] if lines else []


def _latency(result: Summary) -> list[str]:
    stats, vs = result["targets"], result["vs_direct"]
    rows = []
    for name, s in stats.items():
        added = vs.get(name, {})
        rows.append([
            name, s["ttfb_ms"]["p50"], s["ttfb_ms"]["p90"], s["ttfb_ms"]["p99"],
            s["total_ms"]["p50"], s["total_ms"]["p99"],
            added.get("added_ttfb_p50_ms"), added.get("added_ttfb_p99_ms"),
            added.get("added_total_p50_ms"), added.get("added_total_p99_ms"),
            s.get("cpu_ms_per_request"), s["errors"],
        ])  # fmt: skip
    header = [
        "target", "TTFB p50 ms", "p90", "p99", "total p50 ms", "total p99",
        "added TTFB p50", "added TTFB p99", "added total p50", "added total p99",
        "proxy CPU ms / request", "errors",
    ]  # fmt: skip
    return _table(header, rows) + _errors_note(stats) + _admission(result)


def _admission(result: Summary) -> list[str]:
    """`gateway-redis` over `gateway-keyed`: what the Redis round trip of admission adds."""
    admission = result.get("admission")
    if not admission:
        return []
    stats = result["targets"]
    keyed, redis = stats[admission["base"]], stats["gateway-redis"]
    rows = [[
        keyed["ttfb_ms"]["p50"], redis["ttfb_ms"]["p50"], admission["added_ttfb_p50_ms"],
        keyed["ttfb_ms"]["p99"], redis["ttfb_ms"]["p99"], admission["added_ttfb_p99_ms"],
        keyed["cpu_ms_per_request"], redis["cpu_ms_per_request"],
        admission["redis_server_cpu_ms_per_request"], admission["redis_admits"],
        admission["redis_errors"], admission["fallbacks"],
    ]]  # fmt: skip
    base = admission["base"]
    header = [
        f"{base} TTFB p50 ms", "Redis p50", "added p50", f"{base} p99", "Redis p99",
        "added p99", f"gateway CPU ms / request, {base}", "with Redis",
        "redis-server CPU ms / request", "admits through Redis", "Redis errors", "fallbacks",
    ]  # fmt: skip
    note = (
        "Admission with a limited key: `gateway-redis` counts the key's requests per minute in "
        "Redis (one `ADMIT` round trip per request, `state.redis_url`), `gateway-keyed` (when "
        "measured: `--redis` or `--targets`) the same key and limit in the process; else the "
        "comparison is with the keyless `gateway`. Requests alternate with the other targets'. "
        "Admits, errors and fallbacks are `gateway-redis`'s own counters (`/metrics`, warm-up "
        "included): a fallback was decided without Redis."
    )
    return ["### Redis-backed admission", "", *_table(header, rows), note, ""]


def _realistic(result: Summary) -> list[str]:
    stats, vs = result["targets"], result["vs_direct"]
    rows = []
    for name, s in stats.items():
        lat, steady, added = s["event_latency_ms"], s["steady_event_latency_ms"], vs.get(name, {})
        rows.append([
            name, lat["p50"], lat["p99"], added.get("added_event_p50_ms"),
            added.get("added_event_p99_ms"), steady["p99"], added.get("added_steady_event_p99_ms"),
            s["ttfb_ms"]["p50"], s["ttfb_ms"]["p99"], s["proxy_cpu_pct"], _mib(s["rss_peak_kib"]),
            s["events"], s["errors"],
        ])  # fmt: skip
    header = [
        "target", "event latency p50 ms", "p99", "added p50", "added p99", "steady p99",
        "added steady p99", "TTFB p50 ms", "TTFB p99", "proxy CPU %", "peak RSS MiB", "events",
        "errors",
    ]  # fmt: skip
    note = (
        "Steady state: the events sent in the second half of the streams' life (and after every "
        "stream had started). The other columns also count the start, when every stream's "
        "request is set up within one chunk interval and the events of the streams already "
        "running wait behind that work."
    )
    return [*_table(header, rows), note, "", *_errors_note(stats)]


def _throughput(result: Summary) -> list[str]:
    lines: list[str] = []
    for api, figures in result["apis"].items():
        lines += [f"### {api}", "", *_throughput_api(figures)]
    if result["vs_chat"]:
        lines += ["### CPU per event, by API", "", *_by_api(result)]
    if result.get("translated"):
        lines += ["### Chat translated from Messages", "", *_translated(result["translated"])]
    return lines


def _translated(figures: Summary) -> list[str]:
    """`gateway-translated` beside `gateway` on chat: events/s, CPU per event, ratios."""
    rows = [[
        figures["passthrough_events_per_s"], figures["events_per_s"],
        figures["events_per_s_ratio"],
        ", ".join(f"{r:.3f}" for r in figures["events_per_s_ratio_rounds"]),
        figures["passthrough_cpu_us_per_event"], figures["cpu_us_per_event"],
        figures["cpu_per_event_ratio"],
        ", ".join(f"{r:.3f}" for r in figures["cpu_per_event_ratio_rounds"]),
    ]]  # fmt: skip
    header = [
        "passthrough events/s", "translated events/s", "translated / passthrough", "per round",
        "passthrough CPU µs / event", "translated CPU µs / event", "CPU / event ratio",
        "per round",
    ]  # fmt: skip
    note = (
        "The same chat clients and streams: `gateway` relays the upstream's chat chunks as "
        "bytes, `gateway-translated` routes them to an `anthropic` upstream and translates "
        "every Messages event into chat chunks (a stream of N Messages events is N - 3 chat "
        "chunks: the block's start and stop and `message_stop` have none). Events are the "
        "client's; ratios are medians of the per-round ratios (issue 13: >= 0.5x)."
    )
    return [*_table(header, rows), note, ""]


def _throughput_api(result: Summary) -> list[str]:
    stats, vs = result["targets"], result["vs_direct"]
    rows = []
    for name, s in stats.items():
        ratio = vs.get(name, {}).get("events_per_s_ratio")
        rounds = ", ".join(f"{r:,}" for r in s["events_per_s_rounds"])
        rows.append([
            name, s["events_per_s"], rounds, ratio, s["cpu_s_per_100k_events"],
            s["proxy_cpu_pct"], " + ".join(str(c) for c in s.get("cpu_pct_by_process", [])),
            s["harness_cpu_pct"], s["errors"],
        ])  # fmt: skip
    header = [
        "target", "events/s (median)", "per round", "x direct", "CPU s / 100k events",
        "proxy CPU %", "by process", "harness CPU %", "errors",
    ]  # fmt: skip
    lines = _table(header, rows)
    for name, figures in vs.items():
        if "vs_one_worker" in figures:
            lines += [
                f"`{name}` relays {_fmt(figures['vs_one_worker'])}x one worker's events/s.",
                "",
            ]
    return lines + _errors_note(stats)


def _by_api(result: Summary) -> list[str]:
    """Each proxy on every API side by side: events/s, CPU µs per event, the ratio to chat."""
    apis, rows = result["apis"], []
    chat = apis["chat"]["targets"]
    for api, per_target in result["vs_chat"].items():
        for name, vs in per_target.items():
            mine = apis[api]["targets"][name]
            if mine["cpu_s_per_100k_events"] is None:
                continue
            rows.append([
                name, api, chat[name]["events_per_s"], mine["events_per_s"],
                vs["events_per_s_ratio"], _us(chat[name]["cpu_s_per_100k_events"]),
                _us(mine["cpu_s_per_100k_events"]), vs["cpu_per_event_ratio"],
                ", ".join(f"{r:.3f}" for r in vs["cpu_per_event_ratio_rounds"]),
            ])  # fmt: skip
    header = [
        "target", "API", "chat events/s", "API events/s", "events/s / chat",
        "chat CPU µs / event", "API CPU µs / event", "CPU / event vs chat", "per round",
    ]  # fmt: skip
    note = (
        "CPU per event = the proxy's CPU time (its whole process tree) / the events relayed, "
        "median of the rounds; the ratio is the median of the per-round ratios (each round runs "
        "a target's APIs back to back). Both APIs stream the same number of events with JSON "
        "of about the same size; a Responses event also has its `event:` line."
    )
    return [*_table(header, rows), note, ""]


def _us(per_100k: float | None) -> float | None:
    return None if per_100k is None else per_100k * 10  # s / 100k events -> µs / event


def _idle(result: Summary) -> list[str]:
    rows = []
    for size, per_target in result["sizes"].items():
        for name, s in per_target.items():
            rows.append([
                s.get("streams", int(size)), name, s["kib_per_stream"], _mib(s["rss_base_kib"]),
                _mib(s["rss_open_kib"]), s["ramp_s"], s["idle_cpu_pct"], s["upstream_active"],
                s["errors"],
            ])  # fmt: skip
    header = [
        "streams", "target", "KiB per open stream", "RSS before MiB", "RSS open MiB",
        "open in s", "CPU % while idle", "upstream streams open", "errors",
    ]  # fmt: skip
    lines = _table(header, rows)
    for per_target in result["sizes"].values():
        lines += _errors_note(per_target)
    return lines


def _disconnect(result: Summary) -> list[str]:
    lines: list[str] = []
    for name, case in result["cases"].items():
        lines += [f"### {name}", "", f"{case['what']}.", "", *_disconnect_case(case)]
    return lines


def _disconnect_case(result: Summary) -> list[str]:
    stats, vs = result["targets"], result["vs_direct"]
    rows = []
    for name, s in stats.items():
        close, added = s["close_ms"], vs.get(name, {})
        rows.append([
            name, close["n"], close["p50"], close["p90"], close["p99"], close["max"],
            added.get("added_p50_ms"), added.get("added_p99_ms"), s["errors"],
        ])  # fmt: skip
    header = [
        "target", "streams", "p50 ms", "p90", "p99", "max", "added p50", "added p99", "errors",
    ]  # fmt: skip
    return _table(header, rows) + _errors_note(stats)


_SECTIONS: dict[str, tuple[str, Callable[[Summary], list[str]]]] = {
    "a": ("{latency_requests} sequential requests per target, {latency_chunks} chunks, no delay; "
          "TTFB = request written -> first event read.", _latency),
    "b": ("{realistic_streams} concurrent streams x {realistic_chunks} chunks every "
          "{realistic_delay:g} s, {rounds} round(s); event latency = read time - upstream send "
          "stamp.", _realistic),
    "c": ("{throughput_streams} concurrent streams x {throughput_chunks} events, no delay, "
          "{rounds} round(s), on each API ({apis}); x direct is the median of the per-round "
          "ratios.", _throughput),
    "d": ("Streams held open, one chunk every {idle_delay:g} s, held {idle_hold:g} s; a fresh "
          "proxy process per row; KiB per stream = (RSS open - RSS before) / streams.", _idle),
    "e": ("Time from the client's abort to the upstream seeing the connection closed (its "
          "protocol told of the FIN or RST: it watches the socket, it does not wait for its "
          "next write), per case; every case interleaves all targets. Tries per target: "
          "streaming {disconnect_tries}, idle {idle_abort_tries} (events every "
          "{idle_abort_interval:g} s), loaded {loaded_abort_tries} a round beside "
          "{realistic_streams} streams, all-at-once {burst_streams} a round; {rounds} "
          "round(s).", _disconnect),
}  # fmt: skip
_PLOTS = {
    "a": "latency.png",
    "b": "realistic.png",
    "c": "throughput.png",
    "d": "idle.png",
    "e": "disconnect.png",
}


def _checks(scenarios: Summary) -> list[str]:
    """Issue 15's targets, one row per target per gateway variant (nginx's figure beside),
    then the other issues' checks."""
    rows, others = [], []
    for key, result in scenarios.items():
        for check in result.get("checks", []):
            if "variant" in check:
                rows.append([
                    _TITLES[key], check["what"], check["variant"], check["value"],
                    check["limit"], check["met"], check["nginx"],
                ])  # fmt: skip
            else:
                others.append([
                    _TITLES[key], check["what"], check["value"], check["limit"], check["met"]
                ])  # fmt: skip
    header = ["scenario", "what", "gateway variant", "measured", "target", "met", "nginx"]
    lines = _table(header, rows)
    lines += [
        "`gateway-w2`'s CPU is its whole process tree's (supervisor and both workers), its "
        "memory per stream (d) the sum of their RSS growth (`VmRSS` of every process of the "
        "tree) over the streams held open across both workers.",
        "",
    ]
    if others:
        lines += ["Other checks:", ""]
        lines += _table(["scenario", "what", "measured", "target", "met"], others)
    return lines


def render_markdown(summary: Summary, plots: list[str]) -> str:
    meta, scenarios = summary["meta"], summary["scenarios"]
    machine = meta["machine"]
    load = ", ".join(f"{x:.2f}" for x in machine["loadavg"])
    load_end = ", ".join(f"{x:.2f}" for x in meta["loadavg_end"])
    lines = [
        "# sse-gateway benchmark",
        "",
        f"{meta['date']}, commit {meta['commit']}, {meta['mode']} run of "
        f"{meta['seconds']:g} s: `{meta['command']}`",
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
        f"Python {machine['python']}; load average {load} at the start, {load_end} at the end",
        f"- pinning: {meta['pinning']}; harness loop: {meta['harness_loop']}; "
        f"nginx: {meta['nginx'] or 'not installed'}",
        "- `direct` is the client talking to the upstream itself (the limit); every other "
        "target is measured in the same run, interleaved with it. Read the added times and the "
        "x direct ratios; absolute figures are context (a shared machine is noisy).",
        "",
        "## Issue 15 targets",
        "",
        *_checks(scenarios),
    ]
    for key, result in scenarios.items():
        intro, section = _SECTIONS[key]
        apis = ", ".join(meta.get("apis", ["chat"]))
        lines += [f"## {_TITLES[key]}", "", intro.format(**meta["params"], apis=apis), ""]
        noise = result.get("noise") or {}
        if noise:
            lines += [
                f"Other work on the machine meanwhile: {noise['other_load_on_proxy_core_pct']}% "
                f"of the proxy's core, {noise['other_load_on_harness_cores_pct']}% of the "
                f"harness' core(s) ({result.get('seconds', 0):g} s).",
                "",
            ]
        lines += section(result)
        if _PLOTS[key] in plots:
            lines += [f"![{_TITLES[key]}]({_PLOTS[key]})", ""]
    if meta["notes"] or not plots:
        lines += ["## Notes", ""]
        lines += [f"- {note}" for note in meta["notes"]]
        if not plots:
            lines.append("- plots skipped (matplotlib is not installed: `pip install matplotlib`)")
        lines.append("")
    return "\n".join(lines)


def write_results(summary: Summary, out: Path) -> list[Path]:
    """summary.json, the plots (if matplotlib is installed) and report.md, in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    if importlib.util.find_spec("matplotlib") is not None:
        from bench.plots import draw_plots

        plots = draw_plots(summary["scenarios"], out, _PLOTS)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "report.md").write_text(render_markdown(summary, plots))
    return [out / "report.md", out / "summary.json", *(out / name for name in plots)]
