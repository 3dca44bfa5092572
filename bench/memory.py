"""Where the memory of an open stream goes in the gateway: tracemalloc, by owner.

    python -m bench.memory [--streams 2000] [--out bench/results]

Starts the upstream and one gateway worker under tracemalloc (`bench.traced_gateway`), warms
it, takes a snapshot, opens `--streams` slow streams (one chunk every 5 s; each delivered its
first event), takes another, and closes them. The difference, divided by the streams, is the
Python memory one open stream holds, grouped three ways: by the file that allocated it, by the
allocating line, and by the innermost gateway frame on the allocation's stack (what in the
gateway's code asked for it). RSS per stream is measured alongside, as scenario d does (the
difference to the traced total is the allocator's overhead and what tracemalloc cannot see).
Writes `memory-idle.md`. tracemalloc slows the gateway down: only the bytes here are figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.eventloop import run
from bench.loadgen import Address, Connection
from bench.processes import Service, start_gateway, start_upstream
from bench.protocol import StreamShape
from bench.run import RESULTS
from bench.system import plan_cpus, raise_fd_limit

__all__ = ["main", "per_stream"]

_ROOT = f"{Path(__file__).resolve().parent.parent}/"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3.12/", _ROOT):
        path = path.split(marker, 1)[-1]
    return path


def _by_file(traceback: tracemalloc.Traceback) -> str:
    return _short(traceback[-1].filename)


def _by_line(traceback: tracemalloc.Traceback) -> str:
    return f"{_short(traceback[-1].filename)}:{traceback[-1].lineno}"


def _by_gateway_frame(traceback: tracemalloc.Traceback) -> str:
    for frame in reversed(traceback):  # innermost first
        if frame.filename.startswith(f"{_ROOT}gateway/"):
            return f"{_short(frame.filename)}:{frame.lineno}"
    return "(no gateway frame)"


_GROUPINGS: dict[str, Callable[[tracemalloc.Traceback], str]] = {
    "allocating file": _by_file,
    "allocating line": _by_line,
    "innermost gateway frame": _by_gateway_frame,
}


def per_stream(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, streams: int, top: int = 15
) -> dict[str, list[tuple[str, float]]]:
    """Bytes per stream that `after` holds beyond `before`, grouped each way, largest first."""
    grouped: dict[str, list[tuple[str, float]]] = {}
    for name, key in _GROUPINGS.items():
        sizes: Counter[str] = Counter()
        for trace in after.traces:
            sizes[key(trace.traceback)] += trace.size
        for trace in before.traces:
            sizes[key(trace.traceback)] -= trace.size
        grouped[name] = [(owner, size / streams) for owner, size in sizes.most_common(top)]
    total = sum(t.size for t in after.traces) - sum(t.size for t in before.traces)
    grouped["total"] = [("traced", total / streams)]
    return grouped


async def _snapshot(service: Service, path: Path) -> tracemalloc.Snapshot:
    service.process.send_signal(signal.SIGUSR1)
    for _ in range(1200):  # the dump of a traced heap takes seconds
        if await asyncio.to_thread(path.exists):
            return await asyncio.to_thread(tracemalloc.Snapshot.load, str(path))
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no snapshot from the gateway:\n{service.log_tail()}")


async def _open(address: Address, count: int) -> list[Connection]:
    gate = asyncio.Semaphore(64)

    async def one(rid: int) -> Connection:
        async with gate:
            connection = await Connection.open(address)
            first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            connection.start(
                StreamShape(1_000_000, 5.0, rid), on_first_event=lambda: first.set_result(None)
            )
            await first
            return connection

    return list(await asyncio.gather(*(one(10**8 + i) for i in range(count))))


def _markdown(streams: int, rss_kib: float, grouped: dict[str, list[tuple[str, float]]]) -> str:
    traced = grouped["total"][0][1]
    lines = [
        "# Gateway memory per open stream (tracemalloc)",
        "",
        f"{streams:,} open streams (one chunk every 5 s), `python -m bench.memory`: "
        f"{traced / 1024:.1f} KiB of Python objects per stream (tracemalloc), "
        f"{rss_kib:.1f} KiB of RSS per stream (with tracing on, which adds its own records).",
        "",
        "`gateway/server/serving.py:94` is the event loop itself: what aiohttp's server and "
        "asyncio allocate per connection with no gateway frame deeper on the stack.",
        "",
    ]
    for name, rows in grouped.items():
        if name == "total":
            continue
        lines += [f"## By {name}", "", "| bytes per stream | owner |", "|---|---|"]
        lines += [f"| {size:,.0f} | `{owner}` |" for owner, size in rows]
        lines.append("")
    return "\n".join(lines)


async def _measure(args: argparse.Namespace) -> None:
    raise_fd_limit()
    plan = plan_cpus()
    if plan.harness is not None:
        os.sched_setaffinity(0, plan.harness)
    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-memory-"))
    upstream = start_upstream(["127.0.0.1", "127.0.0.3"], workdir, plan.harness, True)
    gateway = None
    try:
        env = {"BENCH_SNAPSHOT": str(workdir / "snapshot")}
        upstream_at = Address("127.0.0.3", upstream.address.port)
        gateway = await start_gateway(
            "gateway", upstream_at, 1, workdir, plan.proxy, module="bench.traced_gateway", env=env
        )
        warm = await Connection.open(gateway.address)
        for rid in range(30):
            await warm.stream(StreamShape(5, 0.0, rid))
        warm.close()
        await asyncio.sleep(1.0)
        before = await _snapshot(gateway, workdir / "snapshot0")
        rss_before = gateway.tree().rss_kib()
        connections = await _open(gateway.address, args.streams)
        await asyncio.sleep(1.0)
        rss_open = gateway.tree().rss_kib()
        after = await _snapshot(gateway, workdir / "snapshot1")
        for connection in connections:
            connection.abort()
        grouped = per_stream(before, after, args.streams)
        args.out.mkdir(parents=True, exist_ok=True)
        report = args.out / "memory-idle.md"
        rss = (rss_open - rss_before) / args.streams
        report.write_text(_markdown(args.streams, rss, grouped))
        print(f"wrote {report}: {grouped['total'][0][1] / 1024:.1f} KiB traced per stream")
    finally:
        if gateway is not None:
            gateway.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    run(_measure(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
