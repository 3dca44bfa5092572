"""Where the gateway's CPU goes under a scenario's load: py-spy on the single-worker gateway.

    python -m bench.profile [--scenario c] [--api chat] [--translate | --redis]
                            [--seconds 20] [--rate 250] [--out bench/results]

Starts the upstream and one gateway worker (pinned as in `bench.run`), keeps the scenario's
load going (a: sequential requests of 20 chunks; b: 200 streams x 100 chunks at 20 ms; c: 32
streams x 2000 chunks, no delay), on chat or, with `--api responses`, on `/v1/responses`, and
attaches py-spy twice, `--seconds` each: once for a flame graph (`profile-<name>.svg`; `<name>`
is the scenario's, `-responses` appended on that API, `-translated` with `--translate`: chat
clients on a route to an `anthropic` upstream, every Messages event translated into chat
chunks, as `bench.run --translate` measures it; `-redis` with `--redis`: a gateway key with a
requests-per-minute limit kept in a redis-server started here, as `bench.run --redis`'s
`gateway-redis`), once for the raw stacks that
`profile-<name>.md` summarises - the functions with the most samples,
on their own (self) and with what they call (inclusive). Needs py-spy (`pip install py-spy`)
and the right to ptrace the gateway (root, or `kernel.yama.ptrace_scope=0`).

A profile slows the gateway down: its figures are not the benchmark's (those come from
`bench.run`, which never profiles).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.eventloop import run
from bench.loadgen import Address
from bench.processes import GatewayOptions, redis_url, start_gateway, start_redis, start_upstream
from bench.protocol import APIS, CHAT, MESSAGES, StreamShape, WireApi
from bench.run import RESULTS
from bench.scenarios import FULL
from bench.system import ProcessTree, plan_cpus, raise_fd_limit
from bench.trials import Target, run_streams

__all__ = ["main", "summarise"]

_ROOT = Path(__file__).resolve().parent.parent
_NAMES = {"a": "latency", "b": "realistic", "c": "throughput"}
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if found is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (or python -m bench.install)")
    return found


def _frame_name(frame: str) -> str:
    """`function (/long/path/pkg/module.py:123)` -> `function (pkg/module.py)`."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", f"{_ROOT}/", "/lib/python3.11/", "/lib/python3.12/"):
        path = path.split(marker, 1)[-1]
    return f"{match['function']} ({path})"


def summarise(raw: str, top: int = 60) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, and the `top` functions by self and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        count = int(match["count"])
        frames = [_frame_name(f) for f in match["stack"].split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own.most_common(top), inclusive.most_common(top)


_VARIANTS = {
    "": "",
    "translated": ", translated from an `anthropic` upstream's Messages",
    "redis": ", a limited gateway key admitted through Redis",
}


def _markdown(scenario: str, api: WireApi, variant: str, seconds: float, raw: str) -> str:
    total, own, inclusive = summarise(raw)
    name = _name(scenario, api, variant)
    route = _VARIANTS[variant]
    flag = {"": "", "translated": " --translate", "redis": " --redis"}[variant]
    lines = [
        f"# Gateway profile: scenario {scenario} ({_NAMES[scenario]}), {api.name} ({api.path})"
        f"{route}",
        "",
        f"py-spy, {total:,} samples over {seconds:g} s of one gateway worker under the "
        f"scenario's load (`python -m bench.profile --scenario {scenario} --api {api.name}"
        f"{flag}`); flame graph in `profile-{name}.svg`.",
        "",
        "## By self samples (the function itself, not its callees)",
        "",
        "| % | samples | function |",
        "|---|---|---|",
    ]
    lines += [f"| {n / total * 100:.1f} | {n:,} | `{name}` |" for name, n in own[:30]]
    lines += ["", "## By inclusive samples (with everything it calls; gateway and aiohttp)", ""]
    lines += ["| % | samples | function |", "|---|---|---|"]
    lines += [
        f"| {n / total * 100:.1f} | {n:,} | `{name}` |"
        for name, n in inclusive
        if n < total * 0.97 and name.split("(")[-1].startswith(("gateway/", "aiohttp/"))
    ]
    return "\n".join([*lines, ""])


def _name(scenario: str, api: WireApi, variant: str) -> str:
    suffix = ("" if api is CHAT else f"-{api.name}") + (f"-{variant}" if variant else "")
    return _NAMES[scenario] + suffix


async def _load(
    target: Target, scenario: str, api: WireApi, upstream: ProcessTree, until: asyncio.Event
) -> int:
    """Run the scenario's trials on `api` back to back until `until` is set; events relayed."""
    p, rid, events = FULL, 10**9, 0
    if scenario == "a":
        connection = await target.open()
        while not until.is_set():
            rid += 1
            shape = target.stream(StreamShape(p.latency_chunks, 0.0, rid, api))
            result = await connection.stream(shape)
            events += result.events
        connection.close()
        return events
    if scenario == "c":
        count, chunks, delay = p.throughput_streams, p.throughput_chunks, 0.0
    else:
        count, chunks, delay = p.realistic_streams, p.realistic_chunks, p.realistic_delay
    while not until.is_set():
        batch = [StreamShape(chunks, delay, rid + i, api) for i in range(count)]
        rid += count
        events += (await run_streams(target, batch, upstream, stagger=delay)).events
    return events


async def _profile(args: argparse.Namespace) -> None:
    py_spy = _py_spy()
    raise_fd_limit()
    plan = plan_cpus()
    if plan.harness is not None:
        os.sched_setaffinity(0, plan.harness)
    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-profile-"))
    api = APIS[args.api]
    if args.translate and not MESSAGES.reaches(api):
        raise SystemExit(f"--translate serves chat clients, not {api.name}")
    variant = "translated" if args.translate else "redis" if args.redis else ""
    name = _name(args.scenario, api, variant)
    args.out.mkdir(parents=True, exist_ok=True)
    upstream = start_upstream(["127.0.0.1", "127.0.0.3"], workdir, plan.harness, True)
    gateway = redis = None
    try:
        upstream_at = Address("127.0.0.3", upstream.address.port)
        key = "sk-gw-" + secrets.token_urlsafe(32) if args.redis else None
        if args.redis:
            redis = await start_redis(workdir, plan.harness)
        options = GatewayOptions(
            kind="anthropic" if args.translate else "openai",
            client_key=key,
            redis_url=redis_url(redis) if redis else None,
        )
        gateway = await start_gateway(
            "gateway", upstream_at, 1, workdir, plan.proxy, options=options
        )
        upstream_api = MESSAGES if args.translate else None
        target = Target("gateway", gateway.address, gateway, key=key, upstream_api=upstream_api)
        stop = asyncio.Event()
        load = asyncio.create_task(_load(target, args.scenario, api, upstream.tree(), stop))
        await asyncio.sleep(2.0)  # warm: connections pooled, code paths hot
        pid = str(gateway.process.pid)
        common = ["record", "--pid", pid, "--rate", str(args.rate), "--duration", str(args.seconds)]
        svg = args.out / f"profile-{name}.svg"
        raw = workdir / "profile.txt"
        for output, kind in ((svg, "flamegraph"), (raw, "raw")):
            spy = await asyncio.create_subprocess_exec(
                py_spy, *common, "--format", kind, "-o", str(output),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            _, err = await spy.communicate()
            if spy.returncode != 0:
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
        stop.set()
        events = await load
        report = args.out / f"profile-{name}.md"
        markdown = _markdown(args.scenario, api, variant, args.seconds, raw.read_text())
        report.write_text(markdown)
        print(f"wrote {svg} and {report} ({events:,} events relayed meanwhile)")
    finally:
        if gateway is not None:
            gateway.stop()
        if redis is not None:
            redis.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--scenario", choices=sorted(_NAMES), default="c")
    parser.add_argument("--api", choices=list(APIS), default=CHAT.name, help="the streams' API")
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument(
        "--translate", action="store_true", help="chat through a route to an anthropic upstream"
    )
    variant.add_argument(
        "--redis", action="store_true", help="a limited gateway key, admitted through Redis"
    )
    parser.add_argument("--seconds", type=int, default=20, help="per py-spy recording")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=RESULTS)
    run(_profile(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
