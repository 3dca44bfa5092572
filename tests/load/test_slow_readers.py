"""2,000 slow readers of a fast upstream with large events: what each costs, and that it returns.

A gateway process (`python -m gateway`, one worker, one route `m`, the pool left at its default
size: as many connections as `limits.max_streams`), a fast upstream (`tests/load/flood_upstream`:
16 KiB events as fast as each connection takes them) and the readers
(`tests/load/slow_readers`: 2,000 connections with 4 KiB receive buffers). The test:

1. warms the gateway up (a few readers come and go) and reads its RSS;
2. opens the 2,000 streams (every one a 200) and lets them stall: once the upstream's count of
   bytes written stops growing, every stream waits on its reader and each buffer on the way is
   as full as it gets. RSS must be within `HELD_PER_STREAM` per stream of the baseline;
3. has every reader take 256 KiB slowly (16 KiB reads, 5 ms apart: the buffers drain and
   refill all the while), then stall again: RSS still within the budget;
4. has the readers leave (mid-stream): the gateway ends every stream (`gateway_active_streams`
   back to 0) and its RSS must come back within `LEFT_PER_STREAM` per stream of the baseline.

The budget per stream is the design's (`gateway.transport`, `gateway.server.sse_response`):
what an idle stream holds, plus on the upstream side aiohttp's buffer (paused above 2 x 8 KiB)
and one socket read over it (at most twice the 32 KiB receive buffer), the relay's read (16
KiB), the batch being written (a read plus an event's start held over, and its copy in the
event's text), and the client connection's write buffer (paused above 16 KiB, plus one write).
Before those bounds (aiohttp's 256 KiB socket reads, 64 KiB reads, asyncio's 64 KiB write mark
with aiohttp waiting only every 64 KiB) the same run held 440-500 KiB per stream, and after
the readers left it kept all of it: glibc keeps freed heap pages (`gateway.server.heap`).

Nothing is timed: the waits are hang guards. The figures are reported in the terminal summary
(`tests/load/conftest.py`) and `slow-readers.json` in the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import Address, fetch_json
from bench.processes import free_port
from bench.system import raise_fd_limit
from tests.load.conftest import FIGURES
from tests.load.flood_upstream import SENT_PATH

REPO = Path(__file__).resolve().parents[2]
STREAMS = 2_000
WARM_STREAMS = 50
EVENT_BYTES = 16 * 1024
EVENTS = 4_096  # 64 MiB per stream: no stream ends while the test runs
READ = "read 262144 16384 0.005"  # 256 KiB each, 16 KiB a recv, 5 ms apart
KiB = 1024
#: An open stream (bench/results: 33 KiB) with the allocator's slack.
IDLE = 40 * KiB
UPSTREAM_SIDE = 2 * 8 * KiB + 2 * 32 * KiB  # aiohttp's buffer + one recv over its mark
RELAY = 16 * KiB + (16 * KiB + EVENT_BYTES) + EVENT_BYTES  # read, batch, the event's text
CLIENT_SIDE = 16 * KiB + (16 * KiB + EVENT_BYTES)  # write buffer's mark + one write
HELD_PER_STREAM = IDLE + UPSTREAM_SIDE + RELAY + CLIENT_SIDE  # 232 KiB
#: After they left: what the heap keeps in fragments and the cyclic garbage not yet collected.
LEFT_PER_STREAM = 64 * KiB
FILES_NEEDED = 3 * STREAMS + 1_000  # the gateway: two sockets per stream
HANG_GUARD = 120.0


@pytest.fixture
def open_files() -> Iterator[int]:
    """This process's open-file limit raised: the processes it starts inherit it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = raise_fd_limit()
    try:
        if soft < FILES_NEEDED:
            pytest.fail(f"{STREAMS:,} streams need {FILES_NEEDED:,} open files, not {soft:,}")
        yield soft
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}


@contextlib.contextmanager
def process(argv: list[str], log: Path, **options: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session, stopped by its PID (SIGTERM, then SIGKILL) at exit."""
    with log.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=_clean_env(),
            **options,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if child.stdout is not None:
            child.stdout.close()


@pytest.fixture
def upstream(tmp_path: Path, open_files: int) -> Iterator[Address]:
    argv = ["-m", "tests.load.flood_upstream", "--event-bytes", str(EVENT_BYTES)]
    argv += ["--events", str(EVENTS)]
    with process(argv, tmp_path / "upstream.log", stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, (tmp_path / "upstream.log").read_text()
        yield Address("127.0.0.1", json.loads(line)["port"])


@pytest.fixture
async def gateway(tmp_path: Path, upstream: Address) -> AsyncIterator[tuple[Address, int]]:
    """The gateway (one worker) in front of the upstream: its address and PID."""
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "heartbeat: null\n"
        "limits: {write_stall: 600}\n"  # stalled on purpose: never cut here
        "upstreams:\n"
        f'  up: {{kind: openai, base_url: "http://127.0.0.1:{upstream.port}/v1"}}\n'
        "routes:\n"
        "  - {model: m, targets: [{upstream: up}]}\n"
    )
    address = Address("127.0.0.1", free_port())
    argv = ["-m", "gateway", "--config", str(config), "--host", address.host]
    argv += ["--port", str(address.port), "--log-level", "warning"]
    with process(argv, tmp_path / "gateway.log") as child:
        await until(lambda: healthy(address), what="the gateway to start")
        yield address, child.pid


async def healthy(address: Address) -> bool:
    with contextlib.suppress(OSError, RuntimeError, ValueError):
        await fetch_json(address, "/healthz")
        return True
    return False


async def eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    """Whether `check()` came true within the hang guard (polled: nothing here is timed)."""
    try:
        async with asyncio.timeout(HANG_GUARD):
            while not await check():  # noqa: ASYNC110 - other processes' figures
                await asyncio.sleep(0.2)
    except TimeoutError:
        return False
    return True


async def until(check: Callable[[], Awaitable[bool]], *, what: str) -> None:
    if not await eventually(check):
        pytest.fail(f"waited {HANG_GUARD:g} s for {what}")


async def settled(read: Callable[[], Awaitable[int]], *, still: float = 1.0) -> int:
    """`read()` once it stopped changing for `still` seconds (a count that keeps growing never
    settles: the hang guard fails the test)."""
    async with asyncio.timeout(HANG_GUARD):
        last = await read()
        while True:
            await asyncio.sleep(still)
            now = await read()
            if now == last:
                return now
            last = now


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def samples(address: Address, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples `name` on the gateway's `/metrics`: (labels, value)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{address.host}:{address.port}/metrics") as response,
    ):
        text = await response.text()
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def metric(address: Address, name: str) -> float:
    return sum(value for _, value in await samples(address, name))


class Readers:
    """The slow readers' process: commands on its stdin, JSON reports on its stdout."""

    def __init__(self, child: asyncio.subprocess.Process) -> None:
        self.child = child

    async def report(self, event: str) -> dict[str, Any]:
        assert self.child.stdout is not None
        async with asyncio.timeout(HANG_GUARD):
            line = await self.child.stdout.readline()
        assert line, f"the readers exited ({await self.child.wait()}) before {event!r}"
        report: dict[str, Any] = json.loads(line)
        assert report["event"] == event, report
        return report

    async def command(self, line: str) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(line.encode() + b"\n")
        await self.child.stdin.drain()


@contextlib.asynccontextmanager
async def readers(gateway: Address, streams: int, log: Path) -> AsyncIterator[Readers]:
    with log.open("wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.load.slow_readers",
            "--port",
            str(gateway.port),
            "--streams",
            str(streams),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        yield Readers(child)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def open_and_leave(gateway: Address, streams: int, log: Path) -> None:
    async with readers(gateway, streams, log) as crowd:
        opened = await crowd.report("open")
        assert (opened["open"], opened["errors"]) == (streams, 0), opened
        await crowd.command("leave")
        await crowd.report("left")
    await until(lambda: no_streams(gateway), what="the warm-up streams to end")


async def no_streams(gateway: Address) -> bool:
    return await metric(gateway, "gateway_active_streams") == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_slow_readers_hold_bounded_memory_that_returns_when_they_leave(
    upstream: Address,
    gateway: tuple[Address, int],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    address, pid = gateway

    async def upstream_sent() -> int:
        return int((await fetch_json(upstream, SENT_PATH))["bytes"])

    await open_and_leave(address, WARM_STREAMS, tmp_path / "warm.log")
    base = rss_kib(pid)
    async with readers(address, STREAMS, tmp_path / "readers.log") as crowd:
        opened = await crowd.report("open")
        assert (opened["open"], opened["errors"]) == (STREAMS, 0), opened
        await settled(upstream_sent)
        stalled = rss_kib(pid)

        await crowd.command(READ)
        read = await crowd.report("read")
        assert read["errors"] == 0, read
        await settled(upstream_sent)
        after_reading = rss_kib(pid)
        assert await metric(address, "gateway_active_streams") == STREAMS

        await crowd.command("leave")
        await crowd.report("left")
    await until(lambda: no_streams(address), what="every stream to end")
    budget_left = base + STREAMS * LEFT_PER_STREAM // KiB
    left = [rss_kib(pid)]

    async def returned() -> bool:
        left.append(rss_kib(pid))
        return left[-1] <= budget_left

    await eventually(returned)  # the figures are reported whatever the outcome

    figures = {
        "streams": STREAMS,
        "event_bytes": EVENT_BYTES,
        "rss_base_kib": base,
        "rss_stalled_kib": stalled,
        "rss_after_reading_kib": after_reading,
        "rss_left_kib": left[-1],
        "held_kib_per_stream": round((max(stalled, after_reading) - base) / STREAMS, 1),
        "left_kib_per_stream": round((left[-1] - base) / STREAMS, 1),
        "budget_held_kib_per_stream": HELD_PER_STREAM / KiB,
        "budget_left_kib_per_stream": LEFT_PER_STREAM / KiB,
    }
    (tmp_path / "slow-readers.json").write_text(json.dumps(figures, indent=2) + "\n")
    record_property(
        FIGURES,
        f"{STREAMS:,} slow readers of {EVENT_BYTES // KiB} KiB events: RSS {base / KiB:.0f} MiB "
        f"-> {max(stalled, after_reading) / KiB:.0f} MiB held "
        f"({figures['held_kib_per_stream']} KiB per stream, budget {HELD_PER_STREAM // KiB}) "
        f"-> {left[-1] / KiB:.0f} MiB after they left ({figures['left_kib_per_stream']} KiB "
        f"per stream, budget {LEFT_PER_STREAM // KiB})",
    )
    assert (stalled - base) * KiB <= STREAMS * HELD_PER_STREAM, figures
    assert (after_reading - base) * KiB <= STREAMS * HELD_PER_STREAM, figures
    assert left[-1] <= budget_left, figures
    requests = await samples(address, "gateway_requests_total")
    outcomes = {labels["outcome"]: value for labels, value in requests}
    assert outcomes == {"client_disconnected": STREAMS + WARM_STREAMS}, outcomes
